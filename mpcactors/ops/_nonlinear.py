"""Non-linear functions on fixed-point shares: reciprocal, division, exp, log, sqrt, rsqrt,
sigmoid, tanh, written once on the kernel interface.

Theory of operation
-------------------
Every function is a *range reduction* that needs only bit decompositions or comparisons and
products by integers, then a low-degree **Chebyshev series** on [-1, 1] (``_fxp.chebyshev``:
degree d in ceil(log2 d) product levels), then the inverse reduction as a product by a power of
two selected per bucket (``_normalize.mul_pow2``: large results never pass a truncation).

* reciprocal, log, sqrt, rsqrt (SPU's ``highestOneBit`` / CrypTen normalise the same way): the
  top set bit i of |x| over the documented range comes from ONE A2B, a log-depth suffix OR and
  one injection of the K + 1 threshold bits ``[|x| >= 2^j]`` (``_normalize.top_bit``: A2B + 7
  rounds, instead of K full comparisons); it gives ``u = |x| 2^(f-i-1)`` in [0.5, 1), then
  ``1/u``, ``ln u``, ``sqrt u`` or ``u^-1/2`` by Chebyshev on t = 4u - 3, then
  ``1/x = sign * p(t) * 2^(f-i-1)``, ``ln x = p(t) + (i+1-f) ln 2``,
  ``sqrt x = p(t) 2^((i+1-f)/2)`` (odd exponents use the series of sqrt(2) sqrt(u)), etc.
  (|x| = x sign and the sign products are made while the suffix OR runs; a negative power of
  two inside the range lands one bucket down with u = 1 exactly, still a series argument.)
* exp: ``y = x log2 e``; ``k = trunc(x log2(e) 2^f, 2f)`` and ``y = trunc(., f)`` from the same
  product, so ``r = y - k`` lies in [-1, 1] (truncation is floor up to one ulp) and the series of
  2^r runs *in parallel* with 32 short thresholds on the integer k that select 2^k (ONE batched
  16-bit comparison, ``ge_thresholds_rows``: fewer rounds than a bit decomposition, and off the
  critical path, since the series takes longer).
* sigmoid: ``0.5 + u r(2u^2 - 1)`` with u = x/10, an odd Chebyshev fit of degree 31 on [-10, 10],
  in parallel with the comparisons x < -10, x > 10 that saturate it (the select multiplies the
  out-of-range garbage by an exact integer 0). tanh(x) = 2 sigmoid(2x) - 1.

Values outside a function's documented range saturate as documented (never wrap around):
truncation is faithful (``_trunc.py``), so no truncation in the path fails.

Round counts (semi2k with 2 holders: comparison 7, top bit 14, truncation 1, fixed-point
product 2; rep3: comparison 8, top bit 15, truncation 2, fixed-point product 2) are listed per
function, as measured by
tests/ops/test_nonlinear.py; docs/NONLINEAR.md has the measured errors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.polynomial import chebyshev as cheb

from ._comm import Step, gather
from ._compare import ge_thresholds_rows, ltz
from ._context import OpContext
from ._fxp import chebyshev, fxp_const, fxp_mul, mul_many, truncate_many
from ._normalize import TopBit, mul_pow2, pow2_sums, signed_sums, top_bit
from ._protocol import Protocol, Share

__all__ = ["division", "exp", "log", "reciprocal", "rsqrt", "sigmoid", "sqrt", "tanh"]

_SIGMOID_T = 10.0  # sigmoid is fitted on [-T, T] and saturates outside
_EXP_K = 15  # exp: 2^r 2^k for integer k in [-K, K]; 2^(K+1) for k > K, 0 for k < -K
_LN2 = math.log(2.0)
_EXTRA = 4  # extra fractional bits of series results that are scaled up afterwards


def _fit(fn: Callable[[np.ndarray], np.ndarray], degree: int) -> np.ndarray:
    return np.asarray(cheb.chebinterpolate(fn, degree), dtype=np.float64)  # type: ignore[type-var]


@functools.cache
def _series(name: str) -> np.ndarray:
    """Chebyshev coefficients on t in [-1, 1] (u = (t + 3) / 4 for the [0.5, 1) family)."""

    def u(t: np.ndarray) -> np.ndarray:
        return (t + 3.0) / 4.0

    if name == "recip":
        return _fit(lambda t: 1.0 / u(t), 9)
    if name == "log":
        return _fit(lambda t: np.log(u(t)), 7)
    if name == "sqrt":
        return _fit(lambda t: np.sqrt(u(t)), 7)
    if name == "rsqrt":
        return _fit(lambda t: u(t) ** -0.5, 9)
    if name == "exp2":
        return _fit(lambda t: 2.0**t, 7)
    if name == "sigmoid":  # r(w) with sigmoid(T u) - 1/2 = u r(2u^2 - 1)

        def r(w: np.ndarray) -> np.ndarray:
            v = np.sqrt((w + 1.0) / 2.0)
            return (1.0 / (1.0 + np.exp(-_SIGMOID_T * v)) - 0.5) / v

        return _fit(r, 15)
    raise KeyError(name)


# ---- normalisation by the top set bit ------------------------------------------------------


class _Buckets:
    """Which bucket is which after :func:`_top_bit`: below range, bits lo..hi-1, above."""

    def __init__(self, f: int, lo_bit: int, hi_bit: int) -> None:
        self.f = f
        self.bit = np.concatenate([[-1], np.arange(lo_bit, hi_bit), [hi_bit]])  # -1: below
        self.below = self.bit == -1
        self.above = self.bit == hi_bit
        self.inner = ~self.below & ~self.above

    def weights(
        self, exponent: Callable[[np.ndarray], np.ndarray], odd_only: bool | None = None
    ) -> np.ndarray:
        """2^exponent(bit) on inner buckets (0 elsewhere); optionally only even/odd ones."""
        e = exponent(self.bit.astype(np.float64))
        keep = self.inner.copy()
        if odd_only is not None:
            odd = np.mod(np.floor(e * 2 + 0.5), 2) == 1  # e is a half-integer where "odd"
            keep &= odd if odd_only else ~odd
            e = np.floor(e)
        return np.where(keep, np.exp2(e), 0.0)


def _top_bit(
    ctx: OpContext,
    proto: Protocol,
    x: Share,
    lo: int,
    hi: int,
    signed: bool,
    sign_products: Sequence[Share] = (),
) -> Step[tuple[TopBit, _Buckets]]:
    """One-hot bucket of |x|'s top set bit among real powers 2^lo .. 2^hi (``_normalize.py``:
    one A2B, a suffix OR, one injection); signed: the sign and ``sign_products`` times it."""
    f = proto.fxp_bits
    lo_bit, hi_bit = max(0, f + lo), f + hi
    if not 0 <= lo_bit < hi_bit <= 62:
        raise ValueError(f"range 2^{lo}..2^{hi} does not fit {f} fractional bits")
    tb = yield from top_bit(ctx, proto, x, lo_bit, hi_bit, signed, sign_products)
    return tb, _Buckets(f, lo_bit, hi_bit)


def _normalised(
    ctx: OpContext, proto: Protocol, mag: Share, tb: TopBit, info: _Buckets
) -> Step[Share]:
    """t = 4u - 3 in [-1, 1] for u = |x| 2^(f-i-1) (``mag`` = |x|); t = 0 out of range."""
    f = info.f
    (sums,) = pow2_sums(proto, tb, [info.weights(lambda b: f - b - 1)])
    u = yield from mul_pow2(ctx, proto, [(mag, sums)])
    t = proto.add_public(
        proto.mul_public(u, np.asarray(np.uint64(4))), np.negative(fxp_const(proto, 3.0))
    )
    off = np.where(info.inner, 0.0, 3.0)  # out of range: u = 0.75, t = 0 (keeps the series sane)
    return proto.add(t, _const(proto, tb, off))


def _const(proto: Protocol, tb: TopBit, values: np.ndarray) -> Share:
    """The fixed-point constant ``values[b]`` of each value's bucket b (local)."""
    return tb.select(proto, fxp_const(proto, np.asarray(values, dtype=np.float64)))


