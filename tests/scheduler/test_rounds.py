"""Round merging, asserted from job statistics (and virtual time under trio's MockClock)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import trio
import trio.testing

import mpcactors as mpc


def sim(setup, program, **kw):
    protocol, parties, options = setup
    return mpc.simulate(program, parties=parties, protocol=protocol, timeout=60, **options, **kw)


def rounds_of(job):
    return job.statistics().rounds


# Rounds of one fixed-point product: the multiplication, then the faithful truncation's opening
# of x + r (semi2k: one more round; rep3: the product's round carries the opening, then one
# re-replication round). Integer products have no truncation.
FXP_MUL_ROUNDS = {"rep3": 2, "semi2k-2+dealer": 2, "semi2k-2-tfp": 2, "semi2k-3+dealer": 2, "semi2k-4+dealer": 2}


@pytest.fixture(params=list(FXP_MUL_ROUNDS))
def any_setup(request):
    from .conftest import SETUPS

    return request.param, SETUPS[request.param]


@pytest.mark.parametrize("k", [1, 8, 32])
def test_independent_muls_cost_one_round(any_setup, k):
    name, setup = any_setup
    hs = [p for p in setup[1] if p != setup[2].get("dealer")]

    async def program(job):
        xs = [job.input(hs[0], np.full(4, i + 1), dtype=int) for i in range(k)]
        ys = [job.input(hs[-1], np.full(4, 2), dtype=int) for _ in range(k)]
        fx = [job.input(hs[0], np.full(4, i + 1.5)) for i in range(k)]
        for t in xs + ys + fx:
            await t
        before = rounds_of(job)
        products = [x * y for x, y in zip(xs, ys)]
        fxp = [a * b for a, b in zip(fx, products)]  # fixed point x integer: no truncation
        fxp2 = [a * a for a in fx]  # fixed point x fixed point: truncation
        for p in products + fxp + fxp2:
            await p
        return (
            max(p.rounds for p in products) - before,
            max(p.rounds for p in fxp2) - before,
            rounds_of(job) - before,
            await job.reveal([products, fxp, fxp2]),
        )

    out = sim(setup, program)
    # rounds are causal depths at each party; a party that has no part in the last round of a
    # protocol (rep3 truncation: party 1) sees one less, so the job's count is the maximum
    assert max(r[0] for r in out.values()) == 1
    assert max(r[1] for r in out.values()) == FXP_MUL_ROUNDS[name]
    assert max(r[2] for r in out.values()) == max(2, FXP_MUL_ROUNDS[name])  # a * (x * y): 2 deep
    for _, _, _, (ints, mixed, squares) in out.values():
        for i in range(k):
            np.testing.assert_array_equal(ints[i], np.full(4, 2 * (i + 1)))
            np.testing.assert_allclose(mixed[i], np.full(4, (i + 1.5) * 2 * (i + 1)), atol=1e-4)
            np.testing.assert_allclose(squares[i], np.full(4, (i + 1.5) ** 2), atol=1e-3)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_chain_of_k_costs_k_rounds(any_setup, k):
    name, setup = any_setup
    hs = [p for p in setup[1] if p != setup[2].get("dealer")]

    async def program(job):
        x = await job.input(hs[0], np.full(3, 3), dtype=int)
        y = await job.input(hs[-1], np.full(3, -1), dtype=int)
        u = await job.input(hs[0], np.full(3, 1.5))
        v = await job.input(hs[-1], np.full(3, 1.0))
        before = rounds_of(job)
        z, w = x, u
        for _ in range(k):
            z = z * y
            w = w * v
        await z
        await w
        return z.rounds - before, w.rounds - before, await job.reveal([z, w])

    out = sim(setup, program)
    assert max(r[0] for r in out.values()) == k
    assert max(r[1] for r in out.values()) == k * FXP_MUL_ROUNDS[name]
    for _, _, (z, w) in out.values():
        np.testing.assert_array_equal(z, np.full(3, 3 * (-1) ** k))
        np.testing.assert_allclose(w, np.full(3, 1.5), atol=1e-4)


def test_two_concurrent_jobs_share_frames():
    """Two jobs on the same nodes, one multiplication each, at the same time: the executor's
    messages of both jobs to a peer leave in the same frames.

    Deterministic by construction (no polling, no sleeps): a barrier over all six (party, job)
    programs opens only when every input reveal everywhere has completed (so every earlier message
    has been written and received), and both programs at a party build their multiplication in the
    same scheduling batch, before the executor's next tick. The "after" statistics are taken behind
    a second barrier that opens when every party's both products are done, which implies every
    multiplication message was written (each party's product needs its neighbour's message).
    """
    from mpcactors._config import ClusterConfig
    from mpcactors.link import MemoryNetwork

    parties = ["alice", "bob", "carol"]
    config = ClusterConfig.local(parties, protocol="rep3")
    results: dict = {}

    class Barrier:
        def __init__(self, n: int) -> None:
            self.n = n
            self.event = trio.Event()

        async def arrive(self) -> None:
            self.n -= 1
            if self.n == 0:
                self.event.set()
            await self.event.wait()

    inputs_done = Barrier(2 * len(parties))
    products_done = Barrier(2 * len(parties))

    async def node_main(name, network):
        # no tick budget: a tick cut short by a slow machine (the executor yields and flushes
        # after tick_budget_s of inline work) would send the two jobs' messages in two frames
        async with mpc.open_node(config, name, network=network, tick_budget_s=3600.0) as node:

            async def job_main(tag):
                async def prog(job):
                    x = job.input("alice", np.full(8, 3), dtype=int)
                    y = job.input("bob", np.full(8, 5), dtype=int)
                    await job.reveal([x, y])
                    await inputs_done.arrive()
                    s_before = job.statistics()
                    link_before = node.statistics()
                    z = x * y
                    await z
                    await products_done.arrive()
                    s_after = job.statistics()
                    link_after = node.statistics()
                    assert z.rounds - max(x.rounds, y.rounds) == 1
                    return s_before, s_after, link_before, link_after, await job.reveal(z)

                results[(name, tag)] = await node.run(prog, job=f"job-{tag}", timeout=30)

            async with trio.open_nursery() as n:
                n.start_soon(job_main, "a")
                n.start_soon(job_main, "b")

    async def main():
        network = MemoryNetwork()
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for p in parties:
                    n.start_soon(node_main, p, network)

    trio.run(main)
    for p in parties:
        (a0, a1, _, _, za), (b0, b1, _, _, zb) = results[(p, "a")], results[(p, "b")]
        np.testing.assert_array_equal(za, np.full(8, 15))
        np.testing.assert_array_equal(zb, np.full(8, 15))
        for peer in a1.peers:
            da = a1.peers[peer].frames - a0.peers[peer].frames
            db = b1.peers[peer].frames - b0.peers[peer].frames
            # rep3 resharing: one message to the previous party, in one frame for both jobs
            assert da == db, (p, peer, da, db)
            assert da in (0, 1), (p, peer, da)
        assert sum(a1.peers[q].frames - a0.peers[q].frames for q in a1.peers) == 1, p
    # the node-level count agrees: while both jobs multiplied, one DATA frame per peer carried both
    for p in parties:
        _, _, la0, la1, _ = results[(p, "a")]
        _, _, lb0, lb1, _ = results[(p, "b")]
        first0 = min((la0, lb0), key=lambda s: sum(v.data_frames_sent for v in s.peers.values()))
        last1 = max((la1, lb1), key=lambda s: sum(v.data_frames_sent for v in s.peers.values()))
        sent = sum(last1.peers[q].data_frames_sent - first0.peers[q].data_frames_sent for q in last1.peers)
        assert sent == 1, (p, sent)


def test_independent_chains_pay_the_longest_chain_of_latency():
    """8 independent chains of 5 multiplications with 20 ms one-way latency: virtual time of
    about 5 rounds (plus set-up, inputs and reveal), not 40 (MockClock: no wall-clock asserts)."""
    latency = 0.020

    async def program(job):
        xs = [job.input("alice", np.full(4, 1 + i), dtype=int) for i in range(8)]
        y = job.input("bob", np.full(4, 1), dtype=int)
        await job.reveal(xs + [y])
        t0 = trio.current_time()
        chains = []
        for x in xs:
            z = x
            for _ in range(5):
                z = z * y
            chains.append(z)
        for z in chains:
            await z
        elapsed = trio.current_time() - t0
        return elapsed, await job.reveal(chains)

    clock = trio.testing.MockClock(autojump_threshold=0)
    out = trio.run(
        # compute_threads=0: every step inline (the autojump clock would race ahead while a worker thread runs)
        functools.partial(mpc.simulate_async, program, ["alice", "bob", "carol"], "rep3", latency_ms=latency * 1000, timeout=60, compute_threads=0),
        clock=clock,
    )
    for party, (elapsed, values) in out.items():
        for i, v in enumerate(values):
            np.testing.assert_allclose(v, np.full(4, 1.0 + i), atol=1e-3)
        rounds = elapsed / latency
        assert 4.5 <= rounds <= 7.5, (party, rounds)  # ~5 rounds of one-way latency, not 40


@pytest.mark.parametrize("holders", [2, 3])
def test_products_without_a_dealer_prepare_ahead(holders):
    """Without a dealer each product's correlations are made from shapes by an op of its own as
    soon as the product is built, beside the inputs' rounds: a chain of k products pays the
    preparation once, then the dealer's rounds per product (1 for integers, 2 fixed point)."""
    parties = ["alice", "bob", "carol"][:holders]
    setup = ("semi2k", parties, {"dealer": "none"})
    leads = {}
    for k in (2, 5):

        async def program(job, k=k):
            x = await job.input(parties[0], np.full(3, 3), dtype=int)
            y = await job.input(parties[-1], np.full(3, -1), dtype=int)
            u = await job.input(parties[0], np.full(3, 1.5))
            v = await job.input(parties[-1], np.full(3, 1.0))
            m = await job.input(parties[-1], np.eye(3))
            before = rounds_of(job)
            z, w = x, u
            for _ in range(k):
                z = z * y
                w = m @ (w * v)
            await z
            await w
            return z.rounds - before, w.rounds - before, await job.reveal([z, w])

        out = sim(setup, program)
        z_rounds = max(r[0] for r in out.values())
        w_rounds = max(r[1] for r in out.values())
        leads[k] = (z_rounds - k, w_rounds - 4 * k)  # int mul: 1 round; fxp mul and matmul: 2 each
        for _, _, (z, w) in out.values():
            np.testing.assert_array_equal(z, np.full(3, 3 * (-1) ** k))
            np.testing.assert_allclose(w, np.full(3, 1.5), atol=1e-4)
    assert leads[2] == leads[5]  # the preparation is paid once, not per product
    assert leads[2][0] <= 2 and leads[2][1] <= 2 * (holders - 1)  # its OT rounds, ahead of all


