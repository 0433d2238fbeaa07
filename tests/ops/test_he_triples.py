"""HE cross terms of matrix triples (mpcactors/ops/_he_triples.py) against numpy mod 2^64.

The encoding, the 2^64 scale's halves and join, the reductions and the block plans are checked
in plain integers; the
protocol runs both holders through ``run_local`` with TenSEAL (the ``he`` extra, which the test
install includes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpcactors.ops import _he_triples as he
from mpcactors.ops._comm import run_local
from mpcactors.ops._he_triples import (
    SIGMA,
    BlockPlan,
    HeError,
    _a_polys,
    _b_polys,
    _blocks_to_matrix,
    _halves,
    _join,
    _reduce,
    _reduce_near,
    _wanted,
    flood_bits,
    he_cross_terms,
    he_rounds,
    plan_blocks,
)
from mpcactors.ops._prg import Prg

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


def _ints(words: np.ndarray) -> list[int]:
    return [sum(int(words[w, i]) << (64 * w) for w in range(words.shape[0])) for i in range(words.shape[1])]


def _lift(v: np.ndarray, t: int = he.PLAIN) -> list[int]:
    """SEAL's reading of plaintext coefficients: those at or above t / 2 are negative."""
    return [int(x) - t if int(x) >= (t + 1) // 2 else int(x) for x in v]


def test_halves_are_small_plaintexts_that_rebuild_the_word() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.integers(0, 1 << 64, 500, dtype=U64), np.array([0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1,
                        1 << 63, (1 << 64) - 1, (1 << 63) + (1 << 31)], dtype=U64)])
    lo, hi = _halves(x)
    assert lo.dtype == hi.dtype == U64 and (lo < he.PLAIN).all() and (hi < he.PLAIN).all()
    for lo_v, hi_v, want in zip(_lift(lo), _lift(hi), x.tolist(), strict=True):
        assert -(1 << 31) <= lo_v < 1 << 31 and -(1 << 31) <= hi_v < 1 << 31
        assert (lo_v + (hi_v << 32)) % (1 << 64) == want


def test_join_rebuilds_the_word_from_two_decryptions_whatever_the_rounding() -> None:
    """hi = round(M / 32) mod 2^59 may round either way at an exact half (the noise decides),
    lo = M mod 2^59: the join is M mod 2^64 in every case; a pair that is not of one M raises."""
    rng = np.random.default_rng(5)
    m = [int(v) for v in rng.integers(0, 1 << 64, 300, dtype=U64)] + [0, 16, 31, 32, (1 << 64) - 16, (1 << 64) - 1]
    mask59 = (1 << 59) - 1
    for up in (False, True):  # a half rounded down, or up
        hi = [((v >> 5) + (1 if (v & 31) > 16 or ((v & 31) == 16 and up) else 0)) & mask59 for v in m]
        lo = [v & mask59 for v in m]
        got = _join(np.array(hi, dtype=U64), np.array(lo, dtype=U64), "bob")
        assert [int(x) for x in got] == m
    with pytest.raises(HeError, match="from 'bob' does not decrypt consistently"):
        _join(np.array([5], dtype=U64), np.array([0], dtype=U64), "bob")


def test_low_table_holds_the_scaled_low_bits() -> None:
    if not he.available():
        pytest.skip("TenSEAL (the he extra) does not import")
    c = he.context()
    q = math.prod(c.qs)
    assert c.t == he.PLAIN and len(c.qs) == 4 and c.low_table.shape == (4, 1 << he.LOW_BITS)
    for v in (0, 1, 17, 31):
        exact = q * v / (1 << 64)
        for i, qi in enumerate(c.qs):
            got = int(c.low_table[i, v])
            assert got == round(q * v / 2**64) % qi or got == ((q * v + (1 << 63)) >> 64) % qi
            assert abs(((q * v + (1 << 63)) >> 64) - exact) <= 0.5


def test_reductions_rebuild_big_integers() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 1 << 64, (3, 200), dtype=U64)
    value = _ints(words)
    for q in ((1 << 60) - 16383, (1 << 60) - 163839, (1 << 59) + 55, 70368744177643):  # SEAL-like; far ones
        for bits in (192, 131, 64, 30, 7):
            want = [(v & ((1 << bits) - 1)) % q for v in value]
            assert [int(x) for x in _reduce_near(words, q, bits)] == want
            assert [int(x) for x in _reduce(words, q, bits)] == want


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


