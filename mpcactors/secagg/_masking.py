"""Quantisation into Z_2^k, pairwise and self masks, and the per-pair keys of secure aggregation.

Theory of operation
-------------------
*Quantisation.* A real vector is clipped to [-clip, clip] and rounded to fixed point with
``frac_bits`` fractional bits, q(x) = round(clip(x) * 2^f) mod 2^k, two's complement in the ring
Z_2^k (k = ``ring_bits``; held in uint32 when k <= 32, else uint64, so wrap-around of the machine
word is reduction mod 2^k once the top bits are masked off). A sum of n quantised vectors decodes
exactly when n * round(clip * 2^f) < 2^(k-1): :meth:`Quantizer.check_capacity` refuses
parameters that could overflow.

*Masks* (Bonawitz et al. 2017, section 4, "MaskedInputCollection"). Client u sends

    y_u = q(x_u) + PRG(b_u) + sum_{v in N(u), v alive} sign(u, v) * PRG(s_{u,v})   (mod 2^k)

with sign(u, v) = +1 if u < v (party-name order) else -1, so the pairwise terms of two alive
clients cancel in the sum. s_{u,v} = HKDF(X25519(s_u^SK, s_v^PK)) with the job, the aggregation
tag and the (sorted) pair as HKDF info; b_u is 32 fresh random bytes. PRG is the AES-256-CTR
:class:`~mpcactors.ops._prg.Prg`, so a mask of a million ring elements is one AES-CTR call.

*Share encryption.* Shares of u's secrets travel to v through the server, sealed with AES-256-GCM
under HKDF(X25519(c_u^SK, c_v^PK)); the associated data names job, tag, sender and receiver (the
paper's "u || v" inside the plaintext), so the server can neither read nor redirect them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._errors import AggregationError, ConfigError
from ..ops._prg import Prg, derive_seed, stream_key

__all__ = [
    "Quantizer",
    "check_public_key",
    "expand_mask",
    "label",
    "pair_seed",
    "seal",
    "self_mask_key",
    "unseal",
]

_DOMAIN = b"mpcactors/secagg/v1"
_NONCE_BYTES = 12


def label(*parts: str) -> bytes:
    """Unambiguous byte label: the domain, then each part length-prefixed (utf-8)."""
    out = [_DOMAIN]
    for p in parts:
        b = p.encode()
        out.append(struct.pack(">I", len(b)) + b)
    return b"".join(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Quantizer:
    """Clip-and-round fixed point in the ring Z_2^k (see module doc).

    Attributes:
        clip: values are clipped to [-clip, clip] before rounding.
        frac_bits: f, fractional bits of the fixed-point encoding.
        ring_bits: k, the ring is Z_2^k (16 <= k <= 64).
    """

    clip: float
    frac_bits: int
    ring_bits: int

    def __post_init__(self) -> None:
        if isinstance(self.ring_bits, bool) or not isinstance(self.ring_bits, int):
            raise ConfigError(f"must be an integer, not {self.ring_bits!r}", key="ring_bits")
        if not 16 <= self.ring_bits <= 64:
            raise ConfigError(f"must be in [16, 64], not {self.ring_bits!r}", key="ring_bits")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int):
            raise ConfigError(f"must be an integer, not {self.frac_bits!r}", key="frac_bits")
        if not 0 <= self.frac_bits < self.ring_bits - 1:
            raise ConfigError(
                f"must be in [0, ring_bits - 1) = [0, {self.ring_bits - 1}), not {self.frac_bits!r}",
                key="frac_bits",
            )
        clip = self.clip
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not math.isfinite(clip):
            raise ConfigError(f"must be a finite positive number, not {clip!r}", key="clip")
        if clip <= 0:
            raise ConfigError(f"must be positive, not {clip!r}", key="clip")
        self.check_capacity(1)

    @property
    def dtype(self) -> np.dtype:
        """The machine word holding ring elements: uint32 for k <= 32, else uint64."""
        return np.dtype(np.uint32) if self.ring_bits <= 32 else np.dtype(np.uint64)

    @property
    def step(self) -> float:
        """The quantisation step 2^-f (largest rounding error per element is half of it)."""
        return 2.0**-self.frac_bits

    def max_level(self) -> int:
        """Largest |q(x)| as an integer: round(clip * 2^f)."""
        return math.floor(self.clip * 2.0**self.frac_bits + 0.5)

    def check_capacity(self, summands: int) -> None:
        """Refuse parameters whose sum of ``summands`` vectors could overflow Z_2^k.

        Raises:
            ConfigError: summands * round(clip * 2^f) >= 2^(k-1).
        """
        if summands * self.max_level() >= 1 << (self.ring_bits - 1):
            limit = (1 << (self.ring_bits - 1)) // max(self.max_level(), 1)
            raise ConfigError(
                f"a sum of {summands} vectors clipped to {self.clip!r} with frac_bits="
                f"{self.frac_bits} overflows Z_2^{self.ring_bits} (at most {limit} fit); lower "
                "clip or frac_bits, or raise ring_bits",
                key="clip",
            )

    def reduce(self, ring: np.ndarray) -> np.ndarray:
        """Reduce a word array mod 2^k in place (a no-op when k fills the word) and return it."""
        if self.ring_bits < self.dtype.itemsize * 8:
            np.bitwise_and(ring, self.dtype.type((1 << self.ring_bits) - 1), out=ring)
        return ring

    def quantise(self, vector: np.ndarray) -> tuple[np.ndarray, int]:
        """q(x): clip, round to fixed point, embed in Z_2^k.

        Args:
            vector: a 1-D float array.

        Returns:
            ``(ring elements of dtype :attr:`dtype`, number of elements that were clipped)``.

        Raises:
            AggregationError: the vector holds NaN or infinity.
        """
        x = np.asarray(vector, dtype=np.float64)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates through min/max
            raise AggregationError("cannot aggregate a vector holding NaN or infinity")
        clipped = 0
        if lo < -self.clip or hi > self.clip:
            clipped = int(np.count_nonzero(np.abs(x) > self.clip))
            scaled = np.clip(x, -self.clip, self.clip)
            scaled *= 2.0**self.frac_bits
        else:
            scaled = x * 2.0**self.frac_bits
        np.rint(scaled, out=scaled)
        # two's complement in uint64; the cast to uint32 keeps the low 32 bits (mod 2^32)
        ring = scaled.astype(np.int64).view(np.uint64).astype(self.dtype, copy=False)
        return self.reduce(ring), clipped

    def dequantise(self, ring: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`quantise` on (sums of) ring elements: signed value times 2^-f."""
        r = self.reduce(np.array(ring, dtype=self.dtype))
        k = self.ring_bits
        if k == 64:
            signed = r.view(np.int64)
        else:
            signed = r.astype(np.int64)
            signed[signed >= 1 << (k - 1)] -= 1 << k
        return signed.astype(np.float64) * 2.0**-self.frac_bits


