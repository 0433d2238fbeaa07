"""Numpy kernels of OT extension: bit-matrix transposes, column PRGs, the fixed-key AES hash.

Theory of operation
-------------------
OT extension works on an ``m x w`` bit matrix that is *generated* by columns (one PRG per base
OT, ``w`` of them) and *used* by rows (one row per extended OT). Three kernels do the bulk work:

- :func:`transpose_bits` turns ``w`` columns of ``B`` bits (``(w, B/8)`` bytes) into ``B`` rows of
  ``w`` bits (``(B, w/8)`` bytes) and back. Bit ``i`` of a row is bit ``i % 8`` (LSB first) of
  byte ``i // 8`` (``np.packbits(..., bitorder="little")``), so on a little-endian machine it is
  bit ``i % 64`` of ``uint64`` word ``i // 64``. The matrix is cut into 64x64 bit blocks, one
  ``uint64`` word per block row. One copy lays the words out row-of-block major (``x[j]`` holds
  row ``j`` of every block, the block order chosen so both copies move runs of words), six
  in-place stages transpose every block at once (Hacker's Delight 7-3, ``transpose64``: stage
  ``s`` swaps bits ``p + s`` of row ``j`` with bits ``p`` of row ``j + s``; the ``s = 32`` stage
  is a swap of ``uint32`` halves, the others are delta swaps with a shift and a mask), and one
  copy moves block ``(I, J)`` to ``(J, I)`` in the output. Each numpy call runs over all blocks
  (long inner loops). Shapes that are not whole blocks, or ``uint8`` arrays that cannot be viewed
  as aligned words, go through zero-padded scratch copies. ~45 ms per 2^20 rows of 512 bits on
  one core.
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

# Matrices of at most this many bytes take np.unpackbits -> .T -> np.packbits (~10 us at 512 B,
# where the ~30 numpy calls of the block path cost ~45 us).
_TINY = 1024

# Delta swaps of a 64x64 bit-block transpose after its s = 32 stage: (s, mask of the bits p
# with bit s of p clear); row j (bit s of j clear) trades its bits p + s for row j + s's bits p.
_STAGES = tuple(
    (s, np.uint64(m))
    for s, m in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    )
)


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

    Works on 64x64 bit blocks held as ``uint64`` words (see the module docstring). ``mat`` is
    only read.

    Args:
        mat: ``r`` rows of ``c`` bits, LSB-first packed; ``r`` and ``c`` multiples of 8. May be a
            view with a row stride (e.g. the columns of a :class:`ColumnPrg` buffer).
        out: a ``(c, r/8)`` array to write into (allocated as uint8 when None). The fast path
            writes straight into a uint8 ``out`` whose rows are contiguous and 8-byte aligned.
        scratch: reusable buffers (fresh ones when None); never share one between threads.

    Returns:
        ``out``: bit ``j`` of row ``i`` of ``out`` is bit ``i`` of row ``j`` of ``mat``.

    Raises:
        ValueError: ``r`` is not a multiple of 8, or ``out`` has the wrong shape.
    """
    r, cb = mat.shape
    if r % 8:
        raise ValueError(f"transpose_bits needs a multiple of 8 rows, not {r}")
    if out is None:
        out = np.empty((cb * 8, r // 8), dtype=np.uint8)
    elif out.shape != (cb * 8, r // 8):
        raise ValueError(f"transpose_bits of {mat.shape} writes ({cb * 8}, {r // 8}), not {out.shape}")
    if r == 0 or cb == 0:
        return out
    if r * cb <= _TINY and mat.dtype == np.uint8:  # fewer numpy calls than the block path
        bits = np.unpackbits(mat, axis=1, bitorder="little")
        np.copyto(out, np.packbits(bits.T, axis=1, bitorder="little"))
        return out
    sc = scratch or _Scratch()
    src = _words(mat)
    dst = _words(out)
    if r % 64 == 0 and src is not None and dst is not None:
        _transpose_blocks(src, dst, sc)
        return out
    # zero-padded to whole 64x64 blocks (zero bits transpose to zero bits)
    rp, cbp = -(-r // 64) * 64, -(-cb // 8) * 8
    pin = sc.get("tb_in", rp * cbp).reshape(rp, cbp)
    pin[r:] = 0
    pin[:r, cb:] = 0
    np.copyto(pin[:r, :cb], mat)
    pout = sc.get("tb_out", rp * cbp).reshape(cbp * 8, rp // 8)
    _transpose_blocks(pin.view(np.uint64), pout.view(np.uint64), sc)
    np.copyto(out, pout[: cb * 8, : r // 8])
    return out


def _words(a: np.ndarray) -> np.ndarray | None:
    """A uint8 matrix as ``uint64`` words (a view), or None when its rows are not whole aligned words."""
    if a.dtype != np.uint8 or a.shape[1] % 8 or a.strides[1] != 1:
        return None
    words = a.view(np.uint64)
    return words if words.flags.aligned else None  # the data pointer and the row stride


def _transpose_blocks(src: np.ndarray, dst: np.ndarray, sc: _Scratch) -> None:
    """``dst`` ``(64 cw, r/64)`` words = the bit transpose of ``src`` ``(r, cw)`` words, ``r % 64 == 0``."""
    r, cw = src.shape
    ni = r // 64
    n = ni * cw  # blocks
    blocks_in = src.reshape(ni, 64, cw)  # [I, j, J]: word J of row j of block row I
    blocks_out = dst.reshape(cw, 64, ni)  # [J, p, I]
    # x[j] = row j of every block, the shorter of I, J innermost: the copies then move runs of
    # words on one side (the other order costs 2-3x more on the other of the two big shapes)
    if ni <= cw:
        x_in, x_out = blocks_in.transpose(1, 2, 0), blocks_out.transpose(1, 0, 2)
    else:
        x_in, x_out = blocks_in.transpose(1, 0, 2), blocks_out.transpose(1, 2, 0)
    x = sc.get("tb_x", 64 * n, np.uint64).reshape(x_in.shape)
    if ni <= 2 < cw:  # IKNP's 128 columns: one 2-d copy per block row, ~5x faster than a 3-d one
        for i in range(ni):
            np.copyto(x[:, :, i], blocks_in[i])
    elif ni <= cw:
        np.copyto(x, x_in)
    else:
        # ~32 KiB of mat at a time: a single copy reads runs of cw words 512 cw bytes apart (one
        # per block row) across all of mat, ~2x slower when mat is not in cache
        step = max(1, 64 // cw)
        for i in range(0, ni, step):
            np.copyto(x[:, i : i + step], x_in[:, i : i + step])
    rows = x.reshape(64, n)
    t = sc.get("tb_t", 32 * n, np.uint64)
    # s = 32: the high halves of rows 0..31 trade places with the low halves of rows 32..63
    # (three uint32 copies: cheaper than a delta swap)
    hi = rows[:32].view(np.uint32).reshape(32 * n, 2)[:, 1]
    lo = rows[32:].view(np.uint32).reshape(32 * n, 2)[:, 0]
    t32 = t.view(np.uint32)[: 32 * n]
    np.copyto(t32, hi)
    np.copyto(hi, lo)
    np.copyto(lo, t32)
    for s, m in _STAGES:
        pairs = rows.reshape(32 // s, 2, s * n)
        a, b = pairs[:, 0], pairs[:, 1]  # rows j and j + s, bit s of j clear
        d = t.reshape(a.shape)
        np.right_shift(a, s, out=d)
        np.bitwise_xor(d, b, out=d)
        np.bitwise_and(d, m, out=d)
        np.bitwise_xor(b, d, out=b)
        np.left_shift(d, s, out=d)
        np.bitwise_xor(a, d, out=a)
    if ni == 2 and ni <= cw:  # IKNP's 128 columns: move the two words of a block row as one
        units = blocks_out.view(np.complex128).reshape(cw, 64).T  # 16-byte units: ~2x faster
        np.copyto(units, x.view(np.complex128).reshape(units.shape))
        return
    np.copyto(x_out, x)


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

    def __init__(self, keys: np.ndarray, rows: list[int] | None = None, height: int | None = None) -> None:
        """``rows[i]``: the output row of key ``i`` (default: row ``i``) among ``height`` rows
        (default: one per key); rows without a key are left unwritten (SoftSpoken's sender
        has no stream for its punctured leaf)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, 16)
        self._rows = list(range(keys.shape[0])) if rows is None else list(rows)
        self.width = keys.shape[0] if height is None else height
        if len(self._rows) != keys.shape[0] or not all(0 <= r < self.width for r in self._rows):
            raise ValueError(f"ColumnPrg: {keys.shape[0]} keys need as many rows in 0..{self.width - 1}")
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
        for row, enc in zip(self._rows, self._encs, strict=True):
            enc.update_into(zeros, memoryview(self._buf[row]))  # type: ignore[attr-defined,arg-type]
        return self._buf[:, :nbytes]


class RowHash:
    """Hash rows of ``W`` 128-bit blocks to ``out_blocks`` blocks: XOR of tweaked TMMO.

    ``H(j, row)[t] = XOR_b TMMO(row[b], tweak = (j, t * W + b))``, ``TMMO(x, i) = pi(pi(x)^i)^pi(x)``
    with ``pi`` AES-128 under the fixed public key ``SHA-256(domain)[:16]`` (Guo et al. 2020).
    """

    def __init__(self, domain: bytes) -> None:
        self._enc = aes_ecb(hashlib.sha256(b"mpcactors/ot/tmmo\0" + domain).digest()[:16])
        self._sc = _Scratch()

    def __call__(
        self, rows: np.ndarray, index: np.ndarray, out_blocks: int = 1, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Args: rows ``(n, 16 W)`` uint8; index ``(n,)`` uint64 row indices (the tweak); out:
        a C-contiguous ``(n, 2 * out_blocks)`` uint64 array to write into (new when None), or
        ``(n, 1)`` for one block's first word only (one-word OTs: no pass for the other word).

        Returns: ``out`` as a ``(n, 16 * out_blocks)`` uint8 view (``(n, 8)`` for one word).
        """
        n, nbytes = rows.shape
        rows = np.ascontiguousarray(rows)
        index = np.asarray(index, dtype=np.uint64).reshape(n)
        words = 1 if out is not None and out_blocks == 1 and out.ndim == 2 and out.shape[1] == 1 else 2 * out_blocks
        if out is None:
            out = np.empty((n, out_blocks * 2), dtype=np.uint64)
        elif out.shape != (n, words) or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise ValueError(f"RowHash out must be C-contiguous ({n}, {out_blocks * 2}) uint64, not {out.shape} {out.dtype}")
        if nbytes == 16 and out_blocks > 1:  # one input block, many output blocks (OT messages)
            step = max(1, (1 << 20) // (16 * out_blocks))
            for s in range(0, n, step):
                self._wide_slice(rows[s : s + step], index[s : s + step], out[s : s + step])
            return out.view(np.uint8).reshape(n, 16 * out_blocks)
        # Slices of ~1 MiB of rows: the AES passes and numpy passes of a slice stay in cache.
        step = max(1, (1 << 20) // max(1, nbytes))
        for s in range(0, n, step):
            self._hash_slice(rows[s : s + step], index[s : s + step], out[s : s + step], out_blocks)
        return out.view(np.uint8).reshape(n, 8 * words)

    def _wide_slice(self, rows: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
        """The hash of one-block rows to ``T`` blocks, all ``T`` tweaks of a row at once: the
        same values as :meth:`_hash_slice`, written row by row (its block-at-a-time writes
        into rows ``16 T`` bytes apart touch a page per row: ~1.6x slower at T = 5000)."""
        n = rows.shape[0]
        blocks = out.shape[1] // 2
        y = self._sc.get("y", 16 * n + 16)
        _into(self._enc, rows.reshape(-1), y)
        y64 = y[: 16 * n].view(np.uint64).reshape(n, 1, 2)
        z = self._sc.get("z", 16 * n * blocks + 16)
        z64 = z[: 16 * n * blocks].view(np.uint64).reshape(n, blocks, 2)
        # word by word: a broadcast over (n, blocks, 2) would run inner loops of 2 words
        np.copyto(z64[:, :, 0], (y64[:, 0, 0] ^ index)[:, None])
        np.bitwise_xor(y64[:, :, 1], np.arange(blocks, dtype=np.uint64)[None, :], out=z64[:, :, 1])
        pz = self._sc.get("pz", 16 * n * blocks + 16)
        _into(self._enc, z[: 16 * n * blocks], pz)
        pz64 = pz[: 16 * n * blocks].view(np.uint64).reshape(n, blocks, 2)
        o = out.reshape(n, blocks, 2)
        for w in range(2):
            np.bitwise_xor(pz64[:, :, w], y64[:, :, w], out=o[:, :, w])

    def _hash_slice(self, rows: np.ndarray, index: np.ndarray, out: np.ndarray, out_blocks: int) -> None:
        n, nbytes = rows.shape
        wb = nbytes // 16
        words = out.shape[1] - 2 * (out_blocks - 1)  # of the last block: 2, or 1 (first word only)
        total = n * wb
        y = self._sc.get("y", 16 * total + 16).reshape(-1)  # pi(x), 15 spare bytes for OpenSSL
        _into(self._enc, rows.reshape(-1), y)
        y64 = y[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        pz = self._sc.get("pz", 16 * total + 16)
        pz64 = pz[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        if wb == 1 and out_blocks == 1:  # the tweak is (j, 0): XOR it into pi(x) in place
            y0 = y64[:, 0, 0]
            np.bitwise_xor(y0, index, out=y0)  # pi(x) ^ (j, 0)
            _into(self._enc, y[: 16 * total], pz)
            np.bitwise_xor(pz64[:, 0, :words], y64[:, 0, :words], out=out)  # ^ (pi(x) ^ (j, 0))
            np.bitwise_xor(out[:, 0], index, out=out[:, 0])  # ^ (j, 0) again: TMMO's ^ pi(x)
            return
        z = self._sc.get("z", 16 * total + 16)
        z64 = z[: 16 * total].view(np.uint64).reshape(n, wb, 2)
        for t in range(out_blocks):
            # one long loop per (block, word): a loop over (n, wb) or (n, 2) runs a few words
            # at a time (and a strided ufunc.reduce over the blocks is slower still)
            for b in range(wb):
                np.bitwise_xor(y64[:, b, 0], index, out=z64[:, b, 0])
                np.bitwise_xor(y64[:, b, 1], np.uint64(t * wb + b), out=z64[:, b, 1])
            _into(self._enc, z[: 16 * total], pz)
            if wb == 1:  # one block a row: XOR straight into the output (contiguous words)
                w = words if t == out_blocks - 1 else 2
                np.bitwise_xor(pz64[:, 0, :w], y64[:, 0, :w], out=out[:, 2 * t : 2 * t + w])
                continue
            np.bitwise_xor(pz64, y64, out=pz64)
            for w in range(words if t == out_blocks - 1 else 2):
                acc = out[:, 2 * t + w]
                np.copyto(acc, pz64[:, 0, w])
                for b in range(1, wb):
                    np.bitwise_xor(acc, pz64[:, b, w], out=acc)
