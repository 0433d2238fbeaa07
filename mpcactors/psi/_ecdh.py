"""The elliptic-curve half of ECDH-PSI: hash ids to the prime-order group, blind them with X25519.

Theory of operation
-------------------
DH-PSI (Meadows 1986; Huberman, Franklin and Hogg, EC'99; the ECDH form SPU calls
``PROTOCOL_ECDH``). Each party P holds a fresh secret scalar ``k_P``. An id ``x`` is first
digested, ``d(x) = SHA-256(DOMAIN || enc(x))`` (what preparation deduplicates and, sealed under
a job key, keeps on disk), then hashed to the group in the shape of RFC 9380's ``hash_to_curve``
(random-oracle variant): two domain-separated field inputs ``u0 || u1 = SHA-512(H2G_DST ||
d(x))``, each mapped by Elligator 2 with cofactor clearing (libsodium's
``crypto_core_ed25519_from_uniform``), added (``crypto_core_ed25519_add``), and the sum converted
to its Montgomery u-coordinate (``crypto_sign_ed25519_pk_to_curve25519``)::

    H(x) = u( Elligator2(u0) + Elligator2(u1) )      a point of the prime-order subgroup

Blinding is the X25519 function ``X25519(k, u) = u([clamp(k)] P)`` from ``cryptography``
(OpenSSL). Scalar multiplication of an x-only point commutes::

    X25519(k_A, X25519(k_B, H(x))) == X25519(k_B, X25519(k_A, H(x)))

so both parties arrive at the same double-blinded value for a common id. Every value a peer
sees is a multiple of a prime-order-subgroup point, hence itself in that subgroup: unlike the
earlier mapping (the digest read straight as a u-coordinate, v1), where about half the ids landed
on the quadratic twist and each blinded value told the peer that bit of its id, nothing about
the id shows in which set a value lies. A low-order input makes OpenSSL return all zeros, which
``cryptography`` rejects with ``ValueError``; our hashes never do that, so it only happens on a
malformed peer message and is reported as :class:`PsiError`.

Cost: the hash to the group is ~110-125 us per id on this machine (two Elligator maps, one
addition, and the conversion, whose subgroup check is a scalar multiplication), about three
X25519 operations; it runs with the blinding of our own stream in the worker processes.

The batch functions below are plain, picklable, module-level functions over ``bytes`` so the
executor can run them in worker processes (``anyio.to_process``): one X25519 costs ~40-70 us of
OpenSSL time, so a chunk of 4096 is ~0.3 s of work and the event loop never runs it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import nacl.exceptions
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_from_uniform,
    crypto_sign_ed25519_pk_to_curve25519,
)

from .._errors import PsiError

__all__ = [
    "DOMAIN",
    "H2G_DST",
    "POINT_BYTES",
    "blind_batch",
    "blind_own_batch",
    "bucket_of",
    "encode_key",
    "hash_encoded",
    "hash_to_group",
    "new_secret",
    "open_digests",
    "seal_digests",
]

POINT_BYTES = 32
# Domain separation: hashes for this PSI version only (both parties must use the same).
DOMAIN = b"mpcactors/psi/ecdh-x25519/v2\x00"
H2G_DST = b"mpcactors/psi/ecdh-x25519/v2/hash-to-group/edwards25519_ELL2_RO\x00"


def encode_key(fields: Sequence[str | bytes]) -> bytes:
    """Injective byte encoding of a (possibly multi-column) key.

    Each column is UTF-8 encoded (``bytes`` are taken as they are) and prefixed by its length as
    a little-endian u32, so ``("ab", "c")`` and ``("a", "bc")`` never collide. Keys compare byte
    for byte: no trimming, no case folding, no Unicode normalisation.
    """
    parts = []
    for f in fields:
        b = f.encode("utf-8") if isinstance(f, str) else bytes(f)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def hash_encoded(encoded: Iterable[bytes]) -> bytes:
    """The digest ``d(x) = SHA-256(DOMAIN || enc(x))`` of each encoded key, concatenated.

    OpenSSL's SHA-256 through ``hashlib`` (as :func:`hash_to_group`'s SHA-512): a copy of the
    hashed domain per key costs half of what ``cryptography``'s ``Hash.copy`` does, and this
    loop runs once per input row.
    """
    copy = hashlib.sha256(DOMAIN).copy
    out = []
    for e in encoded:
        h = copy()
        h.update(e)
        out.append(h.digest())
    return b"".join(out)


def hash_values(values: Iterable[bytes]) -> bytes:
    """``d(x)`` of single-column keys given as their UTF-8 bytes: :func:`hash_encoded` of
    ``encode_key([v])`` without building it (one hashed ``DOMAIN || len`` prefix per length)."""
    prefixes: dict[int, Any] = {}
    out = []
    for v in values:
        base = prefixes.get(len(v))
        if base is None:
            base = prefixes[len(v)] = hashlib.sha256(DOMAIN + struct.pack("<I", len(v)))
        h = base.copy()
        h.update(v)
        out.append(h.digest())
    return b"".join(out)


def hash_to_group(digests: bytes) -> bytes:
    """``H(x)``: each 32-byte digest hashed to a u-coordinate of the prime-order subgroup.

    RFC 9380's ``hash_to_curve`` shape over libsodium (see the module doc): two field inputs
    from SHA-512, Elligator 2 with cofactor clearing on each, their sum, its u-coordinate.

    Raises:
        PsiError: ``digests`` is not a whole number of digests (or, with probability ~2^-250,
            a sum is the identity).
    """
    if len(digests) % POINT_BYTES:
        raise PsiError(f"a batch of digests must be a multiple of 32 bytes, not {len(digests)}")
    base = hashlib.sha512(H2G_DST)
    out = bytearray(len(digests))
    for i in range(0, len(digests), POINT_BYTES):
        h = base.copy()
        h.update(digests[i : i + POINT_BYTES])
        w = h.digest()
        point = crypto_core_ed25519_add(
            crypto_core_ed25519_from_uniform(w[:32]), crypto_core_ed25519_from_uniform(w[32:])
        )
        try:
            out[i : i + POINT_BYTES] = crypto_sign_ed25519_pk_to_curve25519(point)
        except nacl.exceptions.RuntimeError as exc:  # the identity: never for a real hash
            raise PsiError(f"digest {i // POINT_BYTES} hashes to the identity: {exc}") from None
    return bytes(out)


def seal_digests(key: bytes, digests: bytes) -> bytes:
    """Digests as kept on disk: AES-256 of each 16-byte half under a job key (a keyed hash).

    Deterministic, so equal ids still compare equal (deduplication, bucketing), but a reader of
    the files without the key cannot test guessed ids against them. The key comes from the
    job's seed, which lives only in the 0600 manifest (:mod:`._checkpoint`).
    """
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(digests) + enc.finalize()


def open_digests(key: bytes, sealed: bytes) -> bytes:
    """Inverse of :func:`seal_digests`."""
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(sealed) + dec.finalize()


def new_secret() -> bytes:
    """A fresh 32-byte X25519 scalar (clamped by X25519 itself) from the OS CSPRNG."""
    return os.urandom(32)


def blind_batch(secret: bytes, points: bytes) -> bytes:
    """``X25519(secret, u)`` for every 32-byte u in ``points``; runs in a worker process.

    Args:
        secret: the party's 32-byte scalar for this job.
        points: ``32 * n`` bytes of u-coordinates.

    Returns:
        ``32 * n`` bytes: the blinded u-coordinates in the same order.

    Raises:
        PsiError: ``points`` is not a whole number of points, or one is a low-order point.
    """
    if len(points) % POINT_BYTES:
        raise PsiError(f"a batch of points must be a multiple of 32 bytes, not {len(points)}")
    key = X25519PrivateKey.from_private_bytes(secret)
    from_bytes = X25519PublicKey.from_public_bytes
    exchange = key.exchange
    out = bytearray(len(points))
    try:
        for i in range(0, len(points), POINT_BYTES):
            out[i : i + POINT_BYTES] = exchange(from_bytes(points[i : i + POINT_BYTES]))
    except ValueError as exc:
        raise PsiError(f"point {i // POINT_BYTES} of a batch is a low-order point: {exc}") from None
    return bytes(out)


def blind_own_batch(secret: bytes, key: bytes, sealed: bytes) -> bytes:
    """``X25519(secret, H(x))`` for each sealed digest of our own stream (a worker's job)."""
    return blind_batch(secret, hash_to_group(open_digests(key, sealed)))


def bucket_of(key: bytes, hashes_: bytes, n_buckets: int) -> np.ndarray:
    """A secret pseudo-random bucket in ``[0, n_buckets)`` for each 32-byte hash.

    AES-256 (a PRP, hence a PRF on distinct inputs) of the hash's first 16 bytes under a local
    secret key: the peer, who never learns the key, cannot relate bucket membership (and so the
    order in which we stream our blinded values) to the ids. One batched AES call per batch.
    """
    arr = np.frombuffer(hashes_, dtype=np.uint8).reshape(-1, POINT_BYTES)
    if n_buckets <= 1 or arr.shape[0] == 0:
        return np.zeros(arr.shape[0], dtype=np.int64)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    block = enc.update(np.ascontiguousarray(arr[:, :16]).tobytes()) + enc.finalize()
    words = np.frombuffer(block, dtype="<u8").reshape(-1, 2)[:, 0]
    return (words % np.uint64(n_buckets)).astype(np.int64)
