"""Sans-IO multiplexing and flow-control tests (Session + Mux on both sides, no sockets)."""

from __future__ import annotations

import pytest

from mpcactors import JobAborted, PeerLost, ProtocolError
from mpcactors.link._frames import Chunk, Data, frame_bytes

from ._helpers import LinkPair


def drain(side, job: str, ch: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    out = []
    while (m := side.mux.take(job, ch)) is not None:
        out.append(bytes(m))
    return out


def test_messages_of_all_channels_leave_in_one_frame() -> None:
    lp = LinkPair()
    lp.connect()
    for j in range(5):
        for c in range(4):
            lp.a.mux.enqueue(f"job{j}", f"ch{c}", b"x%d%d" % (j, c))
    wire = lp.a.flush()
    assert lp.a.session.data_frames_sent == 1
    lp.b.feed(wire)
    for j in range(5):
        for c in range(4):
            assert drain(lp.b, f"job{j}", f"ch{c}") == [b"x%d%d" % (j, c)]
    assert lp.b.mux.jobs()["job3"].frames_received == 1
    assert lp.a.mux.jobs()["job3"].frames_sent == 1


def test_large_message_is_chunked_and_small_ones_are_not_stuck_behind_it() -> None:
    lp = LinkPair(window=1 << 20, chunk=1 << 12, budget=1 << 14)
    lp.connect()
    big = bytes(range(256)) * 1024  # 256 KiB: 64 chunks, 16+ frames
    lp.a.mux.enqueue("bulk", "b", big)
    lp.a.session.data_to_send()
    first = lp.a.flush()
    lp.a.mux.enqueue("rpc", "r", b"small")
    second = lp.a.flush()
    lp.b.feed(first + second)
    # The small message arrived in the second frame, long before the bulk one completes.
    assert drain(lp.b, "rpc", "r") == [b"small"]
    assert drain(lp.b, "bulk", "b") == []
    lp.pump()
    assert drain(lp.b, "bulk", "b") == [big]


def test_round_robin_interleaves_channels_within_a_frame() -> None:
    lp = LinkPair(window=1 << 20, chunk=100, budget=1000)
    lp.connect()
    lp.a.mux.enqueue("j", "a", b"a" * 1000)
    lp.a.mux.enqueue("j", "b", b"b" * 1000)
    chunks = lp.a.mux.pack()
    assert [c.channel for c in chunks[:4]] == ["a", "b", "a", "b"]


def test_window_limits_a_job_that_is_not_read_and_others_continue() -> None:
    window = 1 << 14
    lp = LinkPair(window=window, chunk=1 << 12, budget=1 << 16)
    lp.connect()
    for i in range(20):
        lp.a.mux.enqueue("stalled", "c", b"s" * 2000)
    lp.pump()
    assert lp.b.mux.job_buffered("stalled") <= window
    assert lp.a.mux.job_backlog("stalled") > 0  # the rest waits at the sender
    for i in range(50):
        lp.a.mux.enqueue("busy", "c", b"%d" % i)
        lp.pump()
        assert drain(lp.b, "busy", "c") == [b"%d" % i]
    # Reading the stalled job grants credit again; everything arrives, in order.
    got: list[bytes] = []
    for _ in range(30):
        got += drain(lp.b, "stalled", "c")
        lp.pump()
    assert got == [b"s" * 2000] * 20


def test_message_larger_than_the_window_arrives_while_the_reader_waits() -> None:
    lp = LinkPair(window=1 << 13, chunk=1 << 11, budget=1 << 14)
    lp.connect()
    big = b"z" * 100_000
    lp.a.mux.enqueue("j", "c", big)
    lp.pump()
    assert drain(lp.b, "j", "c") == []
    lp.b.mux.set_waiting("j", "c", +1)  # an application receive is blocked on it
    for _ in range(200):
        lp.pump()
        if (m := lp.b.mux.take("j", "c")) is not None:
            break
    assert m == big


def test_overrunning_the_window_is_a_protocol_error() -> None:
    lp = LinkPair(window=100)
    lp.connect()
    payload = b"x" * 150
    frame = Data(1, 0, (Chunk("j", "c", 0, 0, len(payload), payload),))
    with pytest.raises(ProtocolError, match="overran the window"):
        lp.b.feed(frame_bytes(frame))


def test_out_of_order_message_numbers_fail_that_job_only() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.session.send_data((Chunk("j", "c", 3, 0, 1, b"x"), Chunk("k", "c", 0, 0, 1, b"y")))
    lp.b.feed(b"".join(lp.a.session.data_to_send()))
    with pytest.raises(ProtocolError, match="message 3 starts, expected 0"):
        lp.b.mux.take("j", "c")
    assert lp.b.mux.take("k", "c") == b"y"  # the link and other jobs go on
    lp.pump()
    with pytest.raises(JobAborted, match="protocol error") as info:
        lp.a.mux.enqueue("j", "c", b"more")
    assert info.value.party == "bob"


def test_closed_job_ids_are_not_reused() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.open_job("j")
    lp.a.mux.close_job("j")
    lp.a.mux.open_job("j")
    with pytest.raises(JobAborted, match="closed"):
        lp.a.mux.enqueue("j", "c", b"late")


def test_unopened_job_expires_and_sender_gets_job_aborted() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.enqueue("ghost", "c", b"hello")
    lp.b.mux.open_job("real")
    lp.a.mux.enqueue("real", "c", b"hi")
    lp.pump()
    assert lp.b.mux.expire_unopened(now=10.0, timeout=30.0) == []
    assert lp.b.mux.expire_unopened(now=31.0, timeout=30.0) == ["ghost"]
    lp.pump()
    with pytest.raises(JobAborted, match="not opened at party 'bob'") as info:
        lp.a.mux.enqueue("ghost", "c", b"again")
    assert info.value.party == "bob"
    assert drain(lp.b, "real", "c") == [b"hi"]  # other jobs are untouched


def test_abort_reaches_the_peer_and_fails_pending_receives() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.enqueue("j", "c", b"one")
    lp.pump()
    lp.a.mux.abort_job("j", "division by zero")
    lp.pump()
    with pytest.raises(JobAborted) as info:
        lp.b.mux.take("j", "c")
    assert (info.value.party, info.value.cause) == ("alice", "division by zero")
    with pytest.raises(JobAborted):
        lp.a.mux.take("j", "c")


def test_abort_is_resent_after_reconnect() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.abort_job("j", "boom")
    lp.a.flush()  # written into a connection that dies
    lp.disconnect()
    lp.connect()
    with pytest.raises(JobAborted, match="boom"):
        lp.b.mux.take("j", "c")


def test_peer_lost_delivers_buffered_messages_first() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.enqueue("j", "c", b"last words")
    lp.pump()
    lp.b.mux.fail_all(PeerLost("gone"))
    assert lp.b.mux.take("j", "c") == b"last words"
    with pytest.raises(PeerLost):
        lp.b.mux.take("j", "c")
    with pytest.raises(PeerLost):
        lp.b.mux.take("new-job", "c")  # jobs opened while the link is lost fail too


def test_closed_job_drops_late_data_and_keeps_credit_flowing() -> None:
    lp = LinkPair(window=4096, chunk=1024, budget=8192)
    lp.connect()
    lp.b.mux.open_job("j")
    lp.b.mux.close_job("j")
    for i in range(20):
        lp.a.mux.enqueue("j", "c", b"y" * 1000)
        lp.pump()
    assert lp.a.mux.job_backlog("j") == 0
    assert lp.b.mux.job_buffered("j") == 0


def test_replayed_frames_keep_flow_control_consistent() -> None:
    lp = LinkPair(window=1 << 14, chunk=1 << 10, budget=1 << 12)
    lp.connect()
    msgs = [bytes([i]) * 3000 for i in range(30)]
    for m in msgs:
        lp.a.mux.enqueue("j", "c", m)
    got: list[bytes] = []
    for step in range(200):
        wire = lp.a.flush()
        if step % 3 == 2:
            lp.disconnect()  # the frame in flight is lost with the connection
            lp.connect()
        else:
            lp.b.feed(wire)
            lp.a.feed(lp.b.flush())
        got += drain(lp.b, "j", "c")
        if len(got) == len(msgs):
            break
    assert got == msgs
