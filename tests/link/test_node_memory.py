"""The async node API over the in-memory network, on trio and asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from mpcactors import JobAborted, PeerLost
from mpcactors.link import MemoryNetwork, Node, open_node

from .._waiting import until
from ._helpers import memory_cluster

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def cluster(parties: tuple[str, ...] = ("alice", "bob"), **kw: Any) -> AsyncIterator[dict[str, Node]]:
    """Open every party's node on one memory network; yields {party: node}."""
    link = {k: kw.pop(k) for k in list(kw) if k not in ("wan", "on_job_abort", "linger_s")}
    cfg = memory_cluster(parties, **link)
    net = MemoryNetwork()
    nodes: dict[str, Node] = {}
    done = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run(party: str, started: anyio.Event) -> None:
            async with open_node(cfg, party, network=net, **kw) as node:
                nodes[party] = node
                started.set()
                await done.wait()

        for p in parties:
            started = anyio.Event()
            tg.start_soon(run, p, started)
        await until(lambda: len(nodes) == len(parties), timeout=20, what="every node open")
        try:
            yield nodes
        finally:
            done.set()


async def test_round_trip_numpy_and_containers() -> None:
    with anyio.fail_after(20):
        async with cluster() as n:
            a, b = n["alice"].channel("bob", "j", "c"), n["bob"].channel("alice", "j", "c")
            x = np.arange(100_000, dtype=np.float32).reshape(100, 1000)
            await a.send({"x": x, "t": (1, "two"), "s": np.int16(-3)})
            got = await b.receive()
            assert np.array_equal(got["x"], x) and got["t"] == (1, "two")
            assert got["s"] == np.int16(-3) and type(got["s"]) is np.int16
            got["x"] += 1  # received arrays are writable
            assert n["alice"].peers == ("bob",) and n["alice"].party == "alice"


async def test_send_nowait_of_many_jobs_leaves_in_one_frame() -> None:
    with anyio.fail_after(20):
        async with cluster() as n:
            alice, bob = n["alice"], n["bob"]
            chans = [alice.channel("bob", f"job{j}", "c") for j in range(20)]
            for j in range(20):
                bob.channel("alice", f"job{j}", "c")
            before = alice.statistics().peers["bob"].data_frames_sent
            for ch in chans:
                ch.send_nowait(np.full(4, 7))
            for j in range(20):
                assert (await bob.channel("alice", f"job{j}", "c").receive()).tolist() == [7] * 4
            stats = alice.statistics()
            assert stats.peers["bob"].data_frames_sent == before + 1
            assert all(stats.jobs[("bob", f"job{j}")].frames_sent == 1 for j in range(20))
            assert stats.jobs[("bob", "job3")].messages_sent == 1


async def test_abort_job_reaches_peers_and_hook() -> None:
    seen: list[tuple[str, str, str]] = []
    with anyio.fail_after(20):
        async with cluster(("alice", "bob", "carol"), on_job_abort=lambda *a: seen.append(a)) as n:
            waits = []
            for p in ("bob", "carol"):
                ch = n[p].channel("alice", "j", "c")
                waits.append(ch)
            errors: list[BaseException] = []

            async def recv(ch: Any) -> None:
                try:
                    await ch.receive()
                except JobAborted as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for ch in waits:
                    tg.start_soon(recv, ch)
                await anyio.wait_all_tasks_blocked()  # both receivers wait before the abort
                n["alice"].abort_job("j", "input file missing")
            assert len(errors) == 2
            assert all(e.party == "alice" and e.cause == "input file missing" for e in errors)  # type: ignore[attr-defined]
            with pytest.raises(JobAborted):
                await n["bob"].channel("alice", "j", "other").receive()  # future receives too
            with pytest.raises(JobAborted):
                await n["alice"].channel("bob", "j", "c").send(1)
            assert ("j", "alice", "input file missing") in seen
            # other jobs keep working
            await n["alice"].channel("bob", "k", "c").send("fine")
            assert await n["bob"].channel("alice", "k", "c").receive() == "fine"


