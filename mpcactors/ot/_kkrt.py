"""KKRT16 batched oblivious PRF: OT extension of width 512 with a pseudorandom code.

Theory of operation
-------------------
Kolesnikov, Kumaresan, Rosulek and Trieu, "Efficient Batched Oblivious PRF with Applications to
Private Set Intersection", CCS 2016 (KKRT16), in the semi-honest setting. It is the OT
extension of :mod:`._extension` with width ``w = 512`` and row code words ``c_j = C(x_j)``:

- ``C`` is a pseudorandom code: ``C(x) = (AES_{k_1}(x) ^ x) || ... || (AES_{k_4}(x) ^ x)`` for a
  128-bit input ``x`` (a hash of the item), with four AES-128 keys both parties derive from a
  coin toss after the inputs are fixed -- as in KKRT's reference implementation (libOTe
  ``KkrtNcoOtReceiver``/``Sender``: "pseudo-random codewords" under ``MultiKeyAES``). With
  ``w = 512`` two distinct inputs' code words differ in ~256 positions, far above the 128 the
  paper needs.
- After the extension, S holds ``Q_j = T_j ^ (C(x_j) & s)`` and the receiver ``T_j``. The PRF
  for row ``j`` is ``F_j(y) = H(j, Q_j ^ (C(y) & s))`` with ``H`` the tweaked fixed-key AES hash
  of :class:`~._kernels.RowHash` (TMMO per block, XOR over the 4 blocks); the receiver's output
  is ``H(j, T_j) = F_j(x_j)``. For ``y != x_j`` the input to ``H`` differs from ``T_j`` in the
  bits of ``s`` under ``C(x_j) ^ C(y)``, which the receiver cannot guess.

The sender may evaluate ``F_j`` on any number of inputs per row (PSI evaluates each item in the
rows its three cuckoo bins name). Steps: :func:`kkrt_receiver_setup` / :func:`kkrt_sender_setup`,
then chunks of rows through :meth:`KkrtReceiver.encode` (``U`` to send) and
:meth:`KkrtSender.absorb`; or the one-shot steps :func:`oprf_receive` / :func:`oprf_send`.

Set-up and kept bases. Round 1 is a coin toss (the *session* seed: the code keys, and the
label every session-specific key and hash domain derives from) in which each party also
offers the ids of the :class:`KkrtBase` es it kept from earlier set-ups with this peer. With
no base in common, the 512 base OTs follow (random OTs of a 128-wide IKNP extension over 128
public-key OTs, :mod:`._extension`; 3 more rounds) and become a new base. Either way the
session's OT extension runs on keys derived from the base under the session seed
(:func:`~._extension.derive_keys`), with the row hash under a session domain: two sessions
from one base share no PRG stream and no hash tweak, and keep the receiver's key pairs and
the sender's ``s`` -- what one long IKNP/KKRT extension keeps for all its rows. So a later
session costs one round and no public-key work (IKNP's point: base OTs are paid once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import numpy as np

from ..ops._comm import Exchange, Step
from ._base import OtError
from ._extension import (
    MAX_ROWS,
    ExtReceiver,
    ExtSender,
    receiver_base_keys,
    receiver_for_session,
    sender_base_keys,
    sender_for_session,
)
from ._kernels import RowHash, _into, _Scratch, aes_ecb

__all__ = [
    "KKRT_WIDTH",
    "KkrtBase",
    "KkrtReceiver",
    "KkrtSender",
    "PseudoRandomCode",
    "coin_toss",
    "kkrt_receiver_setup",
    "kkrt_sender_setup",
    "oprf_receive",
    "oprf_send",
]

KKRT_WIDTH = 512
_BLOCKS = KKRT_WIDTH // 128


class PseudoRandomCode:
    """``C(x)``: 4 blocks of ``AES_{k_b}(x) ^ x`` for 128-bit inputs ``x`` (libOTe's KKRT code)."""

    def __init__(self, seed: bytes) -> None:
        keys = hashlib.sha256(b"mpcactors/ot/kkrt-code\0" + seed).digest()
        keys += hashlib.sha256(b"mpcactors/ot/kkrt-code/2\0" + seed).digest()
        self._encs = [aes_ecb(keys[16 * b : 16 * (b + 1)]) for b in range(_BLOCKS)]
        self._sc = _Scratch()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(n, 16)`` uint8 inputs -> ``(n, 64)`` uint8 code words (a new array)."""
        n = x.shape[0]
        x = np.ascontiguousarray(x, dtype=np.uint8)
        out = np.empty((n, _BLOCKS, 16), dtype=np.uint8)
        buf = self._sc.get("c", 16 * n + 16)
        x64 = x.reshape(-1).view(np.uint64).reshape(n, 2)
        out64 = out.reshape(-1).view(np.uint64).reshape(n, _BLOCKS, 2)
        for b, enc in enumerate(self._encs):
            if n:
                _into(enc, x.reshape(-1), buf)
            buf64 = buf[: 16 * n].view(np.uint64).reshape(n, 2)
            for w in range(2):  # one long loop per word (a (n, 2) loop runs 2 words at a time)
                np.bitwise_xor(buf64[:, w], x64[:, w], out=out64[:, b, w])
        return out.reshape(n, 16 * _BLOCKS)


@dataclasses.dataclass(frozen=True, slots=True)
class KkrtBase:
    """The 512 base OTs of one KKRT direction between two parties, kept to set up later
    sessions in one round (see :func:`kkrt_receiver_setup`); plain arrays, so picklable.

    Attributes:
        id: 16 bytes both parties derive from the set-up's coin toss (how they find it again).
        receiver: True for the OPRF receiver's half (``keys`` = both keys of each base OT,
            ``(2, 512, 16)``), False for the sender's (``keys`` = ``k_i^{s_i}``, ``(512, 16)``,
            and ``s_bits``).
    """

    id: bytes
    receiver: bool
    keys: np.ndarray = dataclasses.field(repr=False)
    s_bits: np.ndarray | None = dataclasses.field(default=None, repr=False)


class KkrtReceiver:
    """The OPRF receiver: encodes its inputs row by row; its output for row j is ``H(j, T_j)``.

    ``new_base`` is the :class:`KkrtBase` this set-up created (None when it reused one).
    """

    def __init__(self, ext: ExtReceiver, code: PseudoRandomCode, *, session: bytes = b"",
                 new_base: KkrtBase | None = None) -> None:
        self.ext = ext
        self.code = code
        self.hash = RowHash(b"kkrt/oprf" + session)
        self.new_base = new_base

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the next ``len(x)`` rows (<= 2^16): ``(U, outputs)``; ``U`` goes to the sender.

        Args:
            x: ``(B, 16)`` uint8, the input of each row.

        Returns:
            ``U`` ``(B, 64)`` uint8 and the PRF outputs ``(B, 16)`` uint8 of these rows.
        """
        first = self.ext.rows_done
        u, t = self.ext.rows(self.code(x))
        idx = np.arange(first, first + x.shape[0], dtype=np.uint64)
        return u, self.hash(t, idx)


