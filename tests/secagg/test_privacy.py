"""What the server sees of one client, y_u = q(x_u) + masks, is uniform over the ring and
independent of x_u. The statistics below are run on real protocol messages; each check is also
shown to reject a leaky vector, so it can fail."""

from __future__ import annotations

import numpy as np
import pytest

from mpcactors.secagg import Quantizer, SecAggParams, Stage

from ._sim import simulate

N = 1 << 14  # ring elements per masked vector
Z_MAX = 5.5  # per-statistic rejection bound in standard deviations (about 4e-8 two-sided)


def chi2_bound(df: int) -> float:
    """Critical value of chi-square(df) far in the tail (mean + 7 sd; p < 1e-8 for df = 255)."""
    return df + 7 * np.sqrt(2 * df)


def bit_balance_z(y: np.ndarray, bits: int) -> np.ndarray:
    """Per bit position, (ones - N/2) / sqrt(N/4): N(0, 1) for uniform words."""
    words = y.astype(np.uint64)
    ones = np.array([np.count_nonzero((words >> np.uint64(b)) & np.uint64(1)) for b in range(bits)])
    n = len(y)
    return (ones - n / 2) / np.sqrt(n / 4)


def byte_chi2(y: np.ndarray) -> float:
    counts = np.bincount(np.frombuffer(y.tobytes(), dtype=np.uint8), minlength=256)
    expected = counts.sum() / 256
    return float(((counts - expected) ** 2 / expected).sum())


def homogeneity_chi2(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square test that two vectors' byte values come from one distribution (df = 255)."""
    table = np.stack(
        [np.bincount(np.frombuffer(v.tobytes(), dtype=np.uint8), minlength=256) for v in (a, b)]
    ).astype(np.float64)
    table = table[:, table.sum(0) > 0]  # a byte value neither vector has adds nothing
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def correlation_z(x: np.ndarray, y: np.ndarray, bits: int) -> float:
    """Pearson correlation of x with y read as a signed ring element, times sqrt(N)."""
    w = y.astype(np.uint64).astype(np.float64) / 2.0**bits
    r = np.corrcoef(x, w)[0, 1]
    return float(r * np.sqrt(len(x)))


def failed_checks(y0: np.ndarray, y1: np.ndarray, x1: np.ndarray, bits: int) -> set[str]:
    """Which uniformity / independence checks reject (empty: looks uniform and independent)."""
    failed = set()
    for y in (y0, y1):
        if np.any(np.abs(bit_balance_z(y, bits)) >= Z_MAX):
            failed.add("bit balance")
        if byte_chi2(y) >= chi2_bound(255):
            failed.add("byte chi-square")
    if homogeneity_chi2(y0, y1) >= chi2_bound(255):
        failed.add("same distribution")
    if abs(correlation_z(x1, y1, bits)) >= Z_MAX:
        failed.add("correlation")
    return failed


def masked_vector_of(params: SecAggParams, target: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    vectors = {"alice": target, "bob": rng.uniform(-1, 1, N), "carol": rng.uniform(-1, 1, N)}
    server, _, log = simulate(params, vectors)
    assert server.result is not None
    return np.asarray(log[("alice", Stage.MASKED_INPUT.value)]["y"])


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_masked_input_is_uniform_and_independent_of_the_input(ring_bits: int) -> None:
    q = Quantizer(clip=4.0, frac_bits=16, ring_bits=ring_bits)
    params = SecAggParams(job="j", tag="t", threshold=2, quantizer=q)
    zeros = np.zeros(N)
    extreme = np.random.default_rng(3).choice([-4.0, 4.0], size=N)  # very different input
    y0 = masked_vector_of(params, zeros)
    y1 = masked_vector_of(params, extreme)
    assert y0.dtype == y1.dtype == q.dtype
    assert failed_checks(y0, y1, extreme, ring_bits) == set()


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_the_statistics_reject_leaky_vectors(ring_bits: int) -> None:
    """Controls: the same checks catch an unmasked input and an input under a too-short mask."""
    q = Quantizer(clip=4.0, frac_bits=16, ring_bits=ring_bits)
    rng = np.random.default_rng(4)
    x = rng.choice([-4.0, 4.0], size=N)
    plain0, plain1 = q.quantise(np.zeros(N))[0], q.quantise(x)[0]
    assert failed_checks(plain0, plain1, x, ring_bits) == {
        "bit balance",
        "byte chi-square",
        "same distribution",
        "correlation",
    }
    # A mask over the low 24 bits only: bytes look busy, but the top bits still carry x.
    low = rng.integers(0, 1 << 24, size=N, dtype=np.uint64).astype(q.dtype)
    weak0, weak1 = q.reduce(plain0 + low), q.reduce(plain1 + low)
    assert {"bit balance", "correlation"} <= failed_checks(weak0, weak1, x, ring_bits)
