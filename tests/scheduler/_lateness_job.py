"""Run by tests/scheduler/test_loop_lateness.py in a fresh interpreter (no other test's threads or
garbage): an asyncio host's 10 ms ticker beside a big rep3 job in simulate_async. Prints JSON."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np

import mpcactors as mpc


def _time_callbacks(wall: list[float], cpu: list[float]) -> None:
    """Records how long each loop callback ran: wall time, and the loop thread's CPU time.

    Wall time also counts the moments the OS or the GIL gave the CPU to another thread or
    process, which a busy host makes arbitrarily long; CPU time (``time.thread_time``) counts
    only the work the callback itself did on the loop thread, which is what the invariant is
    about. (asyncio's debug mode times callbacks too, but it records a traceback at every
    ``call_soon``, which costs more than what it measures.)
    """
    original = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            original(handle)
        finally:
            cpu.append(time.thread_time() - start_cpu)
            wall.append(time.perf_counter() - start)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]


async def main() -> dict[str, object]:
    rng = np.random.default_rng(7)
    a = rng.uniform(-1, 1, size=(1024, 1024)) / 32
    b = rng.uniform(-1, 1, size=(1024, 1024)) / 32
    u = rng.normal(size=10**6)
    v = rng.normal(size=10**6)

    async def program(job):
        x = job.input("alice", lambda: a)
        y = job.input("bob", lambda: b)
        z = ((x @ y) @ y) @ y
        c = job.input("alice", lambda: u) < job.input("bob", lambda: v)
        return await job.reveal([z[:2, :8], c.sum(), c[:16]])

    worst = 0.0
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst, ticks
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.010)
            worst = max(worst, time.perf_counter() - t - 0.010)
            ticks += 1

    held: list[float] = []  # each loop callback's wall time: code holding the loop
    on_cpu: list[float] = []  # ... and the loop thread's CPU time in it
    _time_callbacks(held, on_cpu)
    task = asyncio.get_running_loop().create_task(ticker())
    try:
        out = await mpc.simulate_async(program, ["alice", "bob", "carol"], "rep3", timeout=240)
    finally:
        done.set()
        await task
    return {
        "out": out["alice"], "ticks": ticks, "worst_s": worst, "held_max_s": max(held),
        "cpu_max_s": max(on_cpu), "callbacks": len(on_cpu),
    }  # fmt: skip


def check() -> dict[str, object]:
    got = asyncio.run(main())
    rng = np.random.default_rng(7)  # the same draws, checked after the loop has ended
    a = rng.uniform(-1, 1, size=(1024, 1024)) / 32
    b = rng.uniform(-1, 1, size=(1024, 1024)) / 32
    u = rng.normal(size=10**6)
    v = rng.normal(size=10**6)
    z, count, bits = got.pop("out")  # type: ignore[misc]
    got["z_err"] = float(np.max(np.abs(np.asarray(z) - (((a @ b) @ b) @ b)[:2, :8])))
    got["count_ok"] = int(count) == int(np.sum(u < v))
    got["bits_ok"] = bool(np.array_equal(np.asarray(bits, dtype=bool), (u < v)[:16]))
    return got


if __name__ == "__main__":
    print(json.dumps(check()))