class KkrtSender:
    """The OPRF sender: absorbs ``U`` chunks into ``Q`` rows and evaluates ``F_j`` on inputs.

    ``new_base`` is the :class:`KkrtBase` this set-up created (None when it reused one).
    """

    def __init__(self, ext: ExtSender, code: PseudoRandomCode, *, session: bytes = b"",
                 new_base: KkrtBase | None = None) -> None:
        self.ext = ext
        self.code = code
        self.hash = RowHash(b"kkrt/oprf" + session)
        self.new_base = new_base

    def absorb(self, u: np.ndarray) -> tuple[int, np.ndarray]:
        """``(first row index, Q rows)`` for the next ``len(u)`` rows of the receiver."""
        first = self.ext.rows_done
        return first, self.ext.rows(u)

    def evaluate(self, q: np.ndarray, rows: np.ndarray, first: int, y: np.ndarray) -> np.ndarray:
        """``F_j(y_i)`` for ``j = first + rows[i]``: ``(n, 16)`` uint8.

        Args:
            q: the ``Q`` rows from :meth:`absorb`.
            rows: ``(n,)`` indices into ``q``.
            first: the row index of ``q[0]`` (from :meth:`absorb`).
            y: ``(n, 16)`` uint8 inputs.
        """
        v = self.code(y)
        v64 = v.view(np.uint64)
        np.bitwise_and(v64, self.ext.delta.view(np.uint64), out=v64)
        # np.take copies whole rows (fancy indexing of a uint8 matrix copies byte by byte: ~8x)
        np.bitwise_xor(v64, np.take(q, rows, axis=0).view(np.uint64), out=v64)
        return self.hash(v, np.asarray(rows, dtype=np.uint64) + np.uint64(first))


def coin_toss(peer: str, nbytes: int = 16) -> Step[bytes]:
    """Both parties send ``nbytes`` random bytes; returns SHA-256 of both, in sorted order."""
    mine = os.urandom(nbytes)
    got = yield Exchange(send={peer: mine}, recv=frozenset({peer}))
    theirs = got[peer]
    if not isinstance(theirs, bytes) or len(theirs) != nbytes:
        raise OtError(f"coin toss: expected {nbytes} bytes from {peer!r}")
    return _coin(mine, theirs)


def _coin(mine: bytes, theirs: bytes) -> bytes:
    a, b = sorted([mine, theirs])
    return hashlib.sha256(b"mpcactors/ot/coin\0" + a + b).digest()


_MAX_OFFERED = 8  # base ids a party offers at most


