"""Jobs: abort propagation, clear errors, timeouts, many jobs on one node, asyncio."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
import trio

import mpcactors as mpc
from mpcactors._config import ClusterConfig
from mpcactors.link import MemoryNetwork

from .._nodes import job_errors

PARTIES = ["alice", "bob", "carol"]


def test_a_failing_loader_aborts_the_job_at_every_party():
    def load():
        raise FileNotFoundError("/data/bob.csv")

    async def program(job):
        x = job.input("alice", np.ones(3))
        y = job.input("bob", load)
        return await job.reveal(x * y)

    config = ClusterConfig.local(PARTIES, protocol="rep3")
    errors = job_errors({p: config for p in PARTIES}, lambda _: program, job="j1")
    assert set(errors) == set(PARTIES)
    for exc in errors.values():
        assert isinstance(exc, mpc.JobAborted) and exc.party == "bob" and exc.job == "j1"
        assert "FileNotFoundError" in exc.cause and "/data/bob.csv" in exc.cause


def test_a_shape_mismatch_aborts_everywhere_naming_the_party():
    async def program(job):
        x = job.input("alice", np.ones((3, 4)))
        y = job.input("bob", np.ones((5, 2)))
        return await job.reveal(x @ y)

    with pytest.raises(mpc.JobAborted) as info:
        mpc.simulate(program, parties=PARTIES, protocol="rep3", timeout=20)
    assert "ShapeError" in str(info.value) or "shape" in str(info.value).lower()


def test_static_shape_errors_are_raised_where_the_program_is_written():
    async def program(job):
        x = job.input("alice", np.ones((3, 4)), shape=(3, 4))
        y = job.input("bob", np.ones((5, 2)), shape=(5, 2))
        return x @ y

    with pytest.raises(mpc.JobAborted, match="ShapeError"):
        mpc.simulate(program, parties=PARTIES, protocol="rep3", timeout=20)


def test_declared_shape_is_checked_at_the_owner():
    async def program(job):
        x = job.input("alice", np.ones((2, 2)), shape=(3,))
        return await job.reveal(x)

    with pytest.raises(mpc.JobAborted, match="declared"):
        mpc.simulate(program, parties=PARTIES, protocol="rep3", timeout=20)


def test_unknown_protocol_and_bad_dealer_are_config_errors():
    async def program(job):
        return None

    with pytest.raises(mpc.ConfigError, match="unknown protocol"):
        mpc.simulate(program, parties=PARTIES, protocol="spdz", timeout=10)
    # no dealer named: the three parties make their own correlations by pairs (no error)
    assert mpc.simulate(program, parties=PARTIES, protocol="semi2k", timeout=30) == {p: None for p in PARTIES}
    with pytest.raises(mpc.ConfigError, match="dealer"):
        mpc.simulate(program, parties=PARTIES, protocol="semi2k", dealer="dave", timeout=10)
    with pytest.raises(mpc.ConfigError, match="3"):
        mpc.simulate(program, parties=["alice", "bob"], protocol="rep3", timeout=10)


def test_job_timeout_aborts_everywhere():
    async def program(job):
        x = job.input("alice", np.ones(3))
        if job.party == "bob":
            await trio.sleep(30)  # bob never takes part in the product
        return await job.reveal(x * x)

    with pytest.raises((mpc.JobTimeout, mpc.JobAborted)) as info:
        mpc.simulate(program, parties=PARTIES, protocol="rep3", timeout=1.0)
    assert "timed out" in str(info.value)


def test_many_jobs_on_one_node_and_a_failing_one_leaves_the_others_alone():
    async def good(job, k):
        x = job.input("alice", np.full(4, float(k)))
        y = job.input("bob", np.full(4, 2.0))
        z = x * y
        for _ in range(3):
            z = z * 1.0 + x
        return await job.reveal(z)

    async def bad(job):
        x = job.input("alice", np.ones(4))
        y = job.input("carol", lambda: (_ for _ in ()).throw(ValueError("corrupt input at carol")))
        return await job.reveal(x * y)

    async def main():
        network = MemoryNetwork()
        config = ClusterConfig.local(PARTIES, protocol="rep3")
        results: dict = {}
        failures: dict = {}

        async def party(name):
            async with mpc.open_node(config, name, network=network) as node:

                async def one(k):
                    results[(name, k)] = await node.run(good, k, job=f"good-{k}", timeout=30)

                async def failing():
                    try:
                        await node.run(bad, job="bad", timeout=30)
                    except mpc.JobAborted as exc:
                        failures[name] = exc

                async with trio.open_nursery() as n:
                    for k in range(12):
                        n.start_soon(one, k)
                    n.start_soon(failing)

        async with trio.open_nursery() as n:
            for p in PARTIES:
                n.start_soon(party, p)
        return results, failures

    results, failures = trio.run(main)
    for (name, k), value in results.items():
        np.testing.assert_allclose(value, np.full(4, 2.0 * k + 3 * k), atol=1e-3)
    assert len(results) == 12 * 3
    assert set(failures) == set(PARTIES)
    assert all(f.party == "carol" and "corrupt input" in f.cause for f in failures.values())


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_simulate_async_under_both_event_loops(backend):
    async def program(job):
        x = job.input("alice", np.arange(5.0))
        y = job.input("bob", np.arange(5.0))
        return await job.reveal(mpc.maximum(x * y, 4.0))

    async def main():
        return await mpc.simulate_async(program, PARTIES, "rep3", timeout=30)

    out = anyio.run(main, backend=backend)
    for value in out.values():
        np.testing.assert_allclose(value, np.maximum(np.arange(5.0) ** 2, 4.0), atol=1e-3)


def test_job_ids_must_agree():
    async def program(job):
        x = job.input("alice", np.ones(2))
        return await job.reveal(x)

    def program_of(name):
        async def party_program(job):
            return await program(job)

        party_program.__qualname__ = f"program_{name}" if name == "carol" else "program"
        return party_program

    config = ClusterConfig.local(["alice", "bob", "carol"], protocol="rep3")
    errors = job_errors({p: config for p in PARTIES}, program_of, job="same-id", timeout=10)
    assert set(errors) == {"alice", "bob", "carol"}
    assert any("disagree" in str(e) and "program" in str(e) for e in errors.values())


def test_job_secure_sum_returns_the_sum_at_the_server_only():
    parties = ["alice", "bob", "carol", "dave"]
    vectors = {p: np.random.default_rng(i).uniform(-1, 1, 50) for i, p in enumerate(parties)}

    async def program(job):
        mine = None if job.party == "alice" else vectors[job.party]
        first = await job.secure_sum(mine, server="alice", threshold=2)
        second = await job.secure_sum(None if mine is None else 2 * mine, server="alice", threshold=3)
        return first, second

    out = mpc.simulate(program, parties=parties, protocol="semi2k", dealer="alice", timeout=60)
    want = sum(vectors[p] for p in parties[1:])
    np.testing.assert_allclose(out["alice"][0], want, atol=1e-4)
    np.testing.assert_allclose(out["alice"][1], 2 * want, atol=1e-4)
    for p in parties[1:]:
        assert out[p] == (None, None)


def test_returning_a_secret_tensor_or_a_sync_program_is_a_clear_error():
    async def leaks(job):
        return {"x": job.input("alice", np.ones(2))}

    with pytest.raises(mpc.JobAborted, match="reveal"):
        mpc.simulate(leaks, parties=PARTIES, protocol="rep3", timeout=10)

    def not_async(job):
        return None

    with pytest.raises(TypeError, match="async def"):
        mpc.simulate(not_async, parties=PARTIES, protocol="rep3", timeout=10)


def test_a_diverged_program_is_aborted_by_the_idle_watchdog_not_left_hanging():
    """bob's program takes another branch and never joins the product: alice and carol wait for
    him; with no job timeout set, the idle watchdog aborts the job everywhere (virtual time)."""
    import functools

    import trio.testing

    async def program(job):
        x = job.input("alice", np.ones(3))
        if job.party == "bob":
            await trio.sleep_forever()  # a bug: the parties' programs diverged
        return await job.reveal(x * x)

    async def main():
        return await mpc.simulate_async(program, PARTIES, "rep3", idle_timeout=30, compute_threads=0)

    with pytest.raises((mpc.JobTimeout, mpc.JobAborted)) as info:
        trio.run(functools.partial(main), clock=trio.testing.MockClock(autojump_threshold=0))
    assert "no progress" in str(info.value) and "bob" in str(info.value)
