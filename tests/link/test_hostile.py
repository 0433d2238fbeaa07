"""Hostile or broken peers never hang or crash a node (memory network, autojump clock)."""

from __future__ import annotations

import struct

import anyio
import pytest
import trio

from mpcactors import JobAborted, ProtocolError
from mpcactors.link import MemoryNetwork, open_node
from mpcactors.link._frames import NEED_DATA, JobAbort
from mpcactors.link._session import Session

from ._helpers import memory_cluster


async def _handshake_as(net: MemoryNetwork, party: str, peer: str, cluster: str = "local"):  # type: ignore[no-untyped-def]
    """Connect to ``peer`` as ``party`` by hand; returns (stream, session) once established."""
    conn = await net.transport(party).connect(peer)
    s = Session(party=party, peer=peer, cluster=cluster, session_id="evil", job_window=1 << 20,
                max_frame_bytes=1 << 20)  # fmt: skip
    s.connect()
    await conn.stream.send(b"".join(s.data_to_send()))
    while s.next_event() is NEED_DATA:
        s.receive_data(await conn.stream.receive())
    return conn.stream, s


@pytest.mark.trio
async def test_silent_connection_is_dropped_and_the_real_peer_still_gets_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster()
    net = MemoryNetwork()
    async with open_node(cfg, "bob", network=net, wait_connected=False) as bob:
        silent = await net.transport("alice").connect("bob")  # never sends a byte
        await trio.sleep(30)  # longer than the handshake timeout
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)):
            await silent.stream.receive()
        async with open_node(cfg, "alice", network=net) as alice:
            await alice.channel("bob", "j", "c").send("hi")
            assert await bob.channel("alice", "j", "c").receive() == "hi"


@pytest.mark.trio
async def test_garbage_instead_of_hello_is_rejected(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster()
    net = MemoryNetwork()
    async with open_node(cfg, "bob", network=net, wait_connected=False) as bob:
        for junk in (b"\xff\xff\xff\xff", struct.pack(">I", 8) + b"\x00" * 8, b"GET / HTTP/1.1\r\n\r\n"):
            conn = await net.transport("alice").connect("bob")
            await conn.stream.send(junk)
            with anyio.fail_after(15):
                while True:  # bob answers with at most a CLOSE, then hangs up
                    try:
                        await conn.stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        break
        assert bob.statistics().rejected_connections == 3
        async with open_node(cfg, "alice", network=net) as alice:
            await alice.channel("bob", "j", "c").send("still fine")
            assert await bob.channel("alice", "j", "c").receive() == "still fine"


@pytest.mark.trio
async def test_protocol_violation_after_handshake_fails_the_link_not_the_node(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster(("alice", "bob", "carol"))
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        carol_done = trio.Event()

        async def carol() -> None:
            async with open_node(cfg, "carol", network=net, wait_connected=False) as node:
                assert await node.channel("bob", "j", "c").receive() == "from bob"
                carol_done.set()

        nursery.start_soon(carol)
        async with open_node(cfg, "bob", network=net, wait_connected=False) as bob:
            ch = bob.channel("alice", "j", "c")
            stream, _ = await _handshake_as(net, "alice", "bob")
            await stream.send(struct.pack(">I", (1 << 26) + 1))  # over max_frame_bytes
            with anyio.fail_after(5), pytest.raises(ProtocolError, match="exceeds max_frame_bytes"):
                await ch.receive()
            await bob.channel("carol", "j", "c").send("from bob")  # other links are fine
            await carol_done.wait()


@pytest.mark.trio
async def test_messages_for_a_job_never_opened_abort_the_senders_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster(unopened_job_timeout_s=3.0, heartbeat_interval_s=0.5)
    net = MemoryNetwork()
    async with (
        open_node(cfg, "bob", network=net, wait_connected=False),
        open_node(cfg, "alice", network=net) as alice,
    ):
        ch = alice.channel("bob", "ghost", "c")
        await ch.send("anyone?")
        t0 = trio.current_time()
        with pytest.raises(JobAborted, match="not opened at party 'bob'") as info:
            await ch.receive()
        assert info.value.party == "bob"
        assert 3.0 <= trio.current_time() - t0 <= 4.5


@pytest.mark.trio
async def test_a_job_abort_blaming_a_third_party_is_attributed_to_the_sender(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster(("alice", "bob", "carol"))
    net = MemoryNetwork()
    seen: list[tuple[str, str, str]] = []
    async with open_node(cfg, "bob", network=net, wait_connected=False,
                         on_job_abort=lambda *a: seen.append(a)) as bob:  # fmt: skip
        ch = bob.channel("alice", "j", "c")
        stream, session = await _handshake_as(net, "alice", "bob")
        session.send_control(JobAbort("j", "carol", "carol cheated"))
        await stream.send(b"".join(session.data_to_send()))
        with anyio.fail_after(5), pytest.raises(JobAborted) as info:
            await ch.receive()
        assert info.value.party == "alice"
        assert seen == [("j", "alice", "carol cheated (the JOB_ABORT claimed party 'carol')")]