def test_public_shape_is_the_same_at_every_party():
    """Graph decisions (a product's preparation) use shapes every party knows at that point of
    the program: declared or awaited, not the owner's local value."""

    async def program(job):
        x = job.input("alice", np.ones(3))  # alice knows (3,) from her value, bob does not
        d = job.input("bob", np.ones(2), shape=(2,))  # declared: known everywhere
        before = (x.public_shape, d.public_shape, (x * x).public_shape, (d * d).public_shape)
        await x
        return before, x.public_shape, (x * x).public_shape

    out = mpc.simulate(program, parties=["alice", "bob"], protocol="semi2k", timeout=30)
    assert out == {p: ((None, (2,), None, (2,)), (3,), (3,)) for p in ("alice", "bob")}


def test_preparations_run_a_bounded_distance_ahead():
    """A preparation waits for the ops PREPARE_AHEAD inputs above its product's inputs, so a long
    chain does not hold every product's correlations at once; preparations never wait for
    each other (a chain's would then run one after another)."""
    from mpcactors.scheduler._job import PREPARE_AHEAD

    async def program(job):
        u = await job.input("alice", np.full(3, 1.5))
        v = await job.input("bob", np.full(3, 1.0))
        chain = [u]
        for _ in range(8):
            chain.append(chain[-1] * v)
        value = await job.reveal(chain[-1])
        preps = [n for n in job._state.graph.nodes if n.name == "mul.prepare"]
        products = [t.node for t in chain[1:]]
        waits = [sorted(products.index(i) for i in p.inputs if i in products) for p in preps]
        return value, waits, any(i.name.endswith(".prepare") for p in preps for i in p.inputs)

    out = mpc.simulate(program, parties=["alice", "bob"], protocol="semi2k", timeout=60)
    for value, waits, chained in out.values():
        np.testing.assert_allclose(value, np.full(3, 1.5), atol=1e-4)
        assert not chained
        # product k (0-based) prepares once product k - 1 - PREPARE_AHEAD is done; the first
        # PREPARE_AHEAD + 1 prepare right after the inputs
        assert waits == [[] for _ in range(PREPARE_AHEAD + 1)] + [[k - 1 - PREPARE_AHEAD] for k in range(PREPARE_AHEAD + 1, 8)]


