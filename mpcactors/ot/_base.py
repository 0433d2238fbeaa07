"""Base oblivious transfer: Chou-Orlandi "simplest OT" over the Ed25519 group of libsodium.

Theory of operation
-------------------
Chou and Orlandi, "The Simplest Protocol for Oblivious Transfer", LATINCRYPT 2015 (ePrint
2015/267), batched: ``n`` random 1-out-of-2 OTs of 16-byte keys in two messages. The group is
the prime-order subgroup of Ed25519 through PyNaCl's bindings to libsodium
(``crypto_scalarmult_ed25519_base_noclamp``, ``crypto_scalarmult_ed25519_noclamp``,
``crypto_core_ed25519_add/sub``, ``crypto_core_ed25519_is_valid_point``); scalars are 64 random
bytes reduced mod the group order (``crypto_core_ed25519_scalar_reduce``). ``G`` is the base
point::

    sender S                                   receiver R (choice bits c_1..c_n)
    a <- Z_q,  A = a G          --- A --->     check A is a valid subgroup point, not identity
                                               b_i <- Z_q,  B_i = b_i G + c_i A
    check every B_i             <--- B ---     k_i = KDF(A, B_i, i, b_i A)          = k_i^{c_i}
    k_i^0 = KDF(A, B_i, i, a B_i)
    k_i^1 = KDF(A, B_i, i, a B_i - a A)

``KDF`` is SHA-256 over a domain string, the session label, the transcript ``(A, B_i)`` and the
index ``i``, cut to 16 bytes. Hashing the transcript and index into each key is the repair the
literature applied to the original protocol (Genc, Iovino and Rial, ePrint 2017/370; Hauck and
Loss, ePrint 2017/1011; libOTe's SimplestOT does the same). We claim semi-honest security only
(CDH in the random-oracle model), which is all OT extension above it needs; the malicious/UC
variants are out of scope. libsodium's ``is_valid_point`` rejects points outside the prime-order
subgroup and small-order points, and its ``noclamp`` scalar multiplication refuses an identity
result, so a malformed peer message raises :class:`OtError` instead of giving weak keys.

Costs: S does one scalar multiplication per OT (~90 us), R one fixed-base and one variable-base
multiplication; 512 base OTs take ~0.1 s per side. Not constant-time in Python: the branch on
``c_i`` runs in the receiver's own process and is not observable by the peer.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from nacl import bindings as sodium
from nacl.exceptions import RuntimeError as SodiumRuntimeError

from .._errors import MpcError
from ..ops._comm import Exchange, Step

__all__ = ["OtError", "base_ot_receive", "base_ot_send"]

POINT = 32
_DOMAIN = b"mpcactors/ot/chou-orlandi/v1\0"


class OtError(MpcError):
    """Raised by the OT layer when a peer's message is malformed (wrong size, invalid point)."""


def _scalar() -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))


def _point(raw: object, what: str) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != POINT or not sodium.crypto_core_ed25519_is_valid_point(raw):
        raise OtError(f"base OT: {what} is not a valid Ed25519 subgroup point")
    return raw


def _kdf(label: bytes, a_pt: bytes, b_pt: bytes, i: int, shared: bytes) -> bytes:
    h = hashlib.sha256(_DOMAIN)
    h.update(len(label).to_bytes(2, "little") + label)
    h.update(a_pt + b_pt + i.to_bytes(8, "little") + shared)
    return h.digest()[:16]


def base_ot_send(peer: str, n: int, *, label: bytes = b"") -> Step[tuple[np.ndarray, np.ndarray]]:
    """Sender of ``n`` random OTs: two rounds (send ``A``; receive the ``B_i``).

    Args:
        peer: the receiver's party name.
        n: number of OTs.
        label: a session label both parties pass (domain separation between sessions).

    Returns:
        ``(k0, k1)``: two ``(n, 16)`` uint8 arrays of random keys.

    Raises:
        OtError: the receiver's message is malformed.
    """
    a = _scalar()
    a_pt = sodium.crypto_scalarmult_ed25519_base_noclamp(a)
    aa = sodium.crypto_scalarmult_ed25519_noclamp(a, a_pt)
    yield Exchange(send={peer: a_pt})
    got = yield Exchange(recv=frozenset({peer}))
    msg = got[peer]
    if not isinstance(msg, bytes) or len(msg) != POINT * n:
        raise OtError(f"base OT: expected {n} points from {peer!r}, got {_size(msg)}")
    k0 = np.empty((n, 16), dtype=np.uint8)
    k1 = np.empty((n, 16), dtype=np.uint8)
    for i in range(n):
        b_pt = _point(msg[POINT * i : POINT * (i + 1)], f"point {i} from {peer!r}")
        try:
            ab = sodium.crypto_scalarmult_ed25519_noclamp(a, b_pt)
        except SodiumRuntimeError as exc:
            raise OtError(f"base OT: point {i} from {peer!r} is degenerate") from exc
        k0[i] = np.frombuffer(_kdf(label, a_pt, b_pt, i, ab), dtype=np.uint8)
        k1[i] = np.frombuffer(
            _kdf(label, a_pt, b_pt, i, sodium.crypto_core_ed25519_sub(ab, aa)), dtype=np.uint8
        )
    return k0, k1


def base_ot_receive(peer: str, choices: np.ndarray, *, label: bytes = b"") -> Step[np.ndarray]:
    """Receiver of ``len(choices)`` random OTs (two rounds: receive ``A``; send the ``B_i``).

    Args:
        peer: the sender's party name.
        choices: 0/1 choice bits.
        label: the session label the sender passes.

    Returns:
        ``(n, 16)`` uint8: key ``k_i^{c_i}`` of each OT.

    Raises:
        OtError: the sender's ``A`` is malformed.
    """
    c = np.asarray(choices).astype(bool).reshape(-1)
    n = c.size
    got = yield Exchange(recv=frozenset({peer}))
    a_pt = _point(got[peer], f"A from {peer!r}")  # (is_valid_point rejects the identity)
    out = np.empty((n, 16), dtype=np.uint8)
    points = bytearray()
    for i in range(n):
        b = _scalar()
        b_pt = sodium.crypto_scalarmult_ed25519_base_noclamp(b)
        if c[i]:
            b_pt = sodium.crypto_core_ed25519_add(b_pt, a_pt)
        out[i] = np.frombuffer(
            _kdf(label, a_pt, b_pt, i, sodium.crypto_scalarmult_ed25519_noclamp(b, a_pt)),
            dtype=np.uint8,
        )
        points += b_pt
    yield Exchange(send={peer: bytes(points)})
    return out


def _size(msg: object) -> str:
    return f"{len(msg)} bytes" if isinstance(msg, bytes) else type(msg).__name__
