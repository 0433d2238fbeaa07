"""HE cross terms of matrix triples (mpcactors/ops/_he_triples.py) against numpy mod 2^64.

The encoding, the CRT and the block plans are checked in plain integers (no OpenFHE); the
protocol itself runs both holders through ``run_local`` and skips where OpenFHE does not import
(its 1.6.1 wheel ships a CPython 3.10 extension only).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from mpcactors.ops._comm import run_local
from mpcactors.ops._he_triples import (
    PRIMES,
    SIGMA,
    BlockPlan,
    _a_polys,
    _b_polys,
    _blocks_to_matrix,
    _garner,
    _residue,
    _wanted,
    he_cross_products,
    he_cross_terms,
    he_keys,
    plan_blocks,
    primes_for,
)
from mpcactors.ops._prg import Prg

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before OpenFHE loads: its OpenMP pool spins

U64 = np.uint64


def _mm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x @ y mod 2^64 in Python integers."""
    return np.array((x.astype(object) @ y.astype(object)) % (1 << 64), dtype=U64)


def _negacyclic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x(X) y(X) mod X^N + 1, in Python integers."""
    n = len(x)
    full = np.convolve(x.astype(object), y.astype(object))
    out = full[:n].copy()
    out[: len(full) - n] -= full[n:]
    return out


def test_primes_are_coprime_and_enough() -> None:
    assert all(math.gcd(p, q) == 1 for i, p in enumerate(PRIMES) for q in PRIMES[i + 1 :])
    assert all(p < 1 << 32 and (p - 1) % (1 << 16) == 0 for p in PRIMES)
    for k in (1, 2, 255, 256, 1024, 1 << 20):
        assert math.prod(primes_for(k)) > 1 << (128 + (k - 1).bit_length() + SIGMA + 1)
    with pytest.raises(ValueError, match="more than"):
        primes_for(1 << 30)


def test_residue_and_garner_rebuild_big_integers() -> None:
    rng = np.random.default_rng(3)
    primes = PRIMES[:6]
    words = rng.integers(0, 1 << 64, (3, 5, 7), dtype=U64)
    words[2] >>= np.uint64(1)  # below 2^191 < prod(primes)
    value = [
        [sum(int(words[w, i, j]) << (64 * w) for w in range(3)) for j in range(7)] for i in range(5)
    ]
    for t in primes:
        assert [[int(x) for x in row] for row in _residue(words, t)] == [
            [v % t for v in row] for row in value
        ]
    got = _garner([_residue(words, t) for t in primes], primes)
    assert [[int(x) for x in row] for row in got] == [[v % (1 << 64) for v in row] for row in value]


@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 1, 1), (3, 7, 2), (9, 5, 11), (2, 40, 3), (17, 1, 13)]
)
def test_block_encoding_gives_the_inner_products(m: int, k: int, n: int) -> None:
    """The plaintext algebra of the protocol at a small ring degree: sum over the k blocks of
    a_(i,l)(X) b_(l,j)(X) mod X^N + 1 holds A B at the wanted exponents."""
    degree = 64
    plan = plan_blocks(m, k, n, degree)
    assert plan.mb * plan.kb * plan.nb + plan.kb - 1 <= degree
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.integers(0, 1 << 64, (m, k), dtype=U64)
    b = rng.integers(0, 1 << 64, (k, n), dtype=U64)
    ap, bp = _a_polys(a, plan, degree), _b_polys(b, plan, degree)
    im, ik, jn = plan.counts
    sums = np.zeros((im, jn, plan.mb, plan.nb), dtype=object)
    for i in range(im):
        for j in range(jn):
            poly = sum(_negacyclic(ap[i, l], bp[l, j]) for l in range(ik))
            sums[i, j] = np.asarray(poly)[_wanted(plan)]
    want = a.astype(object) @ b.astype(object)
    assert (_blocks_to_matrix(sums, plan) == want).all()


def test_plan_fits_the_ring_and_covers_the_matrices() -> None:
    for m, k, n in [(256, 256, 256), (1024, 1024, 1024), (5, 3000, 7), (1, 1, 20000)]:
        plan = plan_blocks(m, k, n, 16384)
        assert plan.mb * plan.kb * plan.nb + plan.kb - 1 <= 16384
        im, ik, jn = plan.counts
        assert im * plan.mb >= m and ik * plan.kb >= k and jn * plan.nb >= n
    assert plan_blocks(3, 4, 5, 16384) == BlockPlan(3, 4, 5, 3, 4, 5)


def _cross(m: int, k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    pytest.importorskip(
        "openfhe", reason="OpenFHE (pip install openfhe) does not import in this Python"
    )
    rng = np.random.default_rng(seed)
    a = [rng.integers(0, 1 << 64, (m, k), dtype=U64) for _ in range(2)]
    b = [rng.integers(0, 1 << 64, (k, n), dtype=U64) for _ in range(2)]
    res, rounds = run_local(
        {
            "alice": he_cross_terms("bob", a[0], b[0], Prg(bytes([seed]) * 32), leader=True),
            "bob": he_cross_terms("alice", a[1], b[1], Prg(bytes([seed + 1]) * 32), leader=False),
        }
    )
    with np.errstate(over="ignore"):
        return res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]), rounds


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (7, 33, 5)])
def test_cross_terms_match_numpy(m: int, k: int, n: int) -> None:
    got, want, rounds = _cross(m, k, n, seed=m + n)
    assert got.dtype == U64 and got.shape == (m, n)
    assert np.array_equal(got, want)
    assert rounds == 2 + 2 * len(primes_for(k))


@pytest.mark.slow
def test_cross_terms_match_numpy_over_many_blocks() -> None:
    got, want, _ = _cross(130, 70, 150, seed=9)  # 2 x 7 x 6 blocks
    assert np.array_equal(got, want)


@pytest.mark.slow
def test_each_holders_result_alone_looks_random() -> None:
    """One holder's result is masked: it does not equal the cross term, nor does its half."""
    pytest.importorskip(
        "openfhe", reason="OpenFHE (pip install openfhe) does not import in this Python"
    )
    rng = np.random.default_rng(5)
    a = [rng.integers(0, 1 << 64, (4, 6), dtype=U64) for _ in range(2)]
    b = [rng.integers(0, 1 << 64, (6, 3), dtype=U64) for _ in range(2)]
    res, _ = run_local(
        {
            "alice": he_cross_terms("bob", a[0], b[0], Prg(bytes(32)), leader=True),
            "bob": he_cross_terms("alice", a[1], b[1], Prg(bytes([1]) * 32), leader=False),
        }
    )
    for mine in res.values():
        assert not np.any(mine == _mm(a[0], b[1])) and not np.any(mine == _mm(a[1], b[0]))