def _recip_setup(
    ctx: OpContext,
    proto: Protocol,
    y: Share,
    lo: int,
    hi: int,
    positive: bool,
    others: Sequence[Share] = (),
) -> Step[tuple[Share, TopBit, _Buckets]]:
    """Top-bit buckets of y and the series argument t = 4u - 3 (u = |y| 2^(f-i-1)).

    Signed: ``TopBit.products`` holds |y| and ``others`` times sign(y), in that order.
    """
    sign_products = [] if positive else [y, *others]
    tb, info = yield from _top_bit(ctx.child("bits"), proto, y, lo, hi, not positive, sign_products)
    mag = y if positive else tb.products[0]
    t = yield from _normalised(ctx.child("norm"), proto, mag, tb, info)
    return t, tb, info


def reciprocal(
    ctx: OpContext,
    proto: Protocol,
    x: Share,
    *,
    lo: int = -10,
    hi: int = 14,
    positive: bool = False,
) -> Step[Share]:
    """1/x for fixed-point x with 2^lo <= |x| < 2^hi (default [9.8e-4, 16384)).

    Method: normalise by the top bit, degree-9 Chebyshev of 1/u on [0.5, 1), scale back.
    Accuracy: |error| < 2e-5 + 2e-6 |1/x| (1/x itself is rounded to 2^-18, so small results
    have few significant bits: use :func:`division` for x / y). Outside the range: 0
    (|x| < 2^lo, including 0; and |x| >= 2^hi, where |1/x| <= 2^-hi). ``positive=True`` skips
    the sign (the edge corrections, one injection and the sign products) and gives 0 for
    x <= 0.

    Rounds: semi2k 27, rep3 31 (semi2k without a dealer 53).
    """
    t, tb, info = yield from _recip_setup(ctx, proto, x, lo, hi, positive)
    series = chebyshev(ctx.child("series"), proto, t, [_series("recip")], extra_bits=_EXTRA)
    sums = pow2_sums(proto, tb, [info.weights(lambda b: info.f - b - 1 - _EXTRA)])
    if tb.sign is None:
        (p,) = yield from series
    else:  # sign * 2^(f-i-1) while the series runs
        (p,), sums = yield from gather(
            [series, signed_sums(ctx.child("sign"), proto, sums, tb.sign)]
        )
    return (yield from mul_pow2(ctx.child("out"), proto, [(p, sums[0])]))