def test_block_sizes_are_every_ceiling_quotient() -> None:
    """The planner's candidates, found in O(sqrt d), are exactly {ceil(d / c) : c = 1 .. d}."""
    rng = np.random.default_rng(13)
    for d in [*range(1, 1200), *(int(x) for x in rng.integers(1200, 300000, 25)), 65536, 1 << 18]:
        assert he._sizes(d) == {-(-d // c) for c in range(1, d + 1)}, d


def test_plan_fits_the_ring_and_covers_the_matrices() -> None:
    for m, k, n in [(256, 256, 256), (1024, 1024, 1024), (5, 3000, 7), (1, 1, 20000)]:
        plan = plan_blocks(m, k, n)
        assert plan.mb * plan.kb * plan.nb + plan.kb - 1 <= he.DEGREE
        im, ik, jn = plan.counts
        assert im * plan.mb >= m and ik * plan.kb >= k and jn * plan.nb >= n
    assert plan_blocks(3, 4, 5) == BlockPlan(3, 4, 5, 3, 4, 5)


def test_the_flood_fits_up_to_1024_cubed_and_refuses_beyond() -> None:
    """F >= 2^40 x noise bound x flooded coefficients, and 32 (B + F) below Q / (2 t) (module doc)."""
    plan = plan_blocks(1024, 1024, 1024)
    bits = flood_bits(plan)
    im, ik, jn = plan.counts
    noise = 22 * ik * plan.kb * plan.nb * (1 << 31) * ((1 << 32) + 1)  # (eta + 1) ||b_half||_1 (2^32 + 1)
    assert 1 << bits >= noise * im * jn * he.DEGREE << SIGMA
    assert ((1 << bits) + noise) * 32 < (1 << (he.DATA_BITS - 1)) // he.PLAIN // 2
    with pytest.raises(ValueError, match="needs a flood"):  # k = 2^30, m = n = 2^20
        flood_bits(BlockPlan(1, 1 << 14, 1, 1 << 20, 1 << 30, 1 << 20))


pytestmark_he = pytest.mark.skipif(not he.available(), reason="TenSEAL (the he extra) does not import")


def _run(a: list[np.ndarray], b: list[np.ndarray], seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    return run_local(
        {
            "alice": he_cross_terms("bob", a[0], b[0], Prg(bytes([seed]) * 32)),
            "bob": he_cross_terms("alice", a[1], b[1], Prg(bytes([seed + 1]) * 32)),
        }
    )


def _operands(m: int, k: int, n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return (
        [rng.integers(0, 1 << 64, (m, k), dtype=U64) for _ in range(2)],
        [rng.integers(0, 1 << 64, (k, n), dtype=U64) for _ in range(2)],
    )


@pytestmark_he
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (7, 33, 5), (40, 90, 70), (1, 300, 1)])
def test_cross_terms_match_numpy(m: int, k: int, n: int) -> None:
    a, b = _operands(m, k, n, seed=m + n)
    res, rounds = _run(a, b, seed=m)
    got = res["alice"] + res["bob"]
    assert got.dtype == U64 and got.shape == (m, n)
    with np.errstate(over="ignore"):
        assert np.array_equal(got, _mm(a[0], b[1]) + _mm(a[1], b[0]))
    assert rounds == he_rounds(m, k, n) == 3
    for mine in res.values():  # each half alone is masked
        assert not np.any(mine == _mm(a[0], b[1])) and not np.any(mine == _mm(a[1], b[0]))


@pytestmark_he
def test_chunks_span_several_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A's ciphertexts go in chunks of block rows (the peer evaluates chunk u - 1 in round u)."""
    plan = plan_blocks(20000, 3, 2)
    monkeypatch.setattr(he, "_CHUNK_BYTES", plan.counts[1] * he._CT_BYTES)  # one block row per round
    a, b = _operands(20000, 3, 2, seed=4)  # m > N: at least two block rows
    assert plan.counts[0] >= 2
    res, rounds = _run(a, b)
    assert rounds == plan.counts[0] + 2 == he_rounds(20000, 3, 2)
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]))


@pytestmark_he
def test_a_long_block_row_goes_in_parts_along_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where one block row of A is more than a chunk (big k), it travels in parts; the evaluator
    sums their products and returns the row's blocks with its last part."""
    monkeypatch.setattr(he, "_CHUNK_BYTES", 3 * he._CT_BYTES)  # three A blocks per round
    m, k, n = 20, 2000, 5
    plan = plan_blocks(m, k, n)
    im, ik, _ = plan.counts
    units = he._chunks(plan)
    assert ik > 3 and ik % 3 and all(hi - lo == 1 and l1 - l0 <= 3 for lo, hi, l0, l1 in units)  # a short last part
    assert [(lo, l0) for lo, _, l0, _ in units] == [(r, l0) for r in range(im) for l0 in range(0, ik, 3)]
    a, b = _operands(m, k, n, seed=12)
    res, rounds = _run(a, b)
    assert rounds == len(units) + 2 == he_rounds(m, k, n)
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]))


