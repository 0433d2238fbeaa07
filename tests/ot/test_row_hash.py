"""RowHash (tweaked TMMO of Guo et al. 2020) against its definition, block by block with AES-ECB."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcactors.ot._kernels import RowHash

RNG = np.random.default_rng(20261204)
DOMAIN = b"test-domain"


def reference(rows: np.ndarray, index: np.ndarray, out_blocks: int) -> np.ndarray:
    """``H(j, row)[t] = XOR_b TMMO(row[b], (j, t W + b))``, ``TMMO(x, i) = pi(pi(x) ^ i) ^ pi(x)``,
    the tweak a block of two little-endian words (row index, block index)."""
    key = hashlib.sha256(b"mpcactors/ot/tmmo\0" + DOMAIN).digest()[:16]
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def pi(block: bytes) -> bytes:
        return enc.update(block)

    def xor(a: bytes, b: bytes) -> bytes:
        return bytes(x ^ y for x, y in zip(a, b, strict=True))

    n, nbytes = rows.shape
    wb = nbytes // 16
    out = np.zeros((n, 16 * out_blocks), dtype=np.uint8)
    for j in range(n):
        for t in range(out_blocks):
            acc = bytes(16)
            for b in range(wb):
                y = pi(rows[j, 16 * b : 16 * b + 16].tobytes())
                tweak = int(index[j]).to_bytes(8, "little") + (t * wb + b).to_bytes(8, "little")
                acc = xor(acc, xor(pi(xor(y, tweak)), y))
            out[j, 16 * t : 16 * t + 16] = np.frombuffer(acc, dtype=np.uint8)
    return out


@pytest.mark.parametrize(("wb", "out_blocks"), [(1, 1), (4, 1), (1, 3), (2, 2)])
def test_matches_the_definition(wb: int, out_blocks: int) -> None:
    n = 37
    rows = RNG.integers(0, 256, (n, 16 * wb), dtype=np.uint8)
    index = RNG.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    got = RowHash(DOMAIN)(rows, index, out_blocks)
    np.testing.assert_array_equal(got, reference(rows, index, out_blocks))


@pytest.mark.parametrize("wb", [1, 4])
def test_one_word_output_is_the_first_word(wb: int) -> None:
    """An ``(n, 1)`` out gets word 0 of the one-block hash (one-word OTs skip the other word)."""
    n = 70_000  # more than one internal slice of ~1 MiB of rows at wb = 4
    rows = RNG.integers(0, 256, (n, 16 * wb), dtype=np.uint8)
    index = np.arange(5, 5 + n, dtype=np.uint64)
    h = RowHash(DOMAIN)
    full = h(rows, index, 1).view(np.uint64)
    one = np.empty((n, 1), dtype=np.uint64)
    h(rows, index, 1, out=one)
    np.testing.assert_array_equal(one[:, 0], full[:, 0])
    small = slice(0, 9)
    np.testing.assert_array_equal(
        one[small, 0], reference(rows[small], index[small], 1).view(np.uint64)[:, 0]
    )


def test_rejects_an_out_of_the_wrong_shape() -> None:
    rows = RNG.integers(0, 256, (8, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="C-contiguous"):
        RowHash(DOMAIN)(rows, np.arange(8, dtype=np.uint64), 1, out=np.empty((8, 3), dtype=np.uint64))
