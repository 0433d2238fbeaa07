"""transpose_bits (64x64 word blocks) against a plain unpackbits -> .T -> packbits reference."""

from __future__ import annotations

import numpy as np
import pytest

from mpcactors.ot._kernels import _Scratch, transpose_bits

RNG = np.random.default_rng(20261203)


def reference(m: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(m, axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")


SHAPES = [
    (512, 8192),  # KKRT column chunk -> rows
    (65536, 64),  # rows -> columns
    (8, 1), (8, 8), (16, 3), (24, 64), (56, 7), (64, 1), (64, 8), (72, 9), (128, 16),
    (192, 40), (200, 24), (512, 3), (512, 1000), (640, 24), (1024, 64), (4096, 2),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape: tuple[int, int]) -> None:
    m = RNG.integers(0, 256, shape, dtype=np.uint8)
    before = m.copy()
    t = transpose_bits(m)
    assert t.dtype == np.uint8
    assert np.array_equal(t, reference(m))
    assert np.array_equal(m, before)  # only read
    if t.shape[0] % 8 == 0:
        assert np.array_equal(transpose_bits(t), m)


@pytest.mark.parametrize("shape", [(512, 8192), (512, 1003), (64, 16), (8, 5), (1024, 64)])
@pytest.mark.parametrize("pad", [16, 3])
def test_strided_views_in_and_out(shape: tuple[int, int], pad: int) -> None:
    r, cb = shape
    # rows of a bigger buffer (a ColumnPrg buffer has 16 spare bytes a row), aligned or not
    big = RNG.integers(0, 256, (r, cb + pad + 1), dtype=np.uint8)
    m = big[:, 1 : cb + 1] if pad == 3 else big[:, :cb]
    big_out = np.full((cb * 8 + 16, r // 8 + pad), 0xA5, dtype=np.uint8)
    out = big_out[8 : 8 + cb * 8, : r // 8]  # rows with a stride: not one contiguous block
    sc = _Scratch()
    assert transpose_bits(m, out=out, scratch=sc) is out
    assert np.array_equal(out, reference(np.ascontiguousarray(m)))
    # everything outside out untouched
    assert np.all(big_out[:8] == 0xA5) and np.all(big_out[8 + cb * 8 :] == 0xA5)
    assert np.all(big_out[:, r // 8 :] == 0xA5)


@pytest.mark.parametrize("layout", ["rows reversed", "columns reversed", "fortran"])
@pytest.mark.parametrize("shape", [(512, 64), (192, 24), (72, 9)])
def test_other_memory_layouts(layout: str, shape: tuple[int, int]) -> None:
    m = RNG.integers(0, 256, shape, dtype=np.uint8)
    v = {"rows reversed": m[::-1], "columns reversed": m[:, ::-1], "fortran": np.asfortranarray(m)}[layout]
    assert np.array_equal(transpose_bits(v, scratch=_Scratch()), reference(np.ascontiguousarray(v)))


def test_out_is_a_row_slice_of_a_bigger_array() -> None:
    m = RNG.integers(0, 256, (512, 1024), dtype=np.uint8)
    q = np.zeros((8 * 4096, 64), dtype=np.uint8)
    transpose_bits(m, out=q[8 * 1024 : 8 * 2048], scratch=_Scratch())
    assert np.array_equal(q[8 * 1024 : 8 * 2048], reference(m))
    assert not q[: 8 * 1024].any() and not q[8 * 2048 :].any()


def test_one_scratch_serves_shapes_that_grow_and_shrink() -> None:
    sc = _Scratch()
    for shape in [(64, 8), (512, 8192), (72, 3), (65536, 64), (128, 16), (512, 4096), (8, 1)]:
        m = RNG.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(transpose_bits(m, scratch=sc), reference(m))


def test_bool_input_and_wider_out_dtype_like_before() -> None:
    m = RNG.integers(0, 2, (64, 24)).astype(bool)
    out = np.empty((24 * 8, 8), dtype=np.int64)
    transpose_bits(m, out=out)
    assert np.array_equal(out, reference(m.astype(np.uint8)))


def test_single_bits_land_where_the_definition_says() -> None:
    r, c = 128, 192
    for i, j in [(0, 0), (1, 0), (0, 1), (63, 64), (64, 63), (127, 191), (5, 130)]:
        m = np.zeros((r, c // 8), dtype=np.uint8)
        m[i, j // 8] = 1 << (j % 8)  # bit j of row i
        t = transpose_bits(m)
        expect = np.zeros((c, r // 8), dtype=np.uint8)
        expect[j, i // 8] = 1 << (i % 8)  # bit i of row j
        assert np.array_equal(t, expect), (i, j)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="multiple of 8 rows"):
        transpose_bits(np.zeros((12, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="writes"):
        transpose_bits(np.zeros((64, 4), dtype=np.uint8), out=np.zeros((32, 4), dtype=np.uint8))


def test_empty() -> None:
    assert transpose_bits(np.zeros((0, 4), dtype=np.uint8)).shape == (32, 0)
    assert transpose_bits(np.zeros((16, 0), dtype=np.uint8)).shape == (0, 2)
