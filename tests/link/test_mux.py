"""Sans-IO multiplexing and flow-control tests (Session + Mux on both sides, no sockets)."""

from __future__ import annotations

import pytest

from mpcactors import JobAborted, PeerLost, ProtocolError
from mpcactors.link._frames import Chunk, Data, JobAbort, Ping, frame_bytes
from mpcactors.link._mux import _ENDED_MEMORY
from mpcactors.link._session import State

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
    assert lp.b.mux.job_buffered("stalled") <= window + window // 4  # a quarter window of slack
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


# ---- limits an authenticated peer cannot exceed (issue 10) -----------------------------------


def _send_raw(lp: LinkPair, *chunks: Chunk) -> bytes:
    """What a hostile alice writes: a DATA frame with exactly these chunks."""
    lp.a.session.send_data(chunks)
    return b"".join(lp.a.session.data_to_send())


def test_an_empty_chunk_that_starts_a_message_fails_the_link() -> None:
    lp = LinkPair()
    lp.connect()
    with pytest.raises(ProtocolError, match="peer 'alice' started message 0 of 65535 bytes .* empty chunk"):
        lp.b.feed(_send_raw(lp, Chunk("j", "c", 0, 0, 65535, b"")))
    assert lp.b.session.state is State.FAILED
    assert b"empty chunk" in lp.b.session.data_to_send()[0]  # a CLOSE tells alice why
    with pytest.raises(ValueError, match="1..max_message_bytes"):
        lp.a.mux.enqueue("j", "c", b"")  # an honest sender never makes one


def test_a_message_is_charged_its_total_when_it_starts() -> None:
    window = 100_000
    lp = LinkPair(window=window)
    lp.connect()
    # One byte each, announcing 65,535: charged 65,535 each, so the second overruns the window
    # (plus its quarter of slack) although only 2 bytes arrived.
    first = Chunk("j", "a", 0, 0, 65535, b"x")
    lp.b.feed(_send_raw(lp, first))
    assert lp.b.mux.job_buffered("j") == 65535
    with pytest.raises(ProtocolError, match="peer 'alice' overran the window of job 'j'"):
        lp.b.feed(_send_raw(lp, Chunk("j", "b", 0, 0, 65535, b"y")))


