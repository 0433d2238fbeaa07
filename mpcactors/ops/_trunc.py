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
third party deals it to the other two (``_rep3.py``). That is the interface: :data:`TUPLE_SPECS`
says what is dealt, :func:`tuple_values` computes the corrected arrays from r,
:func:`masked_share` and :func:`truncated_share` are the holders' halves.

Two holders without a dealer: the wrap bit by one OT
-----------------------------------------------------
Making the tuple above by OT costs 64 correlated OTs per element (its 64 random bits). Two
holders need only one (the "MSB known" truncation of Cheetah, Huang, Lu, Hong, Chen, USENIX
Security 2022, section 4.3; Rathee et al., CrypTFlow2, CCS 2020):

* x' = x + 2^62 (holder 0 adds) lies in [0, 2^63) for |x| < 2^62, so its msb is 0. With
  x' = x'_0 + x'_1 mod 2^64, the wrap w = [x'_0 + x'_1 >= 2^64] is m_0 OR m_1 for the share
  msbs m_i: two set msbs always wrap; exactly one set must wrap, or x' would have its msb set.
* Then x'_0 + x'_1 = x' + w 2^64 over the integers. Holder 0 rounds its part down, holder 1
  up (ceil(v / 2^d) = (v >> d) + [v mod 2^d != 0]), so
      (x'_0 >> d) + ceil(x'_1 / 2^d) - w 2^(64-d) = floor(x' / 2^d) + e,  e in {0, 1},
  where e = 1 exactly when the low d-bit parts do not carry and holder 1's is nonzero: for
  low parts l_0 + l_1 = (x' mod 2^d) + c 2^d, a carry (c = 1) forces l_1 > 0 and e = 0. So e = 1
  with probability (x' mod 2^d) / 2^d, the dropped fraction, and never when x is a multiple of
  2^d (a zero truncates to exactly zero). Adding -2^(62-d) gives floor(x / 2^d) + e: the same
  contract as the tuple's, for the same |x| < 2^62. (Both holders rounding down would give
  e = 1 - c instead, which is 1 with probability 2^-d even for x = 0: a selected-away term of
  an exact sum would come back as 1 ulp.)
* w = m_0 + m_1 - m_0 m_1, and only w mod 2^d matters (it is multiplied by 2^(64-d)). The
  product of the two holders' private bits comes from preprocessing that needs only the shape
  (``_ot_triples.OtSource.trunc_bits``): a private random bit a_i at each holder and an additive
  sharing of a_0 a_1 mod 2^d, one correlated OT per element. Holder i opens o_i = m_i XOR a_i
  (one bit, uniform to the other holder because a_i is used once), so m_i = o_i + (1 - 2 o_i)
  a_i and
      m_0 m_1 = o_0 o_1 + o_1 (1 - 2 o_0) a_0 + o_0 (1 - 2 o_1) a_1 + (1 - 2 o_0)(1 - 2 o_1) a_0 a_1,
  linear in what each holder knows (:func:`wrap_truncated_share`).

One round of 1-bit openings (the OT's two rounds need only the shape: they run beside a product,
or carry the openings in their first round), 16 bytes of IKNP U and ceil(d / 8) bytes of
correction per element, instead of 64 OTs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import U64
from ._dealer import Dealt

__all__ = [
    "masked_share",
    "truncated_share",
    "tuple_specs",
    "tuple_values",
    "wrap_opening",
    "wrap_truncated_share",
]

_ZERO = U64(0)
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


def wrap_opening(x_i: np.ndarray, a_i: np.ndarray, first: bool) -> np.ndarray:
    """This holder's opened bit o_i = msb(x'_i) XOR a_i (0/1 words; the first holder's x'_i is
    x_i + 2^62): the two-holder truncation's only message (module doc)."""
    x = np.add(x_i, _OFFSET) if first else x_i
    return np.asarray((x >> _TOP) ^ a_i)


def wrap_truncated_share(
    x_i: np.ndarray,
    a_i: np.ndarray,
    ab_i: np.ndarray,
    o_i: np.ndarray,
    o_peer: np.ndarray,
    bits: int,
    first: bool,
) -> np.ndarray:
    """This holder's additive share of floor(x / 2^d) + e, e in {0, 1}, for |x| < 2^62, two
    holders (module doc): ``a_i`` its random bit, ``ab_i`` its share of a_0 a_1 (mod 2^d),
    ``o_i`` and ``o_peer`` the two opened bits."""
    shape = np.shape(x_i)
    x = np.add(np.reshape(x_i, -1), _OFFSET) if first else np.reshape(x_i, -1)  # 1-d: no scalar ops
    o_i, o_peer = np.reshape(o_i, -1), np.reshape(o_peer, -1)
    m = x >> _TOP
    s_own = _ONE - (o_i << _ONE)  # 1 - 2 o_i (mod 2^64)
    s_peer = _ONE - (o_peer << _ONE)
    prod = s_own * s_peer * np.reshape(ab_i, -1)  # this holder's share of m_0 m_1
    prod += o_peer * s_own * np.reshape(a_i, -1)
    if first:
        prod += o_i * o_peer
    w = m - prod  # share of w = m_0 + m_1 - m_0 m_1 (mod 2^d is what counts)
    y = x >> U64(bits)
    y -= w << U64(64 - bits)
    if first:
        y -= U64(1 << (62 - bits))
    else:  # rounds up: + [x'_1 mod 2^d != 0]
        y += (x & U64((1 << bits) - 1)) != _ZERO
    return y.reshape(shape)
