"""Sans-IO session tests: plain synchronous code, bytes piped by LinkPair."""

from __future__ import annotations

import pytest

from mpcactors import AuthenticationError, ProtocolError
from mpcactors.link._frames import Ack, Chunk, Data, Ping, Pong, frame_bytes
from mpcactors.link._session import Established, PeerClosed, Session, State

from ._helpers import LinkPair


def _chunk(i: int, job: str = "j", ch: str = "c") -> tuple[Chunk, ...]:
    data = b"m%d" % i
    return (Chunk(job, ch, i, 0, len(data), data),)


def data_frames(side) -> list[Data]:  # type: ignore[no-untyped-def]
    return [e for e in side.events if isinstance(e, Data)]


def test_handshake_establishes_both_sides() -> None:
    lp = LinkPair()
    lp.connect()
    assert lp.a.session.state is State.OPEN and lp.b.session.state is State.OPEN
    ev = lp.a.events[0]
    assert isinstance(ev, Established) and not ev.resumed and not ev.restarted


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"cluster": "other"}, "cluster"),
        ({"version": 2}, "version"),
    ],
)
def test_handshake_rejects_wrong_cluster_or_version(kw: dict, match: str) -> None:
    a = Session(party="alice", peer="bob", cluster="c", session_id="a", job_window=10,
                max_frame_bytes=1 << 20)  # fmt: skip
    b = Session(party="bob", peer="alice", session_id="b", job_window=10, max_frame_bytes=1 << 20,
                **{"cluster": "c", "version": 1, **kw})  # fmt: skip
    a.connect()
    b.connect()
    b.receive_data(b"".join(a.data_to_send()))
    with pytest.raises(AuthenticationError, match=match):
        b.next_event()
    assert b.state is State.DISCONNECTED  # the connection is refused, the session lives on
    # b queued its HELLO then a CLOSE saying why; a rejects the HELLO too (or the refusal).
    a.receive_data(b"".join(b.data_to_send()))
    with pytest.raises(AuthenticationError, match=f"{match}|refused the handshake"):
        a.next_event()
    b.connect()  # the rightful peer may still connect
    assert b.state is State.HANDSHAKING


def test_handshake_rejects_wrong_party() -> None:
    a = Session(party="mallory", peer="bob", cluster="c", session_id="a", job_window=10,
                max_frame_bytes=1 << 20)  # fmt: skip
    b = Session(party="bob", peer="alice", cluster="c", session_id="b", job_window=10,
                max_frame_bytes=1 << 20)  # fmt: skip
    a.connect()
    b.connect()
    b.receive_data(b"".join(a.data_to_send()))
    with pytest.raises(AuthenticationError, match="expected party 'alice'"):
        b.next_event()


def test_data_is_sequenced_acked_and_trimmed() -> None:
    lp = LinkPair()
    lp.connect()
    s = lp.a.session
    for i in range(3):
        assert s.send_data(_chunk(i)) == i + 1
    lp.b.feed(b"".join(s.data_to_send()))
    assert [f.seq for f in data_frames(lp.b)] == [1, 2, 3]
    assert s.unacked_frames == 3
    lp.pump()
    assert s.unacked_frames == 0 and s.acked_seq == 3


def test_replay_after_reconnect_without_loss_or_duplicates() -> None:
    lp = LinkPair()
    lp.connect()
    s = lp.a.session
    for i in range(5):
        s.send_data(_chunk(i))
    wire = b"".join(s.data_to_send())
    # Only the first two frames make it before the connection dies.
    first_two = len(frame_bytes(Data(1, 0, _chunk(0)))) + len(frame_bytes(Data(2, 0, _chunk(1))))
    lp.b.feed(wire[: first_two + 7])
    lp.disconnect()
    assert s.state is State.DISCONNECTED
    lp.connect()
    got = [bytes(f.chunks[0].data) for f in data_frames(lp.b)]
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    est = [e for e in lp.a.events if isinstance(e, Established)][-1]
    assert est.resumed and est.replayed == 3
    assert s.retransmitted == 3 and s.unacked_frames == 0


def test_duplicate_frames_dropped_and_gaps_rejected() -> None:
    lp = LinkPair()
    lp.connect()
    f1 = frame_bytes(Data(1, 0, _chunk(0)))
    lp.b.feed(f1)
    lp.b.feed(f1)
    assert len(data_frames(lp.b)) == 1 and lp.b.session.duplicates == 1
    with pytest.raises(ProtocolError, match="frames lost"):
        lp.b.feed(frame_bytes(Data(3, 0, _chunk(2))))
    assert lp.b.session.state is State.FAILED
    with pytest.raises(ProtocolError):
        lp.b.session.receive_data(b"x")


def test_ack_beyond_sent_is_a_protocol_error() -> None:
    lp = LinkPair()
    lp.connect()
    with pytest.raises(ProtocolError, match="ACK of seq 9"):
        lp.a.feed(frame_bytes(Ack(9)))


def test_frames_before_hello_are_rejected() -> None:
    s = Session(party="bob", peer="alice", cluster="c", session_id="b", job_window=10,
                max_frame_bytes=1 << 20)  # fmt: skip
    s.connect()
    s.receive_data(frame_bytes(Ack(0)))
    with pytest.raises(ProtocolError, match="before HELLO"):
        s.next_event()


def test_ping_is_answered_with_pong() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.session.send_control(Ping(12.5))
    lp.pump()
    assert Pong(12.5) in lp.a.events


def test_orderly_close() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.session.close("bye")
    assert lp.a.session.state is State.CLOSING
    lp.pump()
    assert PeerClosed("bye") in lp.b.events
    assert lp.a.session.state is State.CLOSED and lp.b.session.state is State.CLOSED


def test_peer_restart_resets_sequences() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.session.send_data(_chunk(0))
    lp.pump()
    lp.disconnect()
    # bob restarts: a fresh session with a new id and no memory of alice.
    from ._helpers import Side

    lp.b = Side("bob", "alice", session_id="bob-2")
    lp.connect()
    est = [e for e in lp.a.events if isinstance(e, Established)][-1]
    assert est.restarted and not est.resumed
    assert lp.a.session.sent_seq == 0 and lp.a.session.recv_seq == 0
    assert lp.a.session.send_data(_chunk(0)) == 1


def test_transition_table_rejects_unexpected_triggers() -> None:
    s = Session(party="a", peer="b", cluster="c", session_id="x", job_window=10,
                max_frame_bytes=1 << 20)  # fmt: skip
    with pytest.raises(ProtocolError, match="DATA in state idle"):
        s.send_data(_chunk(0))
    s.close("x")
    with pytest.raises(ProtocolError, match="connect in state closed"):
        s.connect()
