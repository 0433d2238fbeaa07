"""Non-linear functions on fixed-point shares: reciprocal, division, exp, log, sqrt, rsqrt,
sigmoid, tanh, written once on the kernel interface.

Theory of operation
-------------------
Every function is a *range reduction* that needs only comparisons and products by integers,
then a low-degree **Chebyshev series** on [-1, 1] (``_fxp.chebyshev``: degree d in
ceil(log2 d) product levels), then the inverse reduction as a product by a power of two selected
by a one-hot integer share (``_fxp.mul_onehot_pow2``: large results never pass a truncation).
Comparisons against many public thresholds run as ONE batched comparison (``ge_thresholds``), so
range reduction costs the rounds of one comparison whatever the range.

* reciprocal, log, sqrt, rsqrt (SPU / CrypTen normalise the same way): the top set bit i of |x|
  (thresholds 2^i, i over the documented range) gives ``u = |x| 2^(f-i-1)`` in [0.5, 1), then
  ``1/u``, ``ln u``, ``sqrt u`` or ``u^-1/2`` by Chebyshev on t = 4u - 3, then
  ``1/x = sign * p(t) * 2^(f-i-1)``, ``ln x = p(t) + (i+1-f) ln 2``,
  ``sqrt x = p(t) 2^((i+1-f)/2)`` (odd exponents use the series of sqrt(2) sqrt(u)), etc.
* exp: ``y = x log2 e``; ``k = trunc(x log2(e) 2^f, 2f)`` and ``y = trunc(., f)`` from the same
  product, so ``r = y - k`` lies in [-1, 1] (truncation is floor up to one ulp) and the series of
  2^r runs *in parallel* with the thresholds on the integer k that select 2^k.
* sigmoid: ``0.5 + u r(2u^2 - 1)`` with u = x/10, an odd Chebyshev fit of degree 31 on [-10, 10],
  in parallel with the comparisons x < -10, x > 10 that saturate it (the select multiplies the
  out-of-range garbage by an exact integer 0). tanh(x) = 2 sigmoid(2x) - 1.

Values outside a function's documented range saturate as documented (never wrap around):
truncation is faithful (``_trunc.py``), so no truncation in the path fails.

Round counts (semi2k with 2 holders: comparison 7, truncation 1, fixed-point product 2; rep3:
comparison 8, truncation 2, fixed-point product 2) are listed per function, as measured by
tests/ops/test_nonlinear.py; docs/NONLINEAR.md has the measured errors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev as cheb

from ._comm import Step, gather
from ._compare import buckets, ge_thresholds, ltz
from ._context import OpContext
from ._fxp import chebyshev, fxp_const, fxp_mul, mul_many, mul_onehot_pow2, truncate_many
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
    """Which bucket is which after :func:`_top_bit`: below range, bits lo..hi-1 (x sign), above."""

    def __init__(self, f: int, lo_bit: int, hi_bit: int, signed: bool) -> None:
        side = np.concatenate([np.arange(lo_bit, hi_bit), [hi_bit]])  # inner bits, then above
        sides = [side, side] if signed else [side]
        self.f = f
        self.bit = np.concatenate([[-1], *sides])  # bucket 0: |x| < 2^lo_bit (ring units)
        self.sign = np.concatenate(
            [[1.0]] + [np.full(len(side), sg) for sg in (1.0, -1.0)[: len(sides)]]
        )
        self.below = self.bit == -1
        self.above = self.bit == hi_bit
        self.inner = ~self.below & ~self.above

    def weights(
        self, exponent: Callable[[np.ndarray], np.ndarray], odd_only: bool | None = None
    ) -> np.ndarray:
        """sign * 2^exponent(bit) on inner buckets (0 elsewhere); optionally only even/odd ones."""
        e = exponent(self.bit.astype(np.float64))
        keep = self.inner.copy()
        if odd_only is not None:
            odd = np.mod(np.floor(e * 2 + 0.5), 2) == 1  # e is a half-integer where "odd"
            keep &= odd if odd_only else ~odd
            e = np.floor(e)
        return np.where(keep, self.sign * np.exp2(e), 0.0)


def _top_bit(
    ctx: OpContext, proto: Protocol, x: Share, lo: int, hi: int, signed: bool
) -> Step[tuple[Share, _Buckets]]:
    """One-hot bucket of |x|'s top set bit among real powers 2^lo .. 2^hi (one comparison)."""
    f = proto.fxp_bits
    lo_bit, hi_bit = max(0, f + lo), f + hi
    if not 0 <= lo_bit < hi_bit <= 62:
        raise ValueError(f"range 2^{lo}..2^{hi} does not fit {f} fractional bits")
    edges = np.uint64(1) << np.arange(lo_bit, hi_bit + 1, dtype=np.uint64)
    info = _Buckets(f, lo_bit, hi_bit, signed)
    if not signed:
        ge = yield from ge_thresholds(ctx, proto, x, edges)
        return buckets(proto, ge), info
    both = Share.combine(np.stack, [x, proto.neg(x)])
    ge = yield from ge_thresholds(ctx, proto, both, edges)  # (K, 2, *shape)
    k = len(edges)
    rest = x.shape
    pos = buckets(proto, ge.map(lambda p: p[:, 0], shape=(k,) + rest))
    neg = buckets(proto, ge.map(lambda p: p[:, 1], shape=(k,) + rest))
    first = (1,) + rest
    below = proto.add_public(
        proto.add(pos.map(lambda p: p[:1], shape=first), neg.map(lambda p: p[:1], shape=first)),
        np.asarray(np.uint64(2**64 - 1)),
    )  # [x < 2^lo] + [-x < 2^lo] - 1 = [|x| < 2^lo]
    tail = (k,) + rest
    parts = [below, pos.map(lambda p: p[1:], shape=tail), neg.map(lambda p: p[1:], shape=tail)]
    return Share.combine(lambda ps: np.concatenate(ps, axis=0), parts), info