def division(
    ctx: OpContext,
    proto: Protocol,
    x: Share,
    y: Share,
    *,
    lo: int = -10,
    hi: int = 14,
    positive: bool = False,
) -> Step[Share]:
    """x / y for y in the range of :func:`reciprocal` (0 where y is out of range).

    Method: with y = sign u 2^-j (u in [0.5, 1)), ``x / y = (x sign 2^j) * (1 / u)``; the first
    factor (a product by a selected power of two, magnitude |x / y|) runs in parallel with the
    series of 1/u, so the quotient keeps full fixed-point precision however small 1/y is.
    Accuracy: |error| < 2e-5 + 3e-5 |x / y|. The last truncation sees |x / y| 2^(2f+1): keep
    |x / y| < 2^25 (faithful up to |x / y| 2^(2f+1) < 2^62).
    Rounds: semi2k 27, rep3 30 (the last product is a fused fixed-point product).
    """
    t, tb, info = yield from _recip_setup(ctx, proto, y, lo, hi, positive, [x])
    w = info.weights(lambda b: info.f - b - 1)
    x_signed = x if positive else tb.products[1]  # x * sign(y)
    (p,), xs = yield from gather(
        [
            chebyshev(ctx.child("series"), proto, t, [_series("recip")]),
            mul_pow2(ctx.child("scale"), proto, [(x_signed, pow2_sums(proto, tb, [w])[0])]),
        ]
    )
    return (yield from fxp_mul(ctx.child("mul"), proto, xs, p))


