"""The elliptic-curve half of ECDH-PSI: hash ids to curve points, blind them with X25519.

Theory of operation
-------------------
DH-PSI (Meadows 1986; Huberman, Franklin and Hogg, EC'99; the ECDH form SPU calls
``PROTOCOL_ECDH``). Each party P holds a fresh secret scalar ``k_P``. An id ``x`` is mapped to
``H(x) = SHA-256(domain || enc(x))`` read as an X25519 u-coordinate (RFC 7748 ignores bit 255;
we clear it so the 32 bytes are exactly what the ladder uses). Blinding is the X25519 function
``X25519(k, u) = u([clamp(k)] P)`` from ``cryptography`` (OpenSSL). Scalar multiplication of an
x-only point commutes::

    X25519(k_A, X25519(k_B, H(x))) == X25519(k_B, X25519(k_A, H(x)))

so both parties arrive at the same double-blinded value for a common id while each single-blinded
value is a DDH-hard blinding of the hash (Curve25519 is twist-secure, so hash outputs that land on
the twist are as safe as those on the curve). A low-order input makes OpenSSL return all zeros,
which ``cryptography`` rejects with ``ValueError``; hashes never do that (probability ~2^-250), so
it only happens on a malformed peer message and is reported as :class:`PsiError`.

The batch functions below are plain, picklable, module-level functions over ``bytes`` so the
executor can run them in worker processes (``anyio.to_process``): one X25519 costs ~50-70 us of
OpenSSL time, so a chunk of 4096 is ~0.3 s of work and the event loop never runs it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .._errors import PsiError

__all__ = [
    "DOMAIN",
    "POINT_BYTES",
    "blind_batch",
    "bucket_of",
    "encode_key",
    "hash_encoded",
    "new_secret",
]

POINT_BYTES = 32
# Domain separation: a hash for this PSI version only (both parties must use the same).
DOMAIN = b"mpcactors/psi/ecdh-x25519/v1\x00"


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
    """``H(x)`` for each encoded key, concatenated (32 bytes each, bit 255 cleared)."""
    base = hashes.Hash(hashes.SHA256())
    base.update(DOMAIN)
    out = bytearray()
    for e in encoded:
        h = base.copy()
        h.update(e)
        out += h.finalize()
    arr = np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES).copy()
    arr[:, 31] &= 0x7F
    return arr.tobytes()


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
