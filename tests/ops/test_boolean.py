"""Boolean circuits (MSB, A2B, B2A) on both protocols, against plaintext numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mpcactors.ops import _boolean as B
from mpcactors.ops._millionaire import millionaire_rounds
from mpcactors.ops._ring import to_ring

from ._fixtures import A2B_ROUNDS, MSB_ROUNDS, MUL_ROUNDS, PROTOCOLS, Harness

EDGES = np.array(
    [
        0,
        1,
        -1,
        2,
        -2,
        2**62,
        -(2**62),
        2**63 - 1,
        -(2**63),
        2**63 - 2,
        -(2**63) + 1,
        2**32,
        -(2**32),
    ],
    dtype=np.int64,
)


def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64, endpoint=True)
    k = min(n, len(EDGES))
    x[:k] = EDGES[:k]
    small = rng.integers(-(2**20), 2**20, size=n // 4)  # carries through long runs of equal bits
    x[len(EDGES) : len(EDGES) + len(small)] = small
    return x


@pytest.fixture(params=PROTOCOLS, scope="module")
def h(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def test_reduce_summands_round_count() -> None:
    assert B.carry63_rounds(2) == 6
    assert B.carry63_rounds(3) == 7
    assert B.carry63_rounds(4) == 8


def test_rev6_is_the_index_bit_reversal() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**64, size=3000, dtype=np.uint64, endpoint=False)
    bits = (x[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    rev = np.array([int(f"{i:06b}"[::-1], 2) for i in range(64)])
    want = np.zeros_like(x)
    for i in range(64):
        want |= bits[:, i] << np.uint64(rev[i])
    assert np.array_equal(B._rev6(x), want)
    assert np.array_equal(B._rev6(B._rev6(x)), x)


@pytest.mark.parametrize("shape", [(1000,), (7, 13), (), (0,), (64,), (65,)])
def test_msb_exact(h: Harness, shape: tuple[int, ...]) -> None:
    n = int(np.prod(shape, dtype=np.int64))
    x = _values(max(n, 1), n)[:n].reshape(shape)
    res, rounds = h.run(B.msb, h.share_ring(to_ring(x)))
    assert rounds == MSB_ROUNDS[h.name]
    assert res[h.owner].kind == "bool"
    got = h.open_ring(res)
    assert got.shape == shape
    assert np.array_equal(got, (x < 0).astype(np.uint64))


def test_msb_wrong_result_would_be_seen(h: Harness) -> None:
    """The check above can fail: flipping a result bit at one party changes the opened value."""
    x = _values(200, 3)
    res, _ = h.run(B.msb, h.share_ring(to_ring(x)))
    p = h.owner
    res[p].parts[0][5] ^= np.uint64(1)
    if len(res[p].parts) > 1:  # rep3: keep the replicated copy consistent
        prev = h.parties[(h.parties.index(p) - 1) % len(h.parties)]
        res[prev].parts[1][5] ^= np.uint64(1)
    assert not np.array_equal(h.open_ring(res), (x < 0).astype(np.uint64))


def test_a2b_exact(h: Harness) -> None:
    x = _values(3000, 1).reshape(30, 100)
    res, rounds = h.run(B.a2b, h.share_ring(to_ring(x)))
    assert rounds == A2B_ROUNDS[h.name]
    assert np.array_equal(h.open_ring(res), to_ring(x))


def test_b2a_exact(h: Harness) -> None:
    x = to_ring(_values(2000, 2))
    res, rounds = h.run(B.b2a, h.share_ring(x, kind="bool"))
    assert rounds == MUL_ROUNDS[h.name]
    assert res[h.owner].kind == "arith"
    assert np.array_equal(h.open_ring(res), x)
    low, _ = h.run(lambda c, p, s: B.b2a(c, p, s, nbits=12), h.share_ring(x, kind="bool"))
    assert np.array_equal(h.open_ring(low), x & np.uint64(0xFFF))


def test_a2b_then_b2a_roundtrip(h: Harness) -> None:
    x = to_ring(_values(500, 4))

    def both(ctx, proto, s):  # type: ignore[no-untyped-def]
        b = yield from B.a2b(ctx.child(0), proto, s)
        return (yield from B.b2a(ctx.child(1), proto, b))

    res, _ = h.run(both, h.share_ring(x))
    assert np.array_equal(h.open_ring(res), x)


@pytest.mark.parametrize("holders", [3, 4])
def test_msb_with_more_summands_semi2k(holders: int) -> None:
    """n-holder semi2k has n A2B summands: carry-save layers first, one round each."""
    parties = [f"p{i}" for i in range(holders)] + ["dealer"]
    hh = Harness("semi2k", parties, dealer="dealer")
    x = _values(1000, holders)
    res, rounds = hh.run(B.msb, hh.share_ring(to_ring(x)))
    assert rounds == B.carry63_rounds(holders)
    assert np.array_equal(hh.open_ring(res), (x < 0).astype(np.uint64))
    res, rounds = hh.run(B.a2b, hh.share_ring(to_ring(x)))
    assert np.array_equal(hh.open_ring(res), to_ring(x))


def test_reference_protocol_agrees() -> None:
    """The test-only reference protocol runs the same circuits (2 and 5 parties)."""
    for parties in (("a", "b"), ("a", "b", "c", "d", "e")):
        hh = Harness("reference", parties)
        x = _values(700, 5)
        res, rounds = hh.run(B.msb, hh.share_ring(to_ring(x)))
        assert rounds == B.carry63_rounds(len(parties))
        assert np.array_equal(hh.open_ring(res), (x < 0).astype(np.uint64))


@pytest.mark.parametrize("bits", [2, 4, 8, 16, 32])
def test_short_msb_exact_in_range(h: Harness, bits: int) -> None:
    """Lanes of `bits` bits: the sign of any |x| < 2^(bits-1), in log2(bits) AND rounds (two
    holders without a dealer: the millionaires' protocol for `bits`)."""
    lim = 2 ** (bits - 1)
    x = np.random.default_rng(bits).integers(-lim, lim, size=(300, 7))
    x[0, :4] = [0, -1, lim - 1, -lim]
    res, rounds = h.run(lambda c, p, s: B.msb(c, p, s, bits=bits), h.share_ring(to_ring(x)))
    holders = 3 if h.name == "rep3" else 2
    if h.name == "semi2k-ot":
        assert rounds == millionaire_rounds(bits)
    else:
        assert rounds == MUL_ROUNDS[h.name] * B.carry63_rounds(holders, bits)  # every round ANDs
    assert np.array_equal(h.open_ring(res), (x < 0).astype(np.uint64))


def test_short_msb_rejects_other_widths(h: Harness) -> None:
    with pytest.raises(ValueError, match="power of two"):
        h.run(lambda c, p, s: B.msb(c, p, s, bits=12), h.share_ring(to_ring(np.arange(3))))
