"""Comparisons and non-linear functions through secret tensors, and SPU's logistic regression."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc

ROOT = Path(__file__).resolve().parents[2]


def sim(setup, program, **kw):
    protocol, parties, options = setup
    return mpc.simulate(program, parties=parties, protocol=protocol, timeout=120, **options, **kw)


def test_comparisons_selection_and_functions_through_numpy(small_setup):
    rng = np.random.default_rng(7)
    a = np.round(rng.uniform(-8, 8, size=(6, 5)), 3)
    b = np.round(rng.uniform(-8, 8, size=(6, 5)), 3)
    b[0, :2] = a[0, :2]  # some equal values

    async def program(job):
        x = job.input("alice", a)
        y = job.input("bob", b)
        return await job.reveal(
            {
                "lt": x < y, "le": x <= y, "gt": x > y, "ge": x >= y, "eq": x == y, "lt_pub": x < 1.5,
                "max": np.maximum(x, y), "relu": np.maximum(x, 0), "where": np.where(x > y, x, y * 2),
                "abs": abs(x), "rowmax": x.max(axis=1), "argmax": x.argmax(axis=1), "colmin": np.min(x, axis=0),
                "exp": np.exp(x * 0.25), "sigmoid": mpc.sigmoid(x), "tanh": np.tanh(x * 0.5),
                "recip": 1.0 / (abs(x) + 1.0), "sqrt": np.sqrt(abs(x)), "log": np.log(abs(x) + 0.5),
                "div": x / (abs(y) + 1.0), "clip": np.clip(x, -1.0, 2.0),
            }
        )

    out = sim(small_setup, program)["alice"]
    exact = {
        "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b, "lt_pub": a < 1.5,
        "argmax": a.argmax(axis=1),
    }
    for k, want in exact.items():
        np.testing.assert_array_equal(out[k], want.astype(np.int64), err_msg=k)
    approx = {
        "max": np.maximum(a, b), "relu": np.maximum(a, 0), "where": np.where(a > b, a, b * 2), "abs": np.abs(a),
        "rowmax": a.max(axis=1), "colmin": a.min(axis=0), "exp": np.exp(a * 0.25), "sigmoid": 1 / (1 + np.exp(-a)),
        "tanh": np.tanh(a * 0.5), "recip": 1 / (np.abs(a) + 1), "sqrt": np.sqrt(np.abs(a)),
        "log": np.log(np.abs(a) + 0.5), "div": a / (np.abs(b) + 1), "clip": np.clip(a, -1.0, 2.0),
    }
    for k, want in approx.items():
        err = np.max(np.abs(out[k] - want))
        assert err <= 1e-3 * max(1.0, float(np.max(np.abs(want)))) , (k, err)


def test_sixteen_independent_comparisons_cost_the_rounds_of_one(small_setup):
    rng = np.random.default_rng(8)
    a = rng.uniform(-5, 5, size=(16, 10))
    b = rng.uniform(-5, 5, size=(16, 10))

    async def program(job):
        x = await job.input("alice", a)
        y = await job.input("bob", b)
        before = max(x.rounds, y.rounds)
        one = x[0] < y[0]
        await one
        single = one.rounds - before
        branches = [x[i] < y[i] for i in range(16)]
        for c in branches:
            await c
        many = max(c.rounds for c in branches) - before
        return single, many, job.statistics().rounds, await job.reveal(branches)

    out = sim(small_setup, program)
    singles = max(v[0] for v in out.values())
    manys = max(v[1] for v in out.values())
    assert singles == manys, (singles, manys)
    assert singles <= 9, singles  # a 64-bit comparison: log-depth carry circuit + conversion
    for _, _, _, values in out.values():
        np.testing.assert_array_equal(np.array(values), (a < b).astype(np.int64))


def _load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "protocol,parties,options",
    [("rep3", ["alice", "bob", "carol"], {}), ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"})],
    ids=["rep3", "semi2k+dealer"],
)
def test_logistic_regression_matches_float64_training(protocol, parties, options):
    lr = _load_example("logistic_regression")
    x, y = lr.lr_data(2000, 10)
    w_plain = lr.train(x, y)
    out = mpc.simulate(lr.main, parties=parties, protocol=protocol, timeout=120, **options)
    for party, w in out.items():
        assert abs(lr.accuracy(x, y, w) - lr.accuracy(x, y, w_plain)) <= 0.01, party
        assert np.max(np.abs(w - w_plain)) <= 1e-2, party
