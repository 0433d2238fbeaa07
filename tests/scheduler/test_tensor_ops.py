"""Secret tensor ops agree with numpy, for every protocol set-up (simulate, in-memory links)."""

from __future__ import annotations

import numpy as np

import mpcactors as mpc

ULP = 2.0**-18


def run(setup, program, **kw):
    protocol, parties, options = setup
    return mpc.simulate(program, parties=parties, protocol=protocol, timeout=60, **options, **kw)


def holders(setup):
    _, parties, options = setup
    dealer = options.get("dealer")
    return [p for p in parties if p != dealer]


def test_arithmetic_matches_numpy(setup):
    rng = np.random.default_rng(1)
    hs = holders(setup)
    a = rng.normal(0, 10, size=(5, 4))
    b = rng.normal(0, 10, size=(5, 4))
    c = rng.normal(0, 3, size=(4, 3))
    v = rng.normal(0, 3, size=(4,))

    async def program(job):
        x = job.input(hs[0], lambda: a)
        y = job.input(hs[-1], lambda: b)
        z = job.input(hs[1 % len(hs)], lambda: c)
        w = job.input(hs[0], lambda: v)
        return await job.reveal(
            {
                "add": x + y,
                "sub": x - y,
                "neg": -x,
                "mul": x * y,
                "matmul": x @ z,
                "bcast": x * w,
                "pub_add": x + 2.5,
                "pub_rsub": 1.5 - x,
                "pub_mul_int": 3 * x,
                "pub_mul_fxp": x * 0.25,
                "pub_matmul": x @ np.ones((4, 2)),
                "pub_lmatmul": np.arange(10.0).reshape(2, 5) @ x,
                "div_pub": x / 4.0,
                "sum0": x.sum(axis=0),
                "sum": x.sum(),
                "mean1": x.mean(axis=1),
                "T": x.T,
                "reshape": x.reshape(4, 5),
                "index": x[1:3, ::2],
                "fancy": x[[0, 4]],
                "concat": np.concatenate([x, y], axis=1),
                "stack": np.stack([x, y]),
                "np_add": np.add(x, y),
                "np_sum": np.sum(x, axis=1),
                "vec_mat": w @ z,
                "pow3": (x * 0.1) ** 3,
            }
        )

    out = run(setup, program)
    first = out[hs[0]]
    for p, res in out.items():
        for k in first:
            np.testing.assert_array_equal(res[k], first[k], err_msg=f"{p} {k}")
    expect = {
        "add": a + b, "sub": a - b, "neg": -a, "mul": a * b, "matmul": a @ c, "bcast": a * v,
        "pub_add": a + 2.5, "pub_rsub": 1.5 - a, "pub_mul_int": 3 * a, "pub_mul_fxp": a * 0.25,
        "pub_matmul": a @ np.ones((4, 2)), "pub_lmatmul": np.arange(10.0).reshape(2, 5) @ a,
        "div_pub": a / 4.0, "sum0": a.sum(axis=0), "sum": a.sum(), "mean1": a.mean(axis=1), "T": a.T,
        "reshape": a.reshape(4, 5), "index": a[1:3, ::2], "fancy": a[[0, 4]],
        "concat": np.concatenate([a, b], axis=1), "stack": np.stack([a, b]), "np_add": a + b,
        "np_sum": a.sum(axis=1), "vec_mat": v @ c, "pow3": (a * 0.1) ** 3,
    }
    for k, want in expect.items():
        got = first[k]
        assert got.shape == np.shape(want), k
        # inputs carry 2^-19 rounding error each; products scale it by the other operand
        tol = 8 * ULP * (1 + np.abs(want)) + 40 * ULP * 10
        assert np.all(np.abs(got - want) <= tol), (k, np.max(np.abs(got - want)))


def test_integer_tensors_are_exact(small_setup):
    rng = np.random.default_rng(2)
    a = rng.integers(-1000, 1000, size=(3, 4))
    b = rng.integers(-1000, 1000, size=(4, 2))

    async def program(job):
        x = job.input("alice", a, dtype=int)
        y = job.input("bob", b, dtype=int)
        return await job.reveal({"mm": x @ y, "mul": x * 7, "sum": x.sum(), "mixed": x + 0.5})

    out = run(small_setup, program)["alice"]
    assert out["mm"].dtype == np.int64
    np.testing.assert_array_equal(out["mm"], a @ b)
    np.testing.assert_array_equal(out["mul"], a * 7)
    assert int(out["sum"]) == int(a.sum())
    np.testing.assert_allclose(out["mixed"], a + 0.5, atol=1e-5)


def test_fixed_point_error_is_a_few_ulp(small_setup):
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(0, 5, size=(64, 32)) * 2**18) / 2**18  # exactly representable
    b = np.round(rng.normal(0, 5, size=(64, 32)) * 2**18) / 2**18
    c = np.round(rng.normal(0, 1, size=(32, 16)) * 2**18) / 2**18

    async def program(job):
        x = job.input("alice", a)
        y = job.input("bob", b)
        z = job.input("bob", c)
        return await job.reveal([x * y, x @ z])

    mul, mm = run(small_setup, program)["alice"]
    assert np.max(np.abs(mul - a * b)) <= 4 * ULP
    assert np.max(np.abs(mm - a @ c)) <= 4 * ULP


def test_reveal_to_one_party(small_setup):
    async def program(job):
        x = job.input("alice", np.arange(6.0))
        return await job.reveal(x * 2, to="bob")

    out = run(small_setup, program)
    np.testing.assert_allclose(out["bob"], np.arange(6.0) * 2, atol=1e-4)
    assert out["alice"] is None


def test_shape_known_after_await(small_setup):
    async def program(job):
        x = job.input("alice", lambda: np.ones((3, 7)))
        x = await x
        w = mpc.zeros(x.shape[1]) + 1.0
        return x.shape, await job.reveal(x @ w)

    out = run(small_setup, program)
    for shape, value in out.values():
        assert shape == (3, 7)
        np.testing.assert_allclose(value, np.full(3, 7.0), atol=1e-4)