def _watch_ahead_work(monkeypatch, before_driver_work=None):
    """Count ``Ahead`` work computed by the driver (the executor, while messages travel) and by
    the resumed step itself (``Ahead.result``); call ``before_driver_work()`` before each of the
    driver's. Several OT chunks even for a small product (``ROUND_BYTES`` lowered)."""
    import threading

    import mpcactors.ops._comm as comm
    import mpcactors.ops._ot_engine as engine

    monkeypatch.setattr(engine, "ROUND_BYTES", 1 << 22)
    seen = {"driver": 0, "step": 0}
    local = threading.local()
    call, result = comm.Ahead.__call__, comm.Ahead.result

    def counted_call(self):
        fresh = self._fn is not None
        by_step = getattr(local, "in_result", False)
        if fresh and not by_step and before_driver_work is not None:
            before_driver_work()
        call(self)
        if fresh:
            seen["step" if by_step else "driver"] += 1

    def flagged_result(self):
        local.in_result = True
        try:
            return result(self)
        finally:
            local.in_result = False

    monkeypatch.setattr(comm.Ahead, "__call__", counted_call)
    monkeypatch.setattr(comm.Ahead, "result", flagged_result)
    return seen


def _int_product_program(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-1000, 1000, 1 << 15), rng.integers(-1000, 1000, 1 << 15)

    async def program(job):
        x = await job.input("alice", a, dtype=int)
        y = await job.input("bob", b, dtype=int)
        return await job.reveal(x * y)

    return program, a * b