def log(ctx: OpContext, proto: Protocol, x: Share, *, lo: int = -10, hi: int = 14) -> Step[Share]:
    """Natural logarithm for 2^lo <= x < 2^hi (default [9.8e-4, 16384)).

    Method: ln x = ln u + (i + 1 - f) ln 2 with u = x 2^(f-i-1) in [0.5, 1); degree-7 Chebyshev.
    Accuracy: absolute error < 1e-4. Saturates to lo ln 2 below the range (x <= 0 included) and
    hi ln 2 above.
    Rounds: semi2k 23, rep3 26.
    """
    tb, info = yield from _top_bit(ctx.child("bits"), proto, x, lo, hi, False)
    t = yield from _normalised(ctx.child("norm"), proto, x, tb, info)
    (p,) = yield from chebyshev(ctx.child("series"), proto, t, [_series("log")])
    ln_u0 = math.log(0.75)
    lo_real = max(lo, -info.f)
    shift = np.where(
        info.inner,
        (info.bit + 1 - info.f) * _LN2,
        np.where(info.below, lo_real * _LN2 - ln_u0, hi * _LN2 - ln_u0),
    )
    return proto.add(p, _const(proto, tb, shift))


def _root(
    ctx: OpContext, proto: Protocol, x: Share, name: str, power: float, lo: int, hi: int
) -> Step[Share]:
    """x^power (power = +-1/2) by normalisation; odd exponents use sqrt(2) times the series."""
    tb, info = yield from _top_bit(ctx.child("bits"), proto, x, lo, hi, False)
    t = yield from _normalised(ctx.child("norm"), proto, x, tb, info)
    c = _series(name)
    series = [c, c * math.sqrt(2.0)]
    p, p2 = yield from chebyshev(ctx.child("series"), proto, t, series, extra_bits=_EXTRA)
    f = info.f

    def expo(b: np.ndarray) -> np.ndarray:
        return power * (b + 1 - f) - _EXTRA

    weights = [info.weights(expo, odd_only=False), info.weights(expo, odd_only=True)]
    sums = pow2_sums(proto, tb, weights)
    out = yield from mul_pow2(ctx.child("out"), proto, list(zip([p, p2], sums)))
    sat = np.where(info.above, 2.0 ** (power * hi), 0.0)
    if power < 0:
        sat = np.where(info.below, 2.0 ** (power * max(lo, -f)), sat)
    return proto.add(out, _const(proto, tb, sat))


def sqrt(ctx: OpContext, proto: Protocol, x: Share, *, hi: int = 14) -> Step[Share]:
    """Square root for 0 <= x < 2^hi (default [0, 16384)).

    Method: sqrt x = sqrt(u) 2^((i+1-f)/2) over every bit of x (down to 1 ulp), degree-7
    Chebyshev. Accuracy: absolute error < 1e-4 + 2e-6 sqrt(x). 0 for x <= 0; 2^(hi/2) above.
    Rounds: semi2k 25, rep3 29.
    """
    return (yield from _root(ctx, proto, x, "sqrt", 0.5, -proto.fxp_bits, hi))


def rsqrt(ctx: OpContext, proto: Protocol, x: Share, *, lo: int = -10, hi: int = 14) -> Step[Share]:
    """1/sqrt(x) for 2^lo <= x < 2^hi (default [9.8e-4, 16384)).

    Method as :func:`sqrt` with the series of u^-1/2 (degree 9). Accuracy: relative error < 2e-5.
    Saturates to 2^(-lo/2) below the range (x <= 0 included) and 2^(-hi/2) above.
    Rounds: semi2k 27, rep3 31.
    """
    return (yield from _root(ctx, proto, x, "rsqrt", -0.5, lo, hi))


