"""Faithful truncation from a preprocessed tuple (r, r_mid, r_msb), shared by every protocol.

Theory of operation
-------------------
Damgard, Escudero, Frederiksen, Keller, Scholl, Volgushev, "New primitives for actively-secure
MPC over rings with applications to private machine learning" (S&P 2019); Escudero, Ghosh,
Keller, Rachuri, Scholl, "Improved primitives for MPC over mixed arithmetic-binary circuits"
(CRYPTO 2020); SPU's ``TruncAPr``. Ring Z_2^64, truncation by d bits, input |x| < 2^62:

* x' = x + 2^62 lies in [0, 2^63).
* The tuple is a uniform r in Z_2^64, r_mid = bits d..62 of r = (r mod 2^63) >> d, and
  r_msb = bit 63 of r, all three additively shared (the sharing of r_mid and r_msb is over
  Z_2^64 even though they are small).
* Open c = x' + r mod 2^64. r is uniform over the whole ring, so c is uniform: it says nothing
  about x (a mask of only 63 bits would leak x's magnitude statistically).
* With r = r_msb 2^63 + r_low, the carry of x' + r_low into bit 63 is b = c_msb XOR r_msb, which
  is *linear* in the shares of r_msb because c_msb is public: b = c_msb + (1 - 2 c_msb) r_msb.
  Then x' + r_low = (c mod 2^63) + b 2^63, so
      y = ((c mod 2^63) >> d) - r_mid + b 2^(63-d) - 2^(62-d) = floor(x / 2^d) + e, e in {0, 1}
  (e is the borrow of the low d bits: probabilistic rounding, P(e = 1) = the dropped fraction).
  Exactly 1 ulp at most, for every |x| < 2^62 = 2^(k-2): no wrap-around failure, unlike SecureML
  local truncation (which fails with probability ~ |x| / 2^63).

Where the tuple comes from is the protocol's business: semi2k's dealer deals it from shapes
alone, in the round of the opening (``_semi2k.py``: free r, corrected r_mid and r_msb); rep3's
third party deals it to the other two (``_rep3.py``); a two-party semi2k without a dealer will
make the same tuple by OT (DESIGN.md section 11) and call the same :func:`truncated_share`. That
is the interface: :data:`TUPLE_SPECS` says what is dealt, :func:`tuple_values` computes the
corrected arrays from r, :func:`masked_share` and :func:`truncated_share` are the holders' halves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import U64
from ._dealer import Dealt

__all__ = ["masked_share", "truncated_share", "tuple_specs", "tuple_values"]

_ONE = U64(1)
_TOP = U64(63)
_OFFSET = U64(1 << 62)


def tuple_specs(shape: tuple[int, ...]) -> list[Dealt]:
    """The dealt arrays of one tuple: r (free, masks the opening), r_mid and r_msb (corrected:
    used only after the opening, so their correction travels in the opening's round)."""
    return [Dealt(shape, "add"), Dealt(shape, "add", True), Dealt(shape, "add", True)]


def tuple_values(bits: int, totals: list[Any]) -> list[np.ndarray]:
    """The dealer's ``finish``: (r_mid, r_msb) from the free total r (fresh arrays)."""
    r = totals[0]
    return [np.asarray((r << _ONE) >> U64(bits + 1)), np.asarray(r >> _TOP)]


def masked_share(x_i: np.ndarray, r_i: np.ndarray, first: bool) -> np.ndarray:
    """This holder's share of the opened c = x + 2^62 + r (the first holder adds 2^62)."""
    c_i = np.asarray(np.add(x_i, r_i))
    if first:
        c_i += _OFFSET
    return c_i


def truncated_share(
    c: np.ndarray, r_mid_i: np.ndarray, r_msb_i: np.ndarray, bits: int, first: bool
) -> np.ndarray:
    """This holder's additive share of floor(x / 2^d) + e from the opened c (module doc).

    ``first``: exactly one holder adds the public terms.
    """
    c_msb = c >> _TOP
    b_i = np.asarray(np.where(c_msb == _ONE, np.negative(r_msb_i), r_msb_i))  # (1 - 2 c_msb) r_msb
    if first:
        b_i += c_msb
    y = np.asarray(b_i << U64(63 - bits))
    y -= r_mid_i
    if first:
        y += (c << _ONE) >> U64(bits + 1)
        y -= U64(1 << (62 - bits))
    return y