@pytest.mark.parametrize("shape", [(1,), (3, 5), (16385,)])
def test_elementwise_cross_products_match_numpy(shape: tuple[int, ...]) -> None:
    pytest.importorskip(
        "openfhe", reason="OpenFHE (pip install openfhe) does not import in this Python"
    )
    rng = np.random.default_rng(len(shape))
    a = [rng.integers(0, 1 << 64, shape, dtype=U64) for _ in range(2)]
    b = [rng.integers(0, 1 << 64, shape, dtype=U64) for _ in range(2)]
    res, _ = run_local(
        {
            "alice": he_cross_products("bob", a[0], b[0], Prg(bytes(32)), leader=True),
            "bob": he_cross_products("alice", a[1], b[1], Prg(bytes([1]) * 32), leader=False),
        }
    )
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], a[0] * b[1] + a[1] * b[0])


def test_keys_made_once_serve_several_triples() -> None:
    pytest.importorskip(
        "openfhe", reason="OpenFHE (pip install openfhe) does not import in this Python"
    )
    keys, setup_rounds = run_local(
        {
            "alice": he_keys("bob", leader=True),
            "bob": he_keys("alice", leader=False),
        }
    )
    assert setup_rounds == 2
    rng = np.random.default_rng(11)
    for m, k, n in [(2, 3, 4), (5, 1, 2)]:
        a = [rng.integers(0, 1 << 64, (m, k), dtype=U64) for _ in range(2)]
        b = [rng.integers(0, 1 << 64, (k, n), dtype=U64) for _ in range(2)]
        res, rounds = run_local(
            {
                "alice": he_cross_terms(
                    "bob", a[0], b[0], Prg(bytes(32)), leader=True, keys=keys["alice"]
                ),
                "bob": he_cross_terms(
                    "alice", a[1], b[1], Prg(bytes([2]) * 32), leader=False, keys=keys["bob"]
                ),
            }
        )
        assert rounds == 2 * len(primes_for(k))
        with np.errstate(over="ignore"):
            assert np.array_equal(res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]))