def test_honest_senders_charge_the_same_and_never_overrun() -> None:
    window, chunk = 1 << 13, 1 << 10
    lp = LinkPair(window=window, chunk=chunk, budget=1 << 12)
    lp.connect()
    lp.b.mux.open_job("j")
    for i in range(10):  # small reads leave the grant just below the credit-frame threshold
        lp.a.mux.enqueue("j", "c", b"%03d" % i)
        lp.pump()
        assert drain(lp.b, "j", "c") == [b"%03d" % i]
    lp.a.mux.enqueue("j", "c", b"w" * window)  # exactly a window: needs all of it at once
    lp.a.mux.enqueue("j", "c", b"v" * (window // 2))
    lp.a.mux.enqueue("j", "d", b"u" * (3 * window))  # larger than a window: chunk by chunk
    got: dict[str, list[bytes]] = {"c": [], "d": []}
    for _ in range(100):
        lp.pump()
        for ch in got:
            got[ch] += drain(lp.b, "j", ch)
        if not lp.a.mux.has_queued and len(got["d"]) == 1:
            break
        lp.b.mux.set_waiting("j", "d", +1)  # the application waits for the big one
        lp.b.mux.set_waiting("j", "d", -1)
    assert got == {"c": [b"w" * window, b"v" * (window // 2)], "d": [b"u" * (3 * window)]}


def test_channels_per_job_are_capped() -> None:
    lp = LinkPair(max_channels=4)
    lp.connect()
    lp.b.feed(_send_raw(lp, *(Chunk("j", f"c{i}", 0, 0, 1, b"x") for i in range(4))))
    with pytest.raises(ProtocolError, match=r"peer 'alice' exceeded link.max_channels_per_job=4 in job 'j'"):
        lp.b.feed(_send_raw(lp, Chunk("j", "c4", 0, 0, 1, b"x")))


def test_live_jobs_per_peer_are_capped_and_ended_jobs_do_not_count() -> None:
    lp = LinkPair(max_jobs=3)
    lp.connect()
    lp.b.mux.open_job("mine")  # jobs opened here count too
    lp.b.feed(_send_raw(lp, Chunk("j1", "c", 0, 0, 1, b"x"), Chunk("j2", "c", 0, 0, 1, b"x")))
    assert lp.b.mux.live_jobs == 3
    lp.b.mux.close_job("mine")
    lp.b.feed(_send_raw(lp, Chunk("j3", "c", 0, 0, 1, b"x")))
    with pytest.raises(ProtocolError, match=r"peer 'alice' exceeded link.max_jobs_per_peer=3: job 'j4'"):
        lp.b.feed(_send_raw(lp, Chunk("j4", "c", 0, 0, 1, b"x")))


def test_bytes_held_for_unopened_jobs_are_capped_per_peer() -> None:
    lp = LinkPair(window=8192, max_unopened=10_000)
    lp.connect()
    lp.b.mux.open_job("open")
    lp.b.feed(_send_raw(lp, Chunk("open", "c", 0, 0, 8000, b"o" * 8000)))  # opened: not counted
    lp.b.feed(_send_raw(lp, *(Chunk(f"u{i}", "c", 0, 0, 3000, b"u" * 3000) for i in range(3))))
    assert lp.b.mux.unopened_bytes == 9000
    lp.b.mux.open_job("u0")  # opening a job takes its bytes off the budget
    assert lp.b.mux.unopened_bytes == 6000
    lp.b.feed(_send_raw(lp, Chunk("u3", "c", 0, 0, 3000, b"u" * 3000)))
    with pytest.raises(ProtocolError, match=r"peer 'alice' exceeded link.max_unopened_bytes=10000"):
        lp.b.feed(_send_raw(lp, Chunk("u4", "c", 0, 0, 2000, b"u" * 1)))


def test_a_failed_link_keeps_unopened_data_in_the_budget_until_it_expires() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.mux.enqueue("late", "c", b"last words")
    lp.pump()
    lp.b.mux.fail_all(PeerLost("gone"))
    assert lp.b.mux.unopened_bytes == len(b"last words")  # still readable if opened soon
    assert lp.b.mux.expire_unopened(now=31.0, timeout=30.0) == []  # the link already failed
    assert lp.b.mux.unopened_bytes == 0
    with pytest.raises(PeerLost):
        lp.b.mux.take("late", "c")


def test_expired_unopened_jobs_are_forgotten_and_confirmed_aborts_not_resent() -> None:
    lp = LinkPair(max_jobs=10_000)
    lp.connect()
    n = _ENDED_MEMORY + 500
    for i in range(n):
        lp.a.mux.enqueue(f"ghost{i}", "c", b"?")
    lp.pump()
    assert len(lp.b.mux.expire_unopened(now=31.0, timeout=30.0)) == n
    assert len(lp.b.mux.jobs()) <= _ENDED_MEMORY  # before: every expired job stayed forever
    lp.pump()  # the aborts reach alice
    lp.b.now = 31.0
    lp.b.session.send_control(Ping(32.0))  # a PING after them; its PONG confirms them
    lp.pump()
    lp.disconnect()
    before = len(lp.a.events)
    lp.connect()
    resent = [e for e in lp.a.events[before:] if isinstance(e, JobAbort)]
    assert resent == []  # before: all of them again, after every reconnect


def test_a_job_abort_naming_a_third_party_is_attributed_to_the_sender() -> None:
    lp = LinkPair()
    lp.connect()
    lp.a.session.send_control(JobAbort("j", "carol", "carol cheated"))
    lp.b.feed(b"".join(lp.a.session.data_to_send()))
    with pytest.raises(JobAborted) as info:
        lp.b.mux.take("j", "c")
    assert info.value.party == "alice"
    assert "claimed party 'carol'" in info.value.cause
    applied = lp.b.mux.on_job_abort(JobAbort("k", "carol", "again"))
    assert applied.party == "alice"


def test_a_frame_header_cannot_cost_more_than_its_bounded_decode() -> None:
    from mpcactors.link._frames import MAX_FRAME_CHUNKS, MAX_NAME_CHARS, FrameDecoder

    too_many = Data(1, 0, tuple(Chunk("j", "c", i, 0, 1, b"x") for i in range(MAX_FRAME_CHUNKS + 1)))
    long_name = Data(1, 0, (Chunk("j" * (MAX_NAME_CHARS + 1), "c", 0, 0, 1, b"x"),))
    for frame in (too_many, long_name, JobAbort("j" * (MAX_NAME_CHARS + 1), "alice", "x")):
        decoder = FrameDecoder(1 << 26)
        decoder.receive_data(frame_bytes(frame))
        with pytest.raises(ProtocolError, match="malformed frame"):
            decoder.next_frame()


# ---- receive maps: big incoming messages reuse the map of one nobody reads any more -----------


def _big_message(lp: LinkPair, fill: int, size: int = 5 << 20) -> memoryview:
    lp.a.mux.enqueue("bulk", "b", bytes([fill]) * size)
    lp.pump(rounds=2000)
    got = lp.b.mux.take("bulk", "b")
    assert got is not None and len(got) == size
    return got


def test_a_big_message_reuses_the_map_of_one_that_was_dropped_but_never_one_still_read() -> None:
    import numpy as np

    lp = LinkPair(window=1 << 24, chunk=1 << 18, budget=1 << 19)
    lp.connect()
    first = _big_message(lp, 1)
    held = np.frombuffer(first, dtype=np.uint8)[3:]  # a reader's array: a view of the map
    owner = id(first.obj)  # not the map itself: a reference would keep it in use
    del first
    second = _big_message(lp, 2)
    assert id(second.obj) != owner  # the first message is still read: its map is not touched
    assert held.min() == held.max() == 1
    second_owner = id(second.obj)
    del held
    third = _big_message(lp, 3)
    assert id(third.obj) == owner  # nothing refers to the first map any more: reused
    assert bytes(third[:4]) == b"\x03" * 4 and np.frombuffer(third, dtype=np.uint8).min() == 3
    assert np.frombuffer(second, dtype=np.uint8).max() == 2 and id(second.obj) == second_owner


def test_receive_maps_match_sizes_keep_a_bounded_pool_and_release_free_maps() -> None:
    from mpcactors.link._mux_state import ReceiveMaps

    maps = ReceiveMaps(keep_bytes=16 << 20)
    a = maps.take(8 << 20)
    a_owner = id(a.obj)  # an id: a reference would keep the map in use
    del a
    assert id(maps.take(4 << 20).obj) != a_owner  # 8 MiB is more than 5/4 of 4 MiB: a new map
    b = maps.take(7 << 20)
    assert id(b.obj) == a_owner and len(b) == 7 << 20
    held_b = b
    del b
    c = maps.take(8 << 20)  # the 8 MiB map is in use (held_b): a new one, for which the free
    assert id(c.obj) != a_owner and maps.held_bytes() == 16 << 20  # 4 MiB one leaves the pool
    del held_b, c
    maps.release()
    assert maps.held_bytes() == 0


def test_the_free_receive_maps_are_released_when_no_job_is_live() -> None:
    lp = LinkPair(window=1 << 24, chunk=1 << 18, budget=1 << 19)
    lp.connect()
    _big_message(lp, 7)  # read and dropped
    assert lp.b.mux.receive_maps.held_bytes() == 5 << 20
    lp.b.mux.close_job("bulk")
    assert lp.b.mux.receive_maps.held_bytes() == 0