def test_ot_steps_compute_their_next_chunk_while_messages_travel(monkeypatch):
    """A step's ``meanwhile`` (the OT receiver's next chunk) runs in a worker thread while the
    round's messages are in flight: in every round at least the party that yields first finds
    the other's message missing, so its executor runs the work, not the resumed step. The
    product is still exact and the round count is that of the chunks."""
    seen = _watch_ahead_work(monkeypatch)
    program, expected = _int_product_program(7)
    out = sim(("semi2k", ["alice", "bob"], {"dealer": "none", "mul_triples": "ot"}), program)
    for value in out.values():
        np.testing.assert_array_equal(value, expected)
    assert seen["driver"] >= 1, seen  # the executor ran the work ahead at least once
    assert seen["driver"] + seen["step"] >= 2 * 5, seen  # 2 Mi rows each way, 335 k a chunk


def test_a_peer_cut_off_while_the_next_chunk_is_computed_fails_the_job_naming_it(monkeypatch):
    """The executor's ``meanwhile`` path keeps the op RUNNING; a peer lost meanwhile must still
    fail the job with PeerLost naming it (the op blocks after the work and sees the peer gone),
    not leave it waiting. bob is cut off from inside the first ahead-work an executor runs (at
    either party: the other end of a cut cable is lost too)."""
    import anyio.from_thread

    from mpcactors._config import ClusterConfig, LinkOptions
    from mpcactors.link import MemoryNetwork

    net = MemoryNetwork()

    def cut_once():
        if not seen["cut"]:
            seen["cut"] = 1
            anyio.from_thread.run_sync(net.partition, "bob")  # a pulled cable: no CLOSE

    seen = _watch_ahead_work(monkeypatch, cut_once)
    seen["cut"] = 0
    link = LinkOptions(peer_timeout_s=2.0, heartbeat_interval_s=0.2, connect_retry_times=2)
    config = ClusterConfig.local(["alice", "bob"], protocol="semi2k", dealer="none", link=link)
    program, _ = _int_product_program(3)
    errors = {}

    async def party(name):
        async with mpc.open_node(config, name, network=net) as node:
            try:
                await node.run(program, job="cut", timeout=60)
            except mpc.MpcError as exc:
                errors[name] = exc

    async def main():
        with trio.fail_after(90):  # the bug would be a hang
            async with trio.open_nursery() as nursery:
                for name in ("alice", "bob"):
                    nursery.start_soon(party, name)

    trio.run(main)
    assert seen["cut"] == 1
    assert set(errors) == {"alice", "bob"}, errors
    for name, exc in errors.items():
        other = "bob" if name == "alice" else "alice"
        assert isinstance(exc, (mpc.PeerLost, mpc.JobAborted)) and repr(other) in str(exc), (name, exc)