def _open_session(peer: str, offered: Sequence[bytes], receiver: bool) -> Step[tuple[bytes, bytes | None]]:
    """Round 1 of a KKRT set-up: a coin toss, and the ids of the bases each party holds.

    Returns ``(seed, chosen)``: the fresh joint seed (the session: code keys, derived column
    keys, hash domain) and the id of a base both hold (the receiver's first offer the sender
    also holds, so both choose alike), or None.
    """
    mine = os.urandom(16)
    ids = [bytes(i) for i in offered[:_MAX_OFFERED]]
    got = yield Exchange(send={peer: {"c": mine, "b": ids}}, recv=frozenset({peer}))
    msg = got[peer]
    theirs = msg.get("c") if isinstance(msg, dict) else None
    their_ids = msg.get("b") if isinstance(msg, dict) else None
    if (not isinstance(theirs, bytes) or len(theirs) != 16 or not isinstance(their_ids, list)
            or len(their_ids) > _MAX_OFFERED or not all(isinstance(i, bytes) for i in their_ids)):
        raise OtError(f"KKRT set-up: malformed session message from {peer!r}")
    first, second = (ids, their_ids) if receiver else (their_ids, ids)
    chosen = next((i for i in first if i in second), None)
    return _coin(mine, theirs), chosen


def _base_id(seed: bytes) -> bytes:
    return hashlib.sha256(b"mpcactors/ot/kkrt-base\0" + seed).digest()[:16]


def kkrt_receiver_setup(peer: str, *, label: bytes = b"",
                        bases: Sequence[KkrtBase] = ()) -> Step[KkrtReceiver]:
    """Receiver set-up: a coin toss (the session) and the 512 base OTs as their sender.

    One round when both parties still hold a base from an earlier set-up (``bases``, offered
    by id): the session's column keys derive from it (:func:`~._extension.derive_keys` under
    the fresh seed), so sessions never share a PRG stream or a hash domain, while the
    receiver's base keys and the sender's ``s`` stay what they were -- as in one long OT
    extension. Otherwise 4 rounds: the coin toss, then 128 public-key OTs as their receiver and
    the peer's ``U`` of a 128-wide IKNP extension; the new base is ``new_base``.
    """
    seed, chosen = yield from _open_session(peer, [b.id for b in bases if b.receiver], True)
    base = next((b for b in bases if b.receiver and b.id == chosen), None)
    new = None
    if base is None:
        k0, k1 = yield from receiver_base_keys(peer, KKRT_WIDTH, label=label)
        base = new = KkrtBase(_base_id(seed), True, np.stack([k0, k1]))
    ext = receiver_for_session(base.keys[0], base.keys[1], KKRT_WIDTH, seed)
    return KkrtReceiver(ext, PseudoRandomCode(seed), session=seed, new_base=new)


def kkrt_sender_setup(peer: str, *, label: bytes = b"",
                      bases: Sequence[KkrtBase] = ()) -> Step[KkrtSender]:
    """Sender set-up, the other half of :func:`kkrt_receiver_setup` (1 or 4 rounds)."""
    seed, chosen = yield from _open_session(peer, [b.id for b in bases if not b.receiver], False)
    base = next((b for b in bases if not b.receiver and b.id == chosen), None)
    new = None
    if base is None:
        s_bits, keys = yield from sender_base_keys(peer, KKRT_WIDTH, label=label)
        base = new = KkrtBase(_base_id(seed), False, keys, s_bits)
    if base.s_bits is None:
        raise OtError("a KKRT sender's base needs its s bits")
    ext = sender_for_session(base.s_bits, base.keys, KKRT_WIDTH, seed)
    return KkrtSender(ext, PseudoRandomCode(seed), session=seed, new_base=new)


def oprf_receive(peer: str, rcv: KkrtReceiver, x: np.ndarray) -> Step[np.ndarray]:
    """One-shot OPRF, receiver: ``F_j(x_j)`` for every row ``j`` (``(m, 16)`` uint8)."""
    m = x.shape[0]
    out = np.empty((m, 16), dtype=np.uint8)
    for s in range(0, max(m, 1), MAX_ROWS):
        u, out[s : s + MAX_ROWS] = rcv.encode(x[s : s + MAX_ROWS])
        yield Exchange(send={peer: u})
    return out


def oprf_send(peer: str, snd: KkrtSender, m: int) -> Step[tuple[int, np.ndarray]]:
    """One-shot OPRF, sender: ``(first, Q)`` for :meth:`KkrtSender.evaluate` (m rows)."""
    q = np.empty((m, KKRT_WIDTH // 8), dtype=np.uint8)
    first = snd.ext.rows_done
    for s in range(0, max(m, 1), MAX_ROWS):
        got = yield Exchange(recv=frozenset({peer}))
        u = got[peer]
        b = min(MAX_ROWS, m - s)
        if not isinstance(u, np.ndarray) or u.shape != (b, KKRT_WIDTH // 8) or u.dtype != np.uint8:
            raise OtError(f"KKRT: expected ({b}, 64) uint8 rows from {peer!r}")
        q[s : s + b] = snd.absorb(u)[1]
    return first, q