async def test_stalled_job_does_not_block_another_job() -> None:
    window = 64 * 1024
    with anyio.fail_after(30):
        async with cluster(job_window_bytes=window, chunk_bytes=8192, max_frame_bytes=1 << 20) as n:
            alice, bob = n["alice"], n["bob"]
            stalled = alice.channel("bob", "stalled", "c")
            bob.channel("alice", "stalled", "c")  # opened, never read
            async with anyio.create_task_group() as tg:

                async def flood() -> None:
                    for _ in range(100):
                        await stalled.send(b"s" * 4000)  # 400 kB >> window: this task blocks

                tg.start_soon(flood)
                ping, pong = alice.channel("bob", "busy", "c"), bob.channel("alice", "busy", "c")
                for i in range(200):
                    await ping.send(i)
                    assert await pong.receive() == i
                js = bob.statistics().jobs[("alice", "stalled")]
                assert js.buffered_bytes <= window + window // 4  # a quarter window of slack
                tg.cancel_scope.cancel()


async def test_drop_connection_resumes_without_loss() -> None:
    with anyio.fail_after(30):
        async with cluster() as n:
            alice, bob = n["alice"], n["bob"]
            tx, rx = alice.channel("bob", "j", "c"), bob.channel("alice", "j", "c")
            got: list[int] = []

            async def reader() -> None:
                for _ in range(2000):
                    got.append(await rx.receive())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                for i in range(2000):
                    await tx.send(i)
                    if i % 400 == 200:
                        assert alice.drop_connection("bob") or bob.drop_connection("alice")
                        await anyio.lowlevel.checkpoint()
            assert got == list(range(2000))
            assert alice.statistics().peers["bob"].reconnects >= 1


async def test_peer_closing_gives_peer_lost_after_buffered_messages() -> None:
    cfg = memory_cluster(("alice", "bob"))
    net = MemoryNetwork()
    with anyio.fail_after(20):
        async with open_node(cfg, "bob", network=net, wait_connected=False) as bob:
            async with open_node(cfg, "alice", network=net) as alice:
                await alice.channel("bob", "j", "c").send("bye")
            ch = bob.channel("alice", "j", "c")
            assert await ch.receive() == "bye"
            with pytest.raises(PeerLost):
                await ch.receive()


async def test_multi_chunk_messages_survive_repeated_cuts() -> None:
    with anyio.fail_after(60):
        async with cluster(chunk_bytes=64 * 1024, job_window_bytes=1 << 20) as n:
            alice, bob = n["alice"], n["bob"]
            tx, rx = alice.channel("bob", "bulk", "c"), bob.channel("alice", "bulk", "c")
            small_tx = alice.channel("bob", "rpc", "c")
            small_rx = bob.channel("alice", "rpc", "c")
            sizes = [1, 70_000, 300_000, 5, 2_000_000, 131_072, 65_536] * 3
            got: list[np.ndarray] = []
            cuts = 0

            def both_connected() -> bool:
                return alice.statistics().peers["bob"].connected and bob.statistics().peers["alice"].connected

            async def reader() -> None:
                for _ in sizes:
                    got.append(await rx.receive())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                for i, size in enumerate(sizes):
                    await until(both_connected, what="reconnected")
                    before = bob.statistics().jobs.get(("alice", "bulk"))
                    seen = before.bytes_received if before else 0
                    await tx.send(np.full(size, i, dtype=np.uint8))
                    small_tx.send_nowait(i)
                    # let part of it through (bob received more of the job), then cut
                    await until(lambda seen=seen: bob.statistics().jobs[("alice", "bulk")].bytes_received > seen)
                    cuts += alice.drop_connection("bob") if i % 2 else bob.drop_connection("alice")
            assert [(g.size, int(g[0])) for g in got] == [(s, i % 256) for i, s in enumerate(sizes)]
            assert all((g == g[0]).all() for g in got)
            assert [await small_rx.receive() for _ in sizes] == list(range(len(sizes)))
            assert cuts == len(sizes)  # every cut found a live connection
            assert alice.statistics().peers["bob"].reconnects >= len(sizes) - 1
