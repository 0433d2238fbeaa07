"""A finished job's op results are freed when the job ends, not by a later cyclic garbage
collection (which froze the event loop for 200 ms in the middle of another job)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np

import mpcactors as mpc


def test_op_results_die_with_their_job_without_the_cyclic_collector() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50_000), rng.normal(size=50_000)
    refs: list[weakref.ref[np.ndarray]] = []

    async def program(job: Any) -> Any:
        x = job.input("alice", a)
        y = job.input("bob", b)
        z = x * y + x
        out = await job.reveal(z.sum())
        for t in (x, y, z):  # every party's share arrays of the intermediate values
            refs.extend(weakref.ref(p) for p in t._node.result.parts)
        return out

    gc.collect()
    gc.disable()
    try:
        out = mpc.simulate(program, protocol="rep3")
        assert refs and all(r() is None for r in refs), f"{sum(r() is not None for r in refs)} arrays still alive"
    finally:
        gc.enable()
    np.testing.assert_allclose(out["alice"], np.sum(a * b + a), rtol=1e-3, atol=1e-2)
