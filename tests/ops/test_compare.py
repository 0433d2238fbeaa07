"""Comparisons, selection and reductions on both protocols: exact against plaintext numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mpcactors.ops import _compare as C
from mpcactors.ops._comm import gather
from mpcactors.ops._fxp import int_to_fxp
from mpcactors.ops._ring import encode, to_ring

from ._fixtures import CMP_ROUNDS, MUL_ROUNDS, PROTOCOLS, Harness

PAIRS = {
    "less": (C.less, np.less),
    "less_equal": (C.less_equal, np.less_equal),
    "greater": (C.greater, np.greater),
    "greater_equal": (C.greater_equal, np.greater_equal),
    "equal": (C.equal, np.equal),
    "not_equal": (C.not_equal, np.not_equal),
}


@pytest.fixture(params=PROTOCOLS, scope="module")
def h(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def _ints(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random integers of both signs over a wide range, a third of them equal pairs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**61), 2**61, size=n)
    y = rng.integers(-(2**61), 2**61, size=n)
    y[: n // 3] = x[: n // 3]
    y[n // 3 : n // 2] = x[n // 3 : n // 2] + rng.choice([-1, 1], size=n // 2 - n // 3)
    x[-4:] = [0, 0, -1, 2**61]
    y[-4:] = [0, -1, 0, -(2**61)]
    return x, y


def _fxp_vals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(-100, 100, n), 4)
    y = np.round(rng.uniform(-100, 100, n), 4)
    y[: n // 4] = x[: n // 4]
    y[n // 4 : n // 3] = x[n // 4 : n // 3] + 2.0**-18  # one ulp apart
    return x, y


@pytest.mark.parametrize("op", sorted(PAIRS))
def test_secret_secret_integers(h: Harness, op: str) -> None:
    fn, ref = PAIRS[op]
    x, y = _ints(1500, 1)
    res, rounds = h.run(fn, h.share_int(x), h.share_int(y))
    assert rounds == CMP_ROUNDS[h.name]
    got = h.open_int(res)
    assert np.array_equal(got, ref(x, y).astype(np.int64))


@pytest.mark.parametrize("op", sorted(PAIRS))
def test_secret_public_fixed_point(h: Harness, op: str) -> None:
    fn, ref = PAIRS[op]
    x, y = _fxp_vals(1500, 2)
    want = ref(encode(x, 18).view(np.int64), encode(y, 18).view(np.int64))
    sx = h.share_fxp(x)
    res, _ = h.run(fn, sx, y)  # public y: encoded with fxp_bits
    assert np.array_equal(h.open_int(res), want.astype(np.int64))
    res, _ = h.run(fn, y, sx)  # public on the left
    want_swapped = ref(encode(y, 18).view(np.int64), encode(x, 18).view(np.int64))
    assert np.array_equal(h.open_int(res), want_swapped.astype(np.int64))
    res, _ = h.run(fn, sx, h.share_fxp(y))
    assert np.array_equal(h.open_int(res), want.astype(np.int64))


def test_public_ring_operand_and_broadcast(h: Harness) -> None:
    x, _ = _ints(600, 3)
    xs = x.reshape(20, 30)
    thresholds = np.arange(-15, 15, dtype=np.int64)
    res, _ = h.run(C.less, h.share_int(xs), to_ring(thresholds))  # (20,30) vs (30,)
    assert np.array_equal(h.open_int(res), (xs < thresholds).astype(np.int64))
    small = np.random.default_rng(3).integers(-20, 20, size=(20, 30))
    res, _ = h.run(C.greater_equal, h.share_int(small), to_ring(thresholds))
    assert np.array_equal(h.open_int(res), (small >= thresholds).astype(np.int64))


def test_sixteen_comparisons_in_gather_cost_one(h: Harness) -> None:
    rng = np.random.default_rng(4)
    xs = [rng.uniform(-50, 50, size=(i + 1, 3)) for i in range(16)]
    ys = [rng.uniform(-50, 50, size=(i + 1, 3)) for i in range(16)]
    sx = [h.share_fxp(v) for v in xs]
    sy = [h.share_fxp(v) for v in ys]

    def sixteen(ctx, proto, *shares):  # type: ignore[no-untyped-def]
        a, b = shares[:16], shares[16:]
        return (yield from gather(C.less(ctx.child(i), proto, a[i], b[i]) for i in range(16)))

    res, rounds = h.run(sixteen, *sx, *sy)
    assert rounds == CMP_ROUNDS[h.name]
    for i in range(16):
        got = h.open_int({p: res[p][i] for p in h.parties})
        assert np.array_equal(got, (xs[i] < ys[i]).astype(np.int64))

    # the same sixteen one after the other cost sixteen times as many
    def chain(ctx, proto, *shares):  # type: ignore[no-untyped-def]
        out = []
        for i in range(16):
            out.append((yield from C.less(ctx.child(i), proto, shares[i], shares[16 + i])))
        return out

    _, rounds = h.run(chain, *sx, *sy)
    assert rounds == 16 * CMP_ROUNDS[h.name]


def test_sign_abs_relu(h: Harness) -> None:
    rng = np.random.default_rng(5)
    x = np.round(rng.uniform(-1000, 1000, 2000), 3)
    x[:3] = [0.0, -(2.0**-18), 2.0**-18]
    sx = h.share_fxp(x)
    ex = encode(x, 18).view(np.int64)
    res, rounds = h.run(C.sign, sx)
    assert rounds == CMP_ROUNDS[h.name]
    assert np.array_equal(h.open_int(res), np.sign(ex))
    res, rounds = h.run(C.abs_, sx)
    assert rounds == CMP_ROUNDS[h.name] + MUL_ROUNDS[h.name]
    assert np.array_equal(h.open_int(res), np.abs(ex))
    res, rounds = h.run(C.relu, sx)
    assert rounds == CMP_ROUNDS[h.name] + MUL_ROUNDS[h.name]
    assert np.array_equal(h.open_int(res), np.maximum(ex, 0))


def test_maximum_minimum(h: Harness) -> None:
    x, y = _fxp_vals(1200, 6)
    ex, ey = encode(x, 18).view(np.int64), encode(y, 18).view(np.int64)
    sx, sy = h.share_fxp(x), h.share_fxp(y)
    res, rounds = h.run(C.maximum, sx, sy)
    assert rounds == CMP_ROUNDS[h.name] + MUL_ROUNDS[h.name]
    assert np.array_equal(h.open_int(res), np.maximum(ex, ey))
    res, _ = h.run(C.minimum, sx, sy)
    assert np.array_equal(h.open_int(res), np.minimum(ex, ey))
    res, _ = h.run(C.maximum, sx, 0.0)  # public operand: relu
    assert np.array_equal(h.open_int(res), np.maximum(ex, 0))
    res, _ = h.run(C.minimum, sx, 2.5)
    assert np.array_equal(h.open_int(res), np.minimum(ex, 2 * 2**18 + 2**17))


def test_where(h: Harness) -> None:
    x, y = _fxp_vals(900, 7)
    ex, ey = encode(x, 18).view(np.int64), encode(y, 18).view(np.int64)
    sx, sy = h.share_fxp(x), h.share_fxp(y)
    cond = x > y
    c, _ = h.run(C.greater, sx, sy)
    res, rounds = h.run(C.where, c, sx, sy)
    assert rounds == MUL_ROUNDS[h.name]
    assert np.array_equal(h.open_int(res), np.where(cond, ex, ey))
    res, _ = h.run(C.where, c, sx, -1.5)
    assert np.array_equal(h.open_int(res), np.where(cond, ex, -3 * 2**17))
    res, rounds = h.run(C.where, c, 1.0, 0.0)  # both public: local
    assert rounds == 0
    assert np.array_equal(h.open_int(res), np.where(cond, 2**18, 0))
    res, rounds = h.run(C.where, cond, sx, sy)  # public condition: local
    assert rounds == 0
    assert np.array_equal(h.open_int(res), np.where(cond, ex, ey))
    # a comparison bit scaled to fixed point
    res = h.local(int_to_fxp, c)
    assert np.array_equal(h.open_fxp(res), cond.astype(float))


@pytest.mark.parametrize("shape, axis", [((37,), None), ((6, 9), 1), ((5, 8, 3), 0), ((4, 1), 1)])
def test_max_min_argmax_argmin(h: Harness, shape: tuple[int, ...], axis: int | None) -> None:
    rng = np.random.default_rng(8)
    x = rng.integers(-5, 5, size=shape).astype(np.float64) / 4  # many ties
    ex = encode(x, 18).view(np.int64)
    sx = h.share_fxp(x)
    length = int(np.prod(shape)) if axis is None else shape[axis]
    levels = int(np.ceil(np.log2(length))) if length > 1 else 0
    res, rounds = h.run(lambda c, p, s: C.max_(c, p, s, axis=axis), sx)
    assert rounds == levels * (CMP_ROUNDS[h.name] + MUL_ROUNDS[h.name])
    assert np.array_equal(h.open_int(res), np.max(ex, axis=axis))
    res, _ = h.run(lambda c, p, s: C.min_(c, p, s, axis=axis, keepdims=True), sx)
    assert np.array_equal(h.open_int(res), np.min(ex, axis=axis, keepdims=True))
    res, _ = h.run(lambda c, p, s: C.argmax(c, p, s, axis=axis), sx)
    assert np.array_equal(h.open_int(res), np.argmax(ex, axis=axis))
    res, _ = h.run(lambda c, p, s: C.argmin(c, p, s, axis=axis), sx)
    assert np.array_equal(h.open_int(res), np.argmin(ex, axis=axis))