def _normalised(
    ctx: OpContext, proto: Protocol, x: Share, onehot: Share, info: _Buckets
) -> Step[Share]:
    """t = 4u - 3 in [-1, 1) for u = |x| 2^(f-i-1); t = 0 for out-of-range buckets."""
    f = info.f
    u = yield from mul_onehot_pow2(ctx, proto, [(x, info.weights(lambda b: f - b - 1))], onehot)
    t = proto.add_public(
        proto.mul_public(u, np.asarray(np.uint64(4))), np.negative(fxp_const(proto, 3.0))
    )
    off = np.where(info.inner, 0.0, 3.0)  # out of range: u = 0.75, t = 0 (keeps the series sane)
    return proto.add(t, _const(proto, onehot, off))


def _const(proto: Protocol, onehot: Share, values: np.ndarray) -> Share:
    """sum_b onehot[b] * enc(values[b]): a fixed-point constant per bucket (local)."""
    w = fxp_const(proto, np.asarray(values, dtype=np.float64)).reshape(
        (-1,) + (1,) * (len(onehot.shape) - 1)
    )
    return proto.mul_public(onehot, w).map(
        lambda p: p.sum(axis=0, dtype=np.uint64), shape=onehot.shape[1:]
    )


def _recip_setup(
    ctx: OpContext, proto: Protocol, y: Share, lo: int, hi: int, positive: bool
) -> Step[tuple[Share, Share, _Buckets]]:
    """Top-bit buckets of y and the series argument t = 4u - 3 (u = |y| 2^(f-i-1))."""
    onehot, info = yield from _top_bit(ctx.child("bits"), proto, y, lo, hi, not positive)
    t = yield from _normalised(ctx.child("norm"), proto, y, onehot, info)
    return t, onehot, info


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
    the negative thresholds (half the comparison work) and gives 0 for x <= 0.

    Rounds: semi2k 20, rep3 24.
    """
    t, onehot, info = yield from _recip_setup(ctx, proto, x, lo, hi, positive)
    series = [_series("recip")]
    (p,) = yield from chebyshev(ctx.child("series"), proto, t, series, extra_bits=_EXTRA)
    w = info.weights(lambda b: info.f - b - 1 - _EXTRA)
    return (yield from mul_onehot_pow2(ctx.child("out"), proto, [(p, w)], onehot))


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
    Rounds: semi2k 20, rep3 23 (the last product is a fused fixed-point product).
    """
    t, onehot, info = yield from _recip_setup(ctx, proto, y, lo, hi, positive)
    w = info.weights(lambda b: info.f - b - 1)
    (p,), xs = yield from gather(
        [
            chebyshev(ctx.child("series"), proto, t, [_series("recip")]),
            mul_onehot_pow2(ctx.child("scale"), proto, [(x, w)], onehot),
        ]
    )
    return (yield from fxp_mul(ctx.child("mul"), proto, xs, p))