def test_no_chunk_holds_more_than_its_bytes() -> None:
    """Big-k shapes whose single block row is hundreds of MB are cut along k."""
    per = he._CHUNK_BYTES // he._CT_BYTES
    for m, k, n in [(1, 10000, 100000), (8, 16384, 20000), (1024, 1024, 1024), (100000, 10000, 1), (20000, 3, 2)]:
        plan = plan_blocks(m, k, n)
        im, ik, _ = plan.counts
        units = he._chunks(plan)
        assert all((hi - lo) * (l1 - l0) <= per for lo, hi, l0, l1 in units)
        covered = {(r, l) for lo, hi, l0, l1 in units for r in range(lo, hi) for l in range(l0, l1)}
        assert len(covered) == im * ik == sum((hi - lo) * (l1 - l0) for lo, hi, l0, l1 in units)


def _budgets(monkeypatch: pytest.MonkeyPatch, b1: np.ndarray, *, flood: bool) -> list[int]:
    """alice's view of what bob returns: the invariant noise budget (log2 of Delta / noise) of
    every evaluated ciphertext she decrypts, with bob's share of B = ``b1``.

    Measured at the data level, before the mod switch bob applies to the flooded block
    (``reply_drops`` forced to 0): the switched block is a public function of this one, so a
    view independent of B here is one after the switch too; and the switch's own rounding
    would blur the noise this test reads."""
    seen: list[int] = []
    real_open = he._open

    def spy(me: he._Holder, files: he.Files, peer: str, data: bytes, pos: np.ndarray, level: list[int]) -> np.ndarray:
        if peer == "bob":
            c = me.c
            ct = files.load(c.seal.Ciphertext(c.ctx), c.ctx, bytes(data))
            for _ in range(he.LOW_BITS):
                me.evaluator.add_inplace(ct, ct)
            seen.append(me.decryptor.invariant_noise_budget(ct))
        return real_open(me, files, peer, data, pos, level)

    monkeypatch.setattr(he, "_open", spy)
    monkeypatch.setattr(he, "reply_drops", lambda c, bound, degree=he.DEGREE: 0)
    if not flood:  # the deliberately broken variant: no smudging noise
        monkeypatch.setattr(he, "_flood_maker", lambda prg, c, bits: lambda: np.zeros((len(c.qs), he.DEGREE), U64))
    a, b = _operands(20, 30, 10, seed=8)
    _run([a[0], a[1]], [b[0], b1], seed=3)
    monkeypatch.undo()
    return seen


@pytestmark_he
def test_the_key_holders_view_does_not_depend_on_the_evaluators_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """The noise of what alice decrypts is the flood's, whatever bob's B: with B_bob = 0 and
    with B_bob uniform her ciphertexts' noise budgets are the same. Without the flood (the
    broken variant) a zero B_bob leaves ~40 bits more budget: the noise would tell B apart."""
    zero = np.zeros((30, 10), dtype=U64)
    full = np.random.default_rng(9).integers(0, 1 << 64, (30, 10), dtype=U64)
    flooded = [_budgets(monkeypatch, x, flood=True) for x in (zero, full)]
    assert len(flooded[0]) == len(flooded[1]) > 0
    assert max(abs(x - y) for x, y in zip(*flooded, strict=True)) <= 1
    bare = [_budgets(monkeypatch, x, flood=False) for x in (zero, full)]
    assert min(x - y for x, y in zip(*bare, strict=True)) >= 20
    assert min(bare[1]) > max(flooded[1]) + 20  # the flood dominates the product's noise


