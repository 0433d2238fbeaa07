"""Numpy kernels of OT extension: bit-matrix transposes, column PRGs, the fixed-key AES hash.

Theory of operation
-------------------
OT extension works on an ``m x w`` bit matrix that is *generated* by columns (one PRG per base
OT, ``w`` of them) and *used* by rows (one row per extended OT). Three kernels do the bulk work:

- :func:`transpose_bits` turns ``w`` columns of ``B`` bits (``(w, B/8)`` bytes) into ``B`` rows of
  ``w`` bits (``(B, w/8)`` bytes) and back. It cuts the matrix into 8x8 bit blocks, gathers each
  block into one ``uint64``, transposes the 64 bits in place with three delta swaps (Hacker's
  Delight 7-3, ``transpose8``), and scatters the blocks with a word-level transpose followed by a
  cache-local byte transpose. Bit ``i`` of a row is bit ``i % 8`` (LSB first) of byte ``i // 8``
  (``np.packbits(..., bitorder="little")``). ~120 ms per 2^20 rows of 512 bits on one core.
- :class:`ColumnPrg` is ``w`` AES-128-CTR keystreams (``cryptography``/OpenSSL), one per base-OT
  key, each written with ``update_into`` straight into its row of a preallocated buffer.
- :class:`RowHash` is the tweakable (circular) correlation-robust hash TMMO of Guo, Katz, Wang
  and Yu ("Efficient and Secure Multiparty Computation from Fixed-Key Block Ciphers", IEEE S&P
  2020): ``TMMO(x, i) = pi(pi(x) ^ i) ^ pi(x)`` with ``pi`` AES-128
  under a fixed public key. A row of ``W`` 128-bit blocks hashes to the XOR of TMMO of each block
  under the tweak ``(row index, output block, input block)``; with ``W = 4`` this is the hash of
  KKRT's reference implementation (libOTe ``KkrtNcoOtSender::encode``: XOR of fixed-key MMO of
  the code word's blocks), with Guo et al.'s tweak added. All AES runs as ECB ``update_into`` over
  whole chunks.

Buffers are allocated once per object and reused while the chunk size does not grow. No state
is shared between objects: concurrent jobs in worker threads each own their ciphers and buffers
(an OpenSSL cipher context used from two threads at once fails with "Already borrowed").
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["ColumnPrg", "RowHash", "aes_ecb", "transpose_bits"]

_M1 = np.uint64(0x00AA00AA00AA00AA)
_M2 = np.uint64(0x0000CCCC0000CCCC)
_M3 = np.uint64(0x00000000F0F0F0F0)
_SWAPS = ((np.uint64(7), _M1), (np.uint64(14), _M2), (np.uint64(28), _M3))


class _Scratch:
    """Named numpy buffers that are reused while big enough (first touch costs ~2 ms/MB)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type = np.uint8) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = np.empty(max(n, 1), dtype=dtype)
            self._bufs[name] = buf
        return buf[:n]


def transpose_bits(mat: np.ndarray, out: np.ndarray | None = None,
                   scratch: _Scratch | None = None) -> np.ndarray:
    """Transpose an ``(r, c/8)`` uint8 bit matrix (rows of ``c`` bits) into ``(c, r/8)``.

    Args:
        mat: ``r`` rows of ``c`` bits, LSB-first packed; ``r`` and ``c`` multiples of 8. May be a
            view with a row stride (e.g. the columns of a :class:`ColumnPrg` buffer).
        out: a ``(c, r/8)`` uint8 array to write into (allocated when None).
        scratch: reusable buffers (fresh ones when None); never share one between threads.

    Returns:
        ``out``: bit ``j`` of row ``i`` of ``out`` is bit ``i`` of row ``j`` of ``mat``.
    """
    r, cb = mat.shape
    if r % 8:
        raise ValueError(f"transpose_bits needs a multiple of 8 rows, not {r}")
    sc = scratch or _Scratch()
    rb = r // 8
    if out is None:
        out = np.empty((cb * 8, rb), dtype=np.uint8)
    # 1. gather 8x8 blocks: block (I, J) = bytes mat[8I + k, J], k = 0..7, as one uint64
    x = sc.get("x", rb * cb, np.uint64).reshape(rb, cb)
    xb = x.view(np.uint8).reshape(rb, cb, 8)
    np.copyto(xb, mat.reshape(rb, 8, cb).transpose(0, 2, 1))
    # 2. transpose the bits inside each block (bit 8k + b <-> bit 8b + k)
    t = sc.get("t", rb * cb, np.uint64).reshape(rb, cb)
    for s, m in _SWAPS:
        np.right_shift(x, s, out=t)
        np.bitwise_xor(t, x, out=t)
        np.bitwise_and(t, m, out=t)
        np.bitwise_xor(x, t, out=x)
        np.left_shift(t, s, out=t)
        np.bitwise_xor(x, t, out=x)
    # 3. scatter: word-level transpose, then a cache-local byte transpose per 8 output rows
    w = sc.get("w", rb * cb, np.uint64).reshape(cb, rb)
    np.copyto(w, x.T)
    np.copyto(out.reshape(cb, 8, rb), w.view(np.uint8).reshape(cb, rb, 8).transpose(0, 2, 1))
    return out