def pair_seed(
    private: X25519PrivateKey, peer_public: bytes, purpose: str, *context: str, peer: str = "?"
) -> bytes:
    """32-byte key shared by a pair: HKDF-SHA256(X25519(private, peer_public)), info = label.

    Raises:
        AggregationError: ``peer_public`` (``peer``'s key) is not a valid X25519 public key:
            wrong length, or a low-order point (the shared secret would be all zeros).
    """
    try:
        return derive_seed(private, peer_public, info=label(purpose, *context))
    except ValueError as exc:  # wrong length, or the all-zero shared secret of a bad point
        raise AggregationError(
            f"the X25519 public key of {peer!r} ({purpose!r} agreement) is invalid or of low "
            f"order: {exc}"
        ) from None


def check_public_key(public: bytes, what: str, owner: str) -> None:
    """Refuse a 32-byte X25519 public key of low order (an agreement with it gives all zeros).

    One X25519 with a throwaway key: every point of order 1, 2, 4 or 8, on the curve or its
    twist, gives the all-zero shared secret, which ``cryptography`` refuses.

    Raises:
        AggregationError: ``public`` is not 32 bytes or is of low order (names ``owner``).
    """
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        raise AggregationError(
            f"{what} from {owner!r} is not a valid X25519 public key (low order?): {exc}"
        ) from None


def self_mask_key(seed: bytes, *context: str) -> bytes:
    """The AES key expanding a self-mask seed b_u, bound to the job and tag."""
    return stream_key(seed, label("self-mask", *context))


def expand_mask(key: bytes, n: int, dtype: np.dtype) -> np.ndarray:
    """PRG(key) as ``n`` uniform words of ``dtype`` (reduce mod 2^k afterwards)."""
    prg = Prg(key)
    if dtype == np.uint64:
        return prg.random_u64(n)
    return prg.random_u64((n + 1) // 2).view(np.uint32)[:n]


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption: ``nonce || ciphertext || tag``."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, *, sender: str) -> bytes:
    """Inverse of :func:`seal`.

    Raises:
        AggregationError: the ciphertext does not authenticate (tampered, misrouted, wrong key).
    """
    if not isinstance(blob, bytes) or len(blob) < _NONCE_BYTES + 16:
        raise AggregationError(f"malformed encrypted shares from {sender!r}")
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise AggregationError(
            f"encrypted shares from {sender!r} do not authenticate (tampered or misrouted)"
        ) from None
