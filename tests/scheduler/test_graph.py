"""Graph bookkeeping (plain synchronous tests) and the dealer running ahead."""

from __future__ import annotations

import numpy as np

import mpcactors as mpc
from mpcactors.scheduler._graph import Graph, OpState


def test_op_ids_follow_construction_order_and_heights_follow_the_longest_path():
    g = Graph("job")
    a = g.add("a", [], lambda ctx, ins: None)
    b = g.add("b", [a], lambda ctx, ins: None)
    c = g.add("c", [b], lambda ctx, ins: None)
    d = g.add("d", [a], lambda ctx, ins: None)
    assert [n.op_id for n in g.nodes] == [0, 1, 2, 3]
    g.update_heights([b, d, a])
    assert (a.height, b.height, d.height) == (3, 2, 1)
    assert b.height > d.height  # b is on the longer remaining path: stepped first when CPU-bound
    assert a.consumers == [b, d] and not c.consumers
    assert b.state is OpState.WAITING and not b.inputs_ready
    assert b.input_done() and b.inputs_ready


def test_the_dealer_runs_ahead_of_the_holders():
    """semi2k with a dealer: the dealer needs shapes, not values, so it deals the triples of a
    whole chain of products in fewer ticks than the holders need rounds (prefetching)."""

    async def program(job):
        x = await job.input("alice", np.full(4, 2), dtype=int)
        y = await job.input("bob", np.full(4, 1), dtype=int)
        before = job.statistics().flushes
        z = x
        for _ in range(10):
            z = z * y
        await z
        return (job.statistics().flushes - before, z.rounds - x.rounds), await job.reveal(z)

    out = mpc.simulate(program, parties=["alice", "bob", "carol"], protocol="semi2k", dealer="carol", timeout=30)
    for value in (v for _, v in out.values()):
        np.testing.assert_array_equal(value, np.full(4, 2))
    assert out["alice"][0][1] == 10  # the holders pay one round per product
    dealer_ticks = out["carol"][0][0]
    assert dealer_ticks <= 3, dealer_ticks  # the dealer sent all ten corrections up front


def test_a_ready_op_of_a_job_that_ended_is_dropped_not_fatal():
    """Regression: a failed job closed while one of its ops sat in the ready list crashed the
    node's executor (and so every other job of the node)."""
    import trio

    from mpcactors.ops._registry import make_protocol
    from mpcactors.scheduler._executor import Executor, JobState

    async def main():
        ex = Executor(link=None, party="alice")
        proto = make_protocol("rep3", "alice", ["alice", "bob", "carol"])
        state = JobState("gone", "alice", proto)
        ex.open_job(state)
        node = state.graph.add("local", [], lambda ctx, ins: 42)
        ex.submit(node)
        ex.close_job(state)
        await ex._tick()  # must not raise
        other = JobState("alive", "alice", proto)
        ex.open_job(other)
        n2 = other.graph.add("local", [], lambda ctx, ins: 7)
        ex.submit(n2)
        await ex._tick()
        return n2.result, node.state

    result, state = trio.run(main)
    assert result == 7
    assert state is not OpState.DONE