def aes_ecb(key: bytes) -> object:
    """An AES-ECB encryptor (use ``update_into``; ECB keeps no state between calls)."""
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _into(enc: object, src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[:] = AES(src)`` for C-contiguous uint8 views; ``dst`` must have 15 spare bytes."""
    enc.update_into(memoryview(src).cast("B"), memoryview(dst).cast("B"))  # type: ignore[attr-defined,arg-type]


class ColumnPrg:
    """``w`` AES-128-CTR keystreams, one per 16-byte key, expanded a chunk at a time.

    Both holders of a key expand the same stream in the same order, so a column chunk of one
    party equals the other's as long as both call :meth:`expand` with the same sizes.
    """

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, 16)
        self.width = keys.shape[0]
        self._encs = [
            Cipher(algorithms.AES(bytes(k)), modes.CTR(bytes(16))).encryptor() for k in keys
        ]
        self._zeros = np.zeros(0, dtype=np.uint8)
        self._buf = np.empty((self.width, 16), dtype=np.uint8)

    def expand(self, nbytes: int) -> np.ndarray:
        """The next ``nbytes`` of every stream: a ``(w, nbytes)`` view of a reused buffer."""
        if self._zeros.size < nbytes:
            self._zeros = np.zeros(nbytes, dtype=np.uint8)
        if self._buf.shape[1] < nbytes + 16:
            self._buf = np.empty((self.width, nbytes + 16), dtype=np.uint8)
        zeros = memoryview(self._zeros[:nbytes])  # type: ignore[arg-type]
        for i, enc in enumerate(self._encs):
            enc.update_into(zeros, memoryview(self._buf[i]))  # type: ignore[attr-defined,arg-type]
        return self._buf[:, :nbytes]


class RowHash:
    """Hash rows of ``W`` 128-bit blocks to ``out_blocks`` blocks: XOR of tweaked TMMO.

    ``H(j, row)[t] = XOR_b TMMO(row[b], tweak = (j, t * W + b))``, ``TMMO(x, i) = pi(pi(x)^i)^pi(x)``
    with ``pi`` AES-128 under the fixed public key ``SHA-256(domain)[:16]`` (Guo et al. 2020).
    """

    def __init__(self, domain: bytes) -> None:
        self._enc = aes_ecb(hashlib.sha256(b"mpcactors/ot/tmmo\0" + domain).digest()[:16])
        self._sc = _Scratch()

    def __call__(self, rows: np.ndarray, index: np.ndarray, out_blocks: int = 1) -> np.ndarray:
        """Args: rows ``(n, 16 W)`` uint8; index ``(n,)`` uint64 row indices (the tweak).

        Returns: a new ``(n, 16 * out_blocks)`` uint8 array.
        """
        n, nbytes = rows.shape
        rows = np.ascontiguousarray(rows)
        index = np.asarray(index, dtype=np.uint64).reshape(n)
        out = np.empty((n, out_blocks * 2), dtype=np.uint64)
        # Slices of ~1 MiB of rows: the AES passes and numpy passes of a slice stay in cache.
        step = max(1, (1 << 20) // max(1, nbytes))
        for s in range(0, n, step):
            self._hash_slice(rows[s : s + step], index[s : s + step], out[s : s + step])
        return out.view(np.uint8).reshape(n, 16 * out_blocks)

    def _hash_slice(self, rows: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
        n, nbytes = rows.shape
        wb = nbytes // 16
        out_blocks = out.shape[1] // 2
        total = n * wb
        y = self._sc.get("y", 16 * total + 16).reshape(-1)  # pi(x), 15 spare bytes for OpenSSL
        _into(self._enc, rows.reshape(-1), y)
        y64 = y[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        z = self._sc.get("z", 16 * total + 16)
        z64 = z[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        pz = self._sc.get("pz", 16 * total + 16)
        pz64 = pz[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        for t in range(out_blocks):
            # one long loop per (block, word): a loop over (n, wb) or (n, 2) runs a few words
            # at a time (and a strided ufunc.reduce over the blocks is slower still)
            for b in range(wb):
                np.bitwise_xor(y64[:, b, 0], index, out=z64[:, b, 0])
                np.bitwise_xor(y64[:, b, 1], np.uint64(t * wb + b), out=z64[:, b, 1])
            _into(self._enc, z[: 16 * total], pz)
            np.bitwise_xor(pz64, y64, out=pz64)
            for w in range(2):
                acc = out[:, 2 * t + w]
                np.copyto(acc, pz64[:, 0, w])
                for b in range(1, wb):
                    np.bitwise_xor(acc, pz64[:, b, w], out=acc)
