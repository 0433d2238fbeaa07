"""The node-wide memory budget of worker-thread op steps (scheduler/_budget.py)."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import pytest

import mpcactors as mpc
from mpcactors._config import load_config
from mpcactors.scheduler._budget import BYTES_PER_ELEMENT, MemoryBudget, default_budget_bytes


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: Any) -> str:
    return request.param


def test_rejects_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryBudget(0)


def test_default_is_half_the_physical_memory() -> None:
    import os

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert default_budget_bytes() == total // 2


@pytest.mark.anyio
async def test_requests_that_fit_share_and_the_rest_wait_in_order() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    release = {name: anyio.Event() for name in "abcd"}

    async def user(name: str, n: int) -> None:
        async with budget.hold(n):
            order.append(name)
            await release[name].wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(user, "a", 60)
        await anyio.wait_all_tasks_blocked()  # trio starts tasks in random order: one at a time
        tg.start_soon(user, "b", 40)  # fits beside a
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(user, "c", 70)  # waits for a and b
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(user, "d", 10)  # would fit after a leaves, but c came first
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b"] and budget.held == 100 and budget.waits == 2
        release["a"].set()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b"], "a later small request overtook an earlier big one"
        release["b"].set()
        await anyio.wait_all_tasks_blocked()
        assert order[:2] == ["a", "b"] and set(order[2:]) == {"c", "d"} and budget.held == 80
        release["c"].set()
        release["d"].set()
    assert budget.held == 0 and budget.peak == 100


@pytest.mark.anyio
async def test_an_oversized_request_runs_alone() -> None:
    budget = MemoryBudget(100)
    inside = anyio.Event()
    release = anyio.Event()

    async def big() -> None:
        async with budget.hold(10**9) as n:
            assert n == 100
            inside.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(big)
        await inside.wait()
        with anyio.move_on_after(0) as scope:  # even one byte must wait
            async with budget.hold(1):
                pytest.fail("a request ran beside an oversized one")
        assert scope.cancelled_caught
        release.set()
    assert budget.held == 0


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_nothing_away_and_lets_others_in() -> None:
    budget = MemoryBudget(100)
    release = anyio.Event()
    got_small = anyio.Event()

    async def holder() -> None:
        async with budget.hold(50):
            await release.wait()

    async def waiter(n: int, done: anyio.Event | None) -> None:
        async with budget.hold(n):
            if done is not None:
                done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as big_scope:
            async with anyio.create_task_group() as inner:
                inner.start_soon(waiter, 80, None)  # waits: 50 + 80 > 100
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(waiter, 30, got_small)  # queued behind the big one
                await anyio.wait_all_tasks_blocked()
                assert not got_small.is_set()
                big_scope.cancel()
        await got_small.wait()  # the big waiter left the queue: the small one fits now
        assert budget.held == 50
        release.set()
    assert budget.held == 0


def test_steps_of_concurrent_ops_never_exceed_the_budget() -> None:
    """Two independent 10^5-element products: their thread steps take turns under a budget
    that holds one of them, and the results are right."""
    n = 100_000
    rng = np.random.default_rng(7)
    a, b, c = (rng.standard_normal(n) for _ in range(3))
    one_step = 3 * n * BYTES_PER_ELEMENT  # a product's cost: its output and two inputs
    budget = MemoryBudget(one_step)

    async def program(job: Any) -> Any:
        x = job.input("alice", a)
        y = job.input("bob", b)
        z = job.input("carol", c)
        return await job.reveal([x * y, y * z])

    out = mpc.simulate(program, protocol="rep3", compute_threads=2, memory_budget=budget)
    xy, yz = out["alice"]
    np.testing.assert_allclose(xy, a * b, atol=1e-4)
    np.testing.assert_allclose(yz, b * c, atol=1e-4)
    assert 0 < budget.peak <= one_step
    assert budget.waits > 0  # the bound acted: a step waited for another to finish
    assert budget.held == 0


def test_config_key_and_errors(tmp_path: Any) -> None:
    path = tmp_path / "c.toml"
    base = """
cluster = "c"
protocol = "rep3"
[parties.alice]
address = "127.0.0.1:1"
[parties.bob]
address = "127.0.0.1:2"
[parties.carol]
address = "127.0.0.1:3"
"""
    path.write_text(base + "[runtime]\nmemory_budget_mb = 256\n")
    assert load_config(path).runtime.memory_budget_mb == 256
    path.write_text(base + "[runtime]\nmemory_budget_mb = -1\n")
    with pytest.raises(mpc.ConfigError, match="memory_budget_mb"):
        load_config(path)
    with pytest.raises(mpc.ConfigError, match="memory_budget"):
        mpc.simulate(lambda job: None, protocol="rep3", memory_budget=0)  # type: ignore[arg-type, return-value]
