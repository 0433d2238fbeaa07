"""Time-dependent behaviour under trio's autojump clock: retry, backoff, peer timeout, WAN."""

from __future__ import annotations

import pytest
import trio

from mpcactors import PeerLost, PeerUnavailable
from mpcactors._config import WanProfile
from mpcactors.link import MemoryNetwork, open_node

from ._helpers import memory_cluster


@pytest.mark.trio
async def test_late_peer_is_reached_through_retry(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster(connect_retry_times=20, connect_retry_interval_ms=100, connect_timeout_s=60)
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:

        async def late_bob() -> None:
            await trio.sleep(2.0)
            async with open_node(cfg, "bob", network=net, seed=1) as bob:
                assert await bob.channel("alice", "j", "c").receive() == "hello"

        nursery.start_soon(late_bob)
        t0 = trio.current_time()
        async with open_node(cfg, "alice", network=net, seed=1) as alice:
            connected = trio.current_time() - t0
            await alice.channel("bob", "j", "c").send("hello")
    assert 2.0 <= connected < 4.0


@pytest.mark.trio
async def test_absent_peer_gives_peer_unavailable_after_the_attempts(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster(connect_retry_times=4, connect_retry_interval_ms=100, connect_timeout_s=60)
    t0 = trio.current_time()
    with pytest.raises(PeerUnavailable) as info:
        async with open_node(cfg, "alice", network=MemoryNetwork(), seed=2):
            pass
    elapsed = trio.current_time() - t0
    err = info.value
    assert (err.peer, err.address, err.attempts) == ("bob", "memory:bob", 4)
    assert "4 connect attempt(s)" in str(err)
    assert isinstance(err.__cause__, ExceptionGroup)
    assert len(err.__cause__.exceptions) == 4
    assert all(isinstance(e, ConnectionRefusedError) for e in err.__cause__.exceptions)
    # backoff 0.1, 0.16, 0.256 (+-20 %) between the 4 attempts
    assert 0.4 < elapsed < 0.65


@pytest.mark.trio
async def test_connect_deadline_cuts_the_attempts_short(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster(connect_retry_times=1000, connect_retry_interval_ms=200, connect_timeout_s=3)
    t0 = trio.current_time()
    with pytest.raises(PeerUnavailable) as info:
        async with open_node(cfg, "alice", network=MemoryNetwork()):
            pass
    assert trio.current_time() - t0 <= 3.0
    assert 3 <= info.value.attempts < 10


@pytest.mark.trio
async def test_acceptor_without_dialer_gives_peer_unavailable(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster(connect_timeout_s=5)
    with pytest.raises(PeerUnavailable, match="did not connect within 5 s"):
        async with open_node(cfg, "bob", network=MemoryNetwork()):
            pass


@pytest.mark.trio
async def test_partitioned_peer_is_lost_within_peer_timeout_and_others_continue(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = memory_cluster(("alice", "bob", "carol"), peer_timeout_s=5.0, heartbeat_interval_s=0.5)
    net = MemoryNetwork()
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nodes = {}

        async def run(p: str) -> None:
            async with open_node(cfg, p, network=net, linger_s=0.1) as node:
                nodes[p] = node
                await done.wait()

        for p in ("bob", "carol"):
            nursery.start_soon(run, p)
        async with open_node(cfg, "alice", network=net, linger_s=0.1) as alice:
            while len(nodes) < 2:  # bob and carol are connected to everyone
                await trio.sleep(0.01)
            to_bob = alice.channel("bob", "j", "c")
            t0 = trio.current_time()
            net.partition("bob")
            with pytest.raises(PeerLost, match="bob"):
                await to_bob.receive()
            lost_after = trio.current_time() - t0
            assert lost_after <= 5.0 + 0.6
            # carol's channels are unaffected
            await alice.channel("carol", "j", "c").send(42)
            assert await nodes["carol"].channel("alice", "j", "c").receive() == 42
            assert alice.statistics().peers["carol"].connected
            done.set()


@pytest.mark.trio
async def test_wan_emulator_pays_one_rtt_per_request(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster()
    wan = WanProfile(latency_ms=10.0)
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:

        async def server() -> None:
            async with open_node(cfg, "bob", network=net, wan=wan) as bob:
                ch = bob.channel("alice", "rpc", "c")
                for _ in range(100):
                    await ch.send(await ch.receive() + 1)

        nursery.start_soon(server)
        async with open_node(cfg, "alice", network=net, wan=wan) as alice:
            ch = alice.channel("bob", "rpc", "c")
            t0 = trio.current_time()
            for i in range(100):
                await ch.send(i)
                assert await ch.receive() == i + 1
            elapsed = trio.current_time() - t0
            assert 100 * 0.020 <= elapsed < 100 * 0.020 * 1.05
            rtt = alice.statistics().peers["bob"].rtt_s
            assert rtt is not None and 0.019 < rtt < 0.03


@pytest.mark.trio
async def test_wan_emulator_bandwidth_and_jitter_keep_order(autojump_clock: trio.abc.Clock) -> None:
    cfg = memory_cluster(job_window_bytes=4 << 20)
    wan = WanProfile(latency_ms=5.0, bandwidth_mbps=8.0, jitter_ms=4.0)  # 1 MB/s
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:

        async def sink() -> None:
            async with open_node(cfg, "bob", network=net, wan=wan, seed=3) as bob:
                ch = bob.channel("alice", "bulk", "c")
                got = [await ch.receive() for _ in range(20)]
                assert [g[0] for g in got] == list(range(20))
                await ch.send("done")

        nursery.start_soon(sink)
        async with open_node(cfg, "alice", network=net, wan=wan, seed=3) as alice:
            ch = alice.channel("bob", "bulk", "c")
            t0 = trio.current_time()
            for i in range(20):
                await ch.send(bytes([i]) * 50_000)  # 1 MB in total
            assert await ch.receive() == "done"
            elapsed = trio.current_time() - t0
            assert 0.95 < elapsed < 1.3
