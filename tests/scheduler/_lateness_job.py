"""Run by tests/scheduler/test_loop_lateness.py in a fresh interpreter (no other test's threads or
garbage): an asyncio host's 10 ms ticker beside a big rep3 job in simulate_async. Prints JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import numpy as np

import mpcactors as mpc


class _SlowCallbacks(logging.Handler):
    """Collects the durations asyncio's debug mode reports for slow callbacks."""

    def __init__(self, out: list[float]) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"took ([0-9.]+) seconds", record.getMessage())
        if match:
            self.out.append(float(match.group(1)))


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

    loop = asyncio.get_running_loop()
    held: list[float] = []  # asyncio's debug mode times every callback: code holding the loop
    logging.getLogger("asyncio").addHandler(_SlowCallbacks(held))
    loop.set_debug(True)
    loop.slow_callback_duration = 0.010
    task = loop.create_task(ticker())
    try:
        out = await mpc.simulate_async(program, ["alice", "bob", "carol"], "rep3", timeout=240)
    finally:
        done.set()
        await task
        loop.set_debug(False)
    return {"out": out["alice"], "ticks": ticks, "worst_s": worst, "held_max_s": max(held, default=0.0)}


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
