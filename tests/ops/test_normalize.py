"""Normalisation by one bit decomposition (ops/_normalize.py) on every protocol, against numpy.

The threshold bits ``[|x| >= 2^j]``, the one-hot bucket of the top set bit and the sign products
are checked on random values and on the edges: 0, 1 ulp, every power of two and its neighbours,
the range ends, negatives, and huge magnitudes.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpcactors.ops import _compare as C
from mpcactors.ops import _normalize as Z
from mpcactors.ops._protocol import Share
from mpcactors.ops._ring import to_ring

from ._fixtures import MUL_ROUNDS, PROTOCOLS, Harness

A2B_ROUNDS = {"semi2k": 7, "semi2k-ot": 14, "rep3": 8}


@pytest.fixture(params=PROTOCOLS, scope="module")
def h(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def _edges(lo: int, hi: int) -> np.ndarray:
    """Integer (ring unit) edge values: 0, +-1, +-2^j and +-(2^j +- 1) for every j, extremes."""
    p = np.int64(1) << np.arange(0, 63, dtype=np.int64)
    near = np.concatenate([p, p - 1, p[1:] + 1, [0, 1, 2, 3, 2**63 - 1]])
    near = near[near >= 0]
    return np.concatenate([near, -near, [-(2**63)], [2**lo, 2**hi, -(2**lo), -(2**hi)]])


def _values(seed: int, lo: int, hi: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    logs = g.uniform(0, 62, 600)
    rand = (2.0**logs).astype(np.int64) * g.choice([-1, 1], 600)
    return np.concatenate([_edges(lo, hi), rand, g.integers(-(2**20), 2**20, 300)])


def _top(x: np.ndarray, lo: int, hi: int, signed: bool) -> np.ndarray:
    """numpy bucket: 0 below 2^lo, 1 + j - lo for top bit j in lo..hi-1, hi - lo + 1 above.

    Signed, x < 0 inside the range: the top bit of |x| - 1 (x = -2^j lands one bucket down,
    where its normalised value is exactly 1), except at the range ends.
    """
    xo = x.astype(object)
    mag = abs(xo) if signed else np.where(x > 0, xo, 0)
    top = np.array([int(m).bit_length() - 1 for m in mag])  # -1 for 0
    out = np.clip(top, lo - 1, hi) - lo + 1
    if signed:
        inner = (abs(xo) > 2**lo) & (abs(xo) < 2**hi) & (xo < 0)
        low = np.array([int(m).bit_length() - 1 for m in abs(xo) - 1])
        out = np.where(inner, np.clip(low, lo - 1, hi) - lo + 1, out)
    return out.astype(np.int64)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(("lo", "hi"), [(8, 32), (0, 32), (3, 4), (30, 62)])
def test_ge_pow2_bits(h: Harness, lo: int, hi: int, signed: bool) -> None:
    x = _values(lo + hi, lo, hi)
    res, rounds = h.run(lambda c, p, s: Z.ge_pow2(c, p, s, lo, hi, signed), h.share_int(x))
    assert rounds == A2B_ROUNDS[h.name] + 6 * MUL_ROUNDS[h.name]
    ge = h.open_ring({p: Share.combine(np.stack, [r[0]]) for p, r in res.items()})[0]
    s = h.open_ring({p: r[1] for p, r in res.items()})
    np.testing.assert_array_equal(s & np.uint64(1), (x < 0).astype(np.uint64))
    xo = x.astype(object)
    for j in range(lo, hi + 1):
        if not signed:
            want = (xo >= 2**j) | (xo < 0)
        elif j in (lo, hi):
            want = abs(xo) >= 2**j
        else:  # inside the range x < 0 tests |x| - 1 (x = -2^j: one bucket down, u = 1)
            want = abs(xo) - (xo < 0) >= 2**j
        got = (ge >> np.uint64(j)) & np.uint64(1)
        bad = got != want.astype(np.uint64)
        assert not bad.any(), f"bit {j}: x={x[bad][:4]} got={got[bad][:4]}"


def test_suffix_or(h: Harness) -> None:
    w = np.random.default_rng(5).integers(0, 2**63, 500, dtype=np.uint64) >> np.uint64(7)
    w = np.concatenate([w, np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)])
    res, rounds = h.run(Z.suffix_or, h.share_ring(w, kind="bool"))
    assert rounds == 6 * MUL_ROUNDS[h.name]
    got = h.open_ring(res)
    want = np.array([sum(1 << j for j in range(64) if int(v) >> j) for v in w], dtype=np.uint64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("signed", [False, True])
def test_top_bit_onehot_and_sign_products(h: Harness, signed: bool) -> None:
    lo, hi = 8, 32
    x = _values(7, lo, hi)
    v = np.random.default_rng(8).integers(-(2**40), 2**40, x.size)
    sx, sv = h.share_int(x), h.share_int(v)

    def step(c, p, a, b):  # type: ignore[no-untyped-def]
        out = yield from Z.top_bit(c, p, a, lo, hi, signed, [a, b] if signed else [])
        return out

    res, rounds = h.run(step, sx, sv)
    inject = MUL_ROUNDS[h.name]
    assert rounds == A2B_ROUNDS[h.name] + 6 * MUL_ROUNDS[h.name] + inject
    onehot = h.open_int({p: r.onehot(h.protos[p]) for p, r in res.items()})
    want = _top(x, lo, hi, signed)
    assert onehot.shape == (hi - lo + 2,) + x.shape
    np.testing.assert_array_equal(onehot, np.eye(hi - lo + 2)[want].T)
    if signed:
        sign = np.where(x < 0, -1, 1)
        np.testing.assert_array_equal(h.open_int({p: r.sign for p, r in res.items()}), sign)
        absx = h.open_ring({p: r.products[0] for p, r in res.items()})
        np.testing.assert_array_equal(absx, to_ring(np.abs(x)))  # -2^63 wraps to itself
        np.testing.assert_array_equal(
            h.open_int({p: r.products[1] for p, r in res.items()}), v * sign
        )


def test_mul_pow2_signed(h: Harness) -> None:
    """y * sign * w[bucket] with weights from 2^-20 to 2^6: exact up to the truncation's ulp."""
    lo, hi = 8, 32
    g = np.random.default_rng(9)
    x = np.concatenate([_edges(lo, hi)[:200], g.integers(-(2**40), 2**40, 300)])
    y = g.uniform(-4, 4, x.size)
    bucket = _top(x, lo, hi, True)
    w = 2.0 ** np.arange(6, 6 - (hi - lo + 2), -1)
    w[0] = 0.0  # below the range: 0

    def step(c, p, a, b):  # type: ignore[no-untyped-def]
        tb = yield from Z.top_bit(c.child("t"), p, a, lo, hi, True)
        sums = yield from Z.signed_sums(c.child("s"), p, Z.pow2_sums(p, tb, [w]), tb.sign)
        return (yield from Z.mul_pow2(c.child("m"), p, [(b, sums[0])]))

    res, _ = h.run(step, h.share_int(x), h.share_fxp(y))
    want = np.where(x < 0, -1.0, 1.0) * w[bucket] * np.round(y * 2.0**18) / 2.0**18
    np.testing.assert_allclose(h.open_fxp(res), want, rtol=0, atol=2.0**-17)


def test_range_checked(h: Harness) -> None:
    with pytest.raises(ValueError, match="bit range"):
        h.run(lambda c, p, s: Z.ge_pow2(c, p, s, 5, 5, True), h.share_int(np.array([1])))


@pytest.mark.parametrize("bits", [64, 16])
def test_ge_thresholds_rows(h: Harness, bits: int) -> None:
    """exp's thresholds as rows: equal to ge_thresholds' (K, n) result, rounds of one compare."""
    g = np.random.default_rng(10)
    x = np.concatenate([g.integers(-20, 20, 300), np.arange(-17, 18)])
    edges = np.arange(-15, 17).astype(np.int64).view(np.uint64)
    res, rounds = h.run(lambda c, p, s: C.ge_thresholds_rows(c, p, s, edges, bits), h.share_int(x))
    _, batched = h.run(lambda c, p, s: C.ge_thresholds(c, p, s, edges, bits), h.share_int(x))
    assert rounds == batched
    for j, e in enumerate(edges.view(np.int64)):
        got = h.open_int({p: r[j] for p, r in res.items()})
        np.testing.assert_array_equal(got, (x >= e).astype(np.int64))
