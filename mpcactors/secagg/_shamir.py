"""Shamir secret sharing over the prime field GF(2^521 - 1), for 32-byte keys and seeds.

Theory of operation
-------------------
Secure aggregation shares two 32-byte secrets per client (its mask-key private key and its
self-mask seed; Bonawitz et al. 2017, section 4, "SS.share"). A secret ``s`` (an integer below
2^256) is the constant term of a random polynomial of degree ``t - 1`` over GF(p)::

    f(X) = s + a_1 X + ... + a_{t-1} X^{t-1},   a_i uniform in GF(p)
    share for holder j = (x_j, f(x_j)),          x_j distinct and non-zero

Any ``t`` shares give ``s = f(0) = sum_j y_j * l_j`` with Lagrange coefficients at zero
``l_j = prod_{m != j} x_m / (x_m - x_j)``; any ``t - 1`` shares are independent of ``s``.

The field is the Mersenne prime p = 2^521 - 1: it holds every 256-bit value without splitting
(a 2^255-19-sized field would not hold every 32-byte string) and reduction is cheap. Work is
batched where it matters: :func:`share_many` evaluates every secret's polynomial at one holder
with one table of powers, and :func:`reconstruct_many` computes the Lagrange coefficients once
per set of holders (cached), then reconstructs any number of secrets with one dot product each.
Randomness comes from :mod:`secrets` (the OS CSPRNG).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence

__all__ = [
    "PRIME",
    "SHARE_BYTES",
    "reconstruct_many",
    "share_from_bytes",
    "share_many",
    "share_to_bytes",
]

PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # ceil(521 / 8): a share value as fixed-width big-endian bytes
_SECRET_LIMIT = 1 << 256


def share_many(secrets_: Sequence[int], xs: Sequence[int], threshold: int) -> dict[int, list[int]]:
    """Split each secret into ``t``-of-``len(xs)`` Shamir shares.

    Args:
        secrets_: integers in [0, 2^256), e.g. ``int.from_bytes(key, "big")``.
        xs: the holders' distinct x-coordinates, each in [1, p).
        threshold: t, the number of shares that reconstruct a secret (1 <= t <= len(xs)).

    Returns:
        ``{x: [share of secret 0, share of secret 1, ...]}`` for every x in ``xs``.

    Raises:
        ValueError: a secret out of range, bad or repeated x-coordinates, or a bad threshold.
    """
    _check_xs(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}], not {threshold!r}")
    for s in secrets_:
        if not 0 <= s < _SECRET_LIMIT:
            raise ValueError("secrets must be integers in [0, 2^256)")
    # coefficients[i] = [s_i, a_i1, ..., a_i(t-1)]
    coefficients = [
        [s] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)] for s in secrets_
    ]
    out: dict[int, list[int]] = {}
    for x in xs:
        powers = [1]
        for _ in range(threshold - 1):
            powers.append(powers[-1] * x % PRIME)
        out[x] = [sum(c * p for c, p in zip(coeffs, powers)) % PRIME for coeffs in coefficients]
    return out


def reconstruct_many(shares: Mapping[int, Sequence[int]], threshold: int) -> list[int]:
    """Reconstruct secrets from shares held at (at least) ``threshold`` x-coordinates.

    Uses the ``threshold`` smallest x-coordinates given (any t honest shares agree).

    Args:
        shares: ``{x: [share of secret 0, share of secret 1, ...]}``; every list has one entry
            per secret, in the same order.
        threshold: t used when sharing.

    Returns:
        The secrets, in order.

    Raises:
        ValueError: fewer than ``threshold`` holders, or lists of different lengths.
    """
    if len(shares) < threshold:
        raise ValueError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    xs = tuple(sorted(shares)[:threshold])
    _check_xs(xs)
    counts = {len(shares[x]) for x in xs}
    if len(counts) > 1:
        raise ValueError("every holder must give one share per secret")
    n_secrets = counts.pop() if counts else 0
    lam = _lagrange_at_zero(xs)
    return [
        sum(lam_j * shares[x][i] for lam_j, x in zip(lam, xs)) % PRIME for i in range(n_secrets)
    ]


@functools.lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """l_j = prod_{m != j} x_m / (x_m - x_j) mod p: one modular inverse per holder."""
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * xm % PRIME
                den = den * (xm - xj) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(out)


def _check_xs(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ValueError(f"x-coordinates must be distinct, got {list(xs)!r}")
    for x in xs:
        if not 0 < x < PRIME:
            raise ValueError(f"x-coordinates must be in [1, p), not {x!r}")


def share_to_bytes(value: int) -> bytes:
    """A field element as :data:`SHARE_BYTES` big-endian bytes."""
    return value.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """Inverse of :func:`share_to_bytes`.

    Raises:
        ValueError: wrong length or a value outside the field.
    """
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, not {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ValueError("share value outside the field")
    return value