def log(ctx: OpContext, proto: Protocol, x: Share, *, lo: int = -10, hi: int = 14) -> Step[Share]:
    """Natural logarithm for 2^lo <= x < 2^hi (default [9.8e-4, 16384)).

    Method: ln x = ln u + (i + 1 - f) ln 2 with u = x 2^(f-i-1) in [0.5, 1); degree-7 Chebyshev.
    Accuracy: absolute error < 1e-4. Saturates to lo ln 2 below the range (x <= 0 included) and
    hi ln 2 above.
    Rounds: semi2k 16, rep3 19.
    """
    onehot, info = yield from _top_bit(ctx.child("bits"), proto, x, lo, hi, False)
    t = yield from _normalised(ctx.child("norm"), proto, x, onehot, info)
    (p,) = yield from chebyshev(ctx.child("series"), proto, t, [_series("log")])
    ln_u0 = math.log(0.75)
    lo_real = max(lo, -info.f)
    shift = np.where(
        info.inner,
        (info.bit + 1 - info.f) * _LN2,
        np.where(info.below, lo_real * _LN2 - ln_u0, hi * _LN2 - ln_u0),
    )
    return proto.add(p, _const(proto, onehot, shift))


def _root(
    ctx: OpContext, proto: Protocol, x: Share, name: str, power: float, lo: int, hi: int
) -> Step[Share]:
    """x^power (power = +-1/2) by normalisation; odd exponents use sqrt(2) times the series."""
    onehot, info = yield from _top_bit(ctx.child("bits"), proto, x, lo, hi, False)
    t = yield from _normalised(ctx.child("norm"), proto, x, onehot, info)
    c = _series(name)
    series = [c, c * math.sqrt(2.0)]
    p, p2 = yield from chebyshev(ctx.child("series"), proto, t, series, extra_bits=_EXTRA)
    f = info.f

    def expo(b: np.ndarray) -> np.ndarray:
        return power * (b + 1 - f) - _EXTRA

    terms = [(p, info.weights(expo, odd_only=False)), (p2, info.weights(expo, odd_only=True))]
    out = yield from mul_onehot_pow2(ctx.child("out"), proto, terms, onehot)
    sat = np.where(info.above, 2.0 ** (power * hi), 0.0)
    if power < 0:
        sat = np.where(info.below, 2.0 ** (power * max(lo, -f)), sat)
    return proto.add(out, _const(proto, onehot, sat))


def sqrt(ctx: OpContext, proto: Protocol, x: Share, *, hi: int = 14) -> Step[Share]:
    """Square root for 0 <= x < 2^hi (default [0, 16384)).

    Method: sqrt x = sqrt(u) 2^((i+1-f)/2) over every bit of x (down to 1 ulp), degree-7
    Chebyshev. Accuracy: absolute error < 1e-4 + 2e-6 sqrt(x). 0 for x <= 0; 2^(hi/2) above.
    Rounds: semi2k 18, rep3 22.
    """
    return (yield from _root(ctx, proto, x, "sqrt", 0.5, -proto.fxp_bits, hi))


def rsqrt(ctx: OpContext, proto: Protocol, x: Share, *, lo: int = -10, hi: int = 14) -> Step[Share]:
    """1/sqrt(x) for 2^lo <= x < 2^hi (default [9.8e-4, 16384)).

    Method as :func:`sqrt` with the series of u^-1/2 (degree 9). Accuracy: relative error < 2e-5.
    Saturates to 2^(-lo/2) below the range (x <= 0 included) and 2^(-hi/2) above.
    Rounds: semi2k 20, rep3 24.
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
    rounds.
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
            ge_thresholds(ctx.child("k2"), proto, k, edges, bits=16),  # k is a small integer
            chebyshev(ctx.child("series"), proto, r, [_series("exp2")], extra_bits=_EXTRA),
        ]
    )
    # bucket 0: k < -K; bucket j: k = j - K - 1; the last: k > K. k may be floor(y) + 1, so
    # the extreme inner buckets k = +-K still give the true value (r in [-1, 0) or [0, 1)).
    onehot = buckets(proto, ge)
    m = np.arange(-_EXP_K - 1, _EXP_K + 2, dtype=np.float64)
    inner = (m >= -_EXP_K) & (m <= _EXP_K)
    w = np.where(inner, np.exp2(m - _EXTRA), 0.0)
    out = yield from mul_onehot_pow2(ctx.child("out"), proto, [(p, w)], onehot)
    top = np.where(m > _EXP_K, 2.0 ** (_EXP_K + 1), 0.0)
    return proto.add(out, _const(proto, onehot, top))


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