@pytestmark_he
def test_reply_drops_keeps_decryption_exact_in_the_worst_case() -> None:
    """The evaluated blocks drop two of the four data primes (half the bytes) at every shape up
    to 1024^3, and the bound behind it is the worst case: after the switches the flood and the
    rounding, doubled five times, stay below Q' / (2 t) with margin; one more would not."""
    c = he.context()
    for m, k, n in [(20, 30, 10), (256, 256, 256), (1024, 1024, 1024)]:
        plan = plan_blocks(m, k, n)
        bound = he._noise_bound(plan) + (1 << flood_bits(plan))
        assert he.reply_drops(c, bound) == 2
        after = -(-(-(-bound // c.qs[3]) + he.DEGREE + 1) // c.qs[2]) + he.DEGREE + 1
        assert 32 * after < c.qs[0] * c.qs[1] // c.t // 2 // 2  # < Q' / (2 t), with a factor 2 to spare
        assert 32 * (-(-after // c.qs[1]) + he.DEGREE + 1) > c.qs[0] // c.t // 2  # a third switch would not fit
    assert he.reply_drops(c, 1 << 250) == 0  # a noise near the headroom: no switch at all
    assert he.reply_drops(c, 1) == 2  # N + 1 of rounding never fits one 60-bit prime over 32 t


@pytestmark_he
def test_evaluated_blocks_arrive_mod_switched(monkeypatch: pytest.MonkeyPatch) -> None:
    """What alice opens is at the level two switches below the data level (and is exact)."""
    levels: list[list[int]] = []
    real_open = he._open

    def spy(me: he._Holder, files: he.Files, peer: str, data: bytes, pos: np.ndarray, level: list[int]) -> np.ndarray:
        c = me.c
        levels.append(list(files.load(c.seal.Ciphertext(c.ctx), c.ctx, bytes(data)).parms_id()))
        return real_open(me, files, peer, data, pos, level)

    monkeypatch.setattr(he, "_open", spy)
    a, b = _operands(20, 30, 10, seed=4)
    res, _ = _run(a, b)
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]))
    assert levels and all(x == he.context().level_parms_id(2) for x in levels)


@pytestmark_he
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda msg: {**msg, "a": (msg["a"][0], msg["a"][1][:-1])}, "ciphertexts from 'alice', expected"),
        (lambda msg: {**msg, "a": (msg["a"][0][:-1], msg["a"][1])}, "sizes add up to"),
        (
            lambda msg: {**msg, "a": (np.zeros(40 * msg["a"][1].size, np.uint8), np.full(msg["a"][1].size, 40, U64))},
            "not a valid SEAL object",
        ),
        (lambda msg: {**msg, "pk": b"junk"}, "public key from 'alice' is not a valid"),
        (lambda msg: {**msg, "a": [7, 7]}, r"is not a \(uint8 blob, uint64 sizes\) pair"),
        (lambda msg: [1, 2], "round 0 message from 'alice' is list"),
    ],
)
def test_a_malformed_message_is_an_error_naming_the_peer(bad, match: str) -> None:  # type: ignore[no-untyped-def]
    a, b = _operands(3, 4, 2, seed=1)
    alice = he_cross_terms("bob", a[0], b[0], Prg(bytes(32)))
    bob = he_cross_terms("alice", a[1], b[1], Prg(bytes([1]) * 32))
    to_bob = next(alice).send["bob"]
    next(bob)
    with pytest.raises(HeError, match=match):
        ex = bob.send({"alice": bad(to_bob)})
        if ex.meanwhile is not None:  # the ciphertexts are loaded when evaluated, while round 1 travels
            ex.meanwhile()


@pytestmark_he
def test_a_blocks_travel_seeded_and_decrypt_to_all_64_bits() -> None:
    """An A block is SEAL's seeded ciphertext of the high bits with the low bits added to c_0
    (half a whole ciphertext's bytes); it decrypts, at the scale Q / 2^64, to every bit of A."""
    c = he.context()
    files = he.Files()
    try:
        me = he._Holder(c)
        x = np.random.default_rng(6).integers(0, 1 << 64, he.DEGREE, dtype=U64)
        x[:4] = [0, 31, 1 << 63, (1 << 64) - 1]
        (data,) = he._encrypt_rows(me, files, x.reshape(1, 1, -1))
        assert len(data) < 0.51 * 2 * len(c.qs) * he.DEGREE * 8
        ct = files.load(c.seal.Ciphertext(c.ctx), c.ctx, data)
        assert ct.size() == 2 and list(ct.parms_id()) == c.parms_id
        pos = np.array([0, 1, 2, 3, 100, he.DEGREE - 1])
        got = he._open(me, files, "alice", data, pos, c.parms_id)
        assert [int(v) for v in got] == [int(v) for v in x[pos]]
    finally:
        files.close()


@pytestmark_he
@pytest.mark.parametrize("case", ["zero B", "small B", "all ones", "halves at 2^31"])
def test_extreme_operands(case: str) -> None:
    """Zero blocks (SEAL refuses a product with a zero plaintext: skipped), a B whose high halves
    are all zero, words of all ones and halves exactly at the signed boundary."""
    m, k, n = 9, 17, 6
    a, b = _operands(m, k, n, seed=11)
    if case == "zero B":
        b[1] = np.zeros((k, n), dtype=U64)
    elif case == "small B":
        b = [x >> np.uint64(33) for x in b]
    elif case == "all ones":
        a = [np.full((m, k), (1 << 64) - 1, dtype=U64)] * 2
        b = [np.full((k, n), (1 << 64) - 1, dtype=U64)] * 2
    else:
        a = [np.full((m, k), 1 << 63, dtype=U64)] * 2
        b = [np.full((k, n), (1 << 32) + (1 << 31), dtype=U64)] * 2
    res, _ = _run(a, b, seed=5)
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], _mm(a[0], b[1]) + _mm(a[1], b[0]))
