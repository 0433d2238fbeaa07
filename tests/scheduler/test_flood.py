"""Backpressure end to end (issue 9 point 4): a peer flooding one job with messages its program
never reads costs the victim a bounded amount of memory, and the victim's other jobs complete."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trio

import mpcactors as mpc
from mpcactors import JobAborted, ProtocolError
from mpcactors._config import ClusterConfig
from mpcactors.link import MemoryNetwork
from mpcactors.scheduler._executor import CHANNEL

MIB = 1 << 20
WINDOW = 4 * MIB  # the job window, and so the executor's mailbox bound
FLOOD = 256 * MIB  # what the flooder tries to push (40x the bound below)


@pytest.mark.timeout(120)
def test_a_flooded_job_costs_bounded_memory_and_other_jobs_complete() -> None:
    parties = ["alice", "bob", "carol"]
    config = ClusterConfig.local(parties, protocol="rep3")
    config = dataclasses.replace(config, link=dataclasses.replace(config.link, job_window_bytes=WINDOW, chunk_bytes=256 * 1024))
    out: dict[str, object] = {}
    flood_over = trio.Event()

    async def victim_program(job):  # only alice runs it: its set-up waits for bob and carol forever
        x = job.input("carol", np.ones(4))
        return await job.reveal(x)

    async def honest_program(job):
        x = job.input("alice", np.arange(6.0))
        y = job.input("bob", np.full(6, 2.0))
        return await job.reveal(x * y + 1.0)

    async def node_main(name: str, network: MemoryNetwork) -> None:
        async with mpc.open_node(config, name, network=network) as node, trio.open_nursery() as n:
            if name == "alice":

                async def victim() -> None:
                    try:
                        await node.run(victim_program, job="victim", timeout=60)
                    except (JobAborted, ProtocolError) as exc:
                        out["victim"] = exc

                n.start_soon(victim)
            if name == "bob":

                async def flood() -> None:
                    ch = node.channel("alice", "victim", CHANNEL)
                    payload = np.zeros(MIB // 8, dtype=np.uint64)
                    sent = 0
                    try:
                        for i in range(FLOOD // MIB):  # well-formed entries for ops alice never reaches
                            await ch.send([[100 + i, 0, 1, payload]])
                            sent += MIB
                    except JobAborted as exc:
                        out["flood_stopped"] = exc
                    out["flood_sent"] = sent
                    flood_over.set()

                n.start_soon(flood)
            out[name] = await node.run(honest_program, job="honest", timeout=60)
            with trio.fail_after(60):  # every node stays up until the flood is over
                await flood_over.wait()

    async def main() -> None:
        network = MemoryNetwork()
        with trio.fail_after(100):
            async with trio.open_nursery() as n:
                for p in parties:
                    n.start_soon(node_main, p, network)

    trio.run(main)
    for p in parties:
        np.testing.assert_allclose(out[p], np.arange(6.0) * 2.0 + 1.0, atol=1e-3)
    # the victim job failed naming the flooder, after holding at most 8 windows of its messages
    err = out["victim"]
    assert "'bob'" in str(err) and "has not consumed" in str(err), err
    # the flood was stopped by the abort long before its end: the bytes it got through are
    # bounded by the mailbox limit (8 windows) plus the link's window in flight
    assert isinstance(out.get("flood_stopped"), JobAborted)
    assert out["flood_sent"] <= 8 * WINDOW + 3 * WINDOW, out["flood_sent"]
