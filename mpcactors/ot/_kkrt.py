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
rows its three cuckoo bins name). Steps: :func:`kkrt_receiver_setup` / :func:`kkrt_sender_setup`
(three rounds: a coin toss for the code keys merged with the 512 base OTs, which are random OTs
of a 128-wide IKNP extension over 128 public-key OTs, see :mod:`._extension`), then chunks of rows
through :meth:`KkrtReceiver.encode` (``U`` to send) and :meth:`KkrtSender.absorb`; or the
one-shot steps :func:`oprf_receive` / :func:`oprf_send`.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..ops._comm import Exchange, Step, gather
from ._base import OtError
from ._extension import MAX_ROWS, ExtReceiver, ExtSender, ext_receiver_setup, ext_sender_setup
from ._kernels import RowHash, _into, _Scratch, aes_ecb

__all__ = [
    "KKRT_WIDTH",
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


class KkrtReceiver:
    """The OPRF receiver: encodes its inputs row by row; its output for row j is ``H(j, T_j)``."""

    def __init__(self, ext: ExtReceiver, code: PseudoRandomCode) -> None:
        self.ext = ext
        self.code = code
        self.hash = RowHash(b"kkrt/oprf")

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
    """The OPRF sender: absorbs ``U`` chunks into ``Q`` rows and evaluates ``F_j`` on inputs."""

    def __init__(self, ext: ExtSender, code: PseudoRandomCode) -> None:
        self.ext = ext
        self.code = code
        self.hash = RowHash(b"kkrt/oprf")

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
    a, b = sorted([mine, theirs])
    return hashlib.sha256(b"mpcactors/ot/coin\0" + a + b).digest()


def kkrt_receiver_setup(peer: str, *, label: bytes = b"") -> Step[KkrtReceiver]:
    """Receiver setup: code keys by coin toss, 512 base OTs as their sender (3 rounds: 128
    public-key OTs as their receiver, then the peer's ``U`` of a 128-wide IKNP extension)."""
    seed, ext = yield from gather([coin_toss(peer), ext_receiver_setup(peer, KKRT_WIDTH, label=label)])
    return KkrtReceiver(ext, PseudoRandomCode(seed))


def kkrt_sender_setup(peer: str, *, label: bytes = b"") -> Step[KkrtSender]:
    """Sender setup: code keys by coin toss, 512 base OTs as their receiver (3 rounds: 128
    public-key OTs as their sender, then ``U`` of a 128-wide IKNP extension to the peer)."""
    seed, ext = yield from gather([coin_toss(peer), ext_sender_setup(peer, KKRT_WIDTH, label=label)])
    return KkrtSender(ext, PseudoRandomCode(seed))


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