def exp(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """e^x for fixed-point x; accurate for x < 15 ln 2 = 10.397, saturating above.

    Method: y = x log2 e = k + r with k integer, r in [-1, 1]; 2^r by a degree-7 Chebyshev
    series while 2^k is selected by thresholds on k (in parallel); result 2^r * 2^k.
    Accuracy: relative error < 5e-5 and absolute < 1e-5 + 1 ulp for x < 10.397. Above, the
    result saturates into [2^15, 2^16] (e^x up to e^11.09, then 2^16); below x = -10.397 it is
    0 or the true value (< 3.1e-5). Saturation holds for |x| < 2^14 (k must fit the 16-bit
    comparisons; the first truncation sees |x| 2^37.5).
    The thresholds on k are 16-bit comparisons (k is a small integer): 4 lanes a word, 4 AND
    rounds (two holders without a dealer: the millionaires' protocol on 16 bits).
    Rounds: semi2k 10, rep3 13.
    """
    f = proto.fxp_bits
    raw = proto.mul_public(x, fxp_const(proto, 1.0 / _LN2))

    def trunc(c: OpContext, v: Share, bits: int) -> Step[Share]:
        return (yield from proto.truncate(c, v, bits))

    y, k = yield from gather([trunc(ctx.child("y"), raw, f), trunc(ctx.child("k"), raw, 2 * f)])
    r = proto.sub(y, proto.mul_public(k, np.asarray(np.uint64(1) << np.uint64(f))))
    edges = np.arange(-_EXP_K, _EXP_K + 2).astype(np.int64).view(np.uint64)
    ge, (p,) = yield from gather(
        [
            ge_thresholds_rows(ctx.child("k2"), proto, k, edges, bits=16),  # k: small integer
            chebyshev(ctx.child("series"), proto, r, [_series("exp2")], extra_bits=_EXTRA),
        ]
    )
    # bucket 0: k < -K; bucket j: k = j - K - 1; the last: k > K. k may be floor(y) + 1, so
    # the extreme inner buckets k = +-K still give the true value (r in [-1, 0) or [0, 1)).
    tb = TopBit(ge, None, None, [])  # selects per bucket from the threshold bits
    m = np.arange(-_EXP_K - 1, _EXP_K + 2, dtype=np.float64)
    inner = (m >= -_EXP_K) & (m <= _EXP_K)
    w = np.where(inner, np.exp2(m - _EXTRA), 0.0)
    out = yield from mul_pow2(ctx.child("out"), proto, [(p, pow2_sums(proto, tb, [w])[0])])
    top = np.where(m > _EXP_K, 2.0 ** (_EXP_K + 1), 0.0)
    return proto.add(out, _const(proto, tb, top))


def sigmoid(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """1 / (1 + e^-x) for any fixed-point x (|x| < 2^40).

    Method: odd Chebyshev fit of degree 31 on [-10, 10] (``0.5 + u r(2u^2 - 1)``, u = x/10) in
    parallel with the saturation comparisons; outside [-10, 10] exactly 0 or 1.
    Accuracy: absolute error < 1e-4 everywhere (fit 3.2e-5, saturation 4.6e-5, rounding).
    Rounds: semi2k 15, rep3 18.
    """
    f = proto.fxp_bits
    tt = _SIGMOID_T
    d = Share.combine(
        np.stack,
        [
            proto.add_public(x, fxp_const(proto, tt)),
            proto.add_public(proto.neg(x), fxp_const(proto, tt)),
        ],
    )

    def series(c: OpContext) -> Step[Share]:
        (u,) = yield from truncate_many(
            c.child("u"), proto, [proto.mul_public(x, fxp_const(proto, 1.0 / tt))], f
        )
        sq = yield from proto.mul(c.child("sq"), u, u)
        (w2,) = yield from truncate_many(
            c.child("w"), proto, [proto.mul_public(sq, np.asarray(np.uint64(2)))], f
        )
        w = proto.add_public(w2, np.negative(fxp_const(proto, 1.0)))
        (r,) = yield from chebyshev(c.child("cheb"), proto, w, [_series("sigmoid")])
        ur = yield from fxp_mul(c.child("ur"), proto, u, r)
        return proto.add_public(ur, fxp_const(proto, 0.5))

    bits, p = yield from gather([ltz(ctx.child("sat"), proto, d), series(ctx.child("series"))])
    lt = bits.map(lambda a: a[0], shape=x.shape)  # x < -T
    gt = bits.map(lambda a: a[1], shape=x.shape)  # x > T
    (t,) = yield from mul_many(ctx.child("sel"), proto, [(proto.add(lt, gt), p)])
    return proto.add(proto.sub(p, t), proto.mul_public(gt, fxp_const(proto, 1.0)))


def tanh(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """tanh x = 2 sigmoid(2x) - 1 (exact saturation to +-1 outside [-5, 5]).

    Accuracy: absolute error < 2e-4. Rounds: those of :func:`sigmoid`.
    """
    s = yield from sigmoid(ctx, proto, proto.mul_public(x, np.asarray(np.uint64(2))))
    return proto.add_public(
        proto.mul_public(s, np.asarray(np.uint64(2))), np.negative(fxp_const(proto, 1.0))
    )
