"""Elementwise triples by lattice HE (mpcactors/ops/_he_simd.py; ``mul_triples``, issue 12).

The arithmetic mod the plaintext primes and the CRT are checked against Python integers; the
protocol runs both holders through ``run_local`` with TenSEAL (the ``he`` extra, which the test
install includes) and is checked against numpy mod 2^64; then the route: products agree with
numpy in ``simulate`` when HE is forced, ``auto`` picks HE for big arrays only, and the setting
is a checked config key the parties must agree on (with matrix_triples, in test_he_matmul.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors.ops import _he_simd as hs
from mpcactors.ops import _he_triples as he
from mpcactors.ops._comm import run_local
from mpcactors.ops._he_seal import HeError
from mpcactors.ops._ot_triples import matrix_route, uses_he_mul
from mpcactors.ops._prg import Prg

U64 = np.uint64
# SEAL's four 45-bit batching primes for N = 8192 (= 1 mod 2N): the arithmetic's tests need no SEAL
PRIMES = (35184371089409, 35184371138561, 35184371417089, 35184371613697)
T = PRIMES[0]
needs_he = pytest.mark.skipif(not he.available(), reason="TenSEAL (the he extra) does not import")


def test_mulmod_matches_python_integers() -> None:
    assert pow(3, T - 1, T) == 1 and T % (2 * hs.DEGREE) == 1
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(0, T, 2000, dtype=U64), np.array([0, 1, T - 1, T - 2], dtype=U64)])
    for c in [0, 1, 2, T - 1, (1 << 64) % T, int(rng.integers(0, T))]:
        got = hs._mulmod(x, c, T)
        assert got.dtype == U64 and [int(v) for v in got] == [int(v) * c % T for v in x]


def test_uniform_residues_stay_below_the_prime_and_spread() -> None:
    r = hs._uniform_mod(Prg(bytes(32)), T, 100_000)
    assert r.dtype == U64 and int(r.max()) < T
    # the top and bottom eighths are both hit about an eighth of the time (a mod-2^64 slip would not)
    assert 0.11 < float(np.mean(r < T // 8)) < 0.14 and 0.11 < float(np.mean(r >= T - T // 8)) < 0.14


def test_crt_gives_the_low_word_even_next_to_zero_and_p() -> None:
    """v mod 2^64 from its residues, for random v and for v whose CRT fraction is within a hair
    of an integer (v near 0 and near P: the float sum alone could floor the wrong way)."""
    ts = PRIMES
    assert all(t % (2 * hs.DEGREE) == 1 and pow(2, t - 1, t) == pow(3, t - 1, t) == 1 for t in ts)
    p = math.prod(ts)
    rng = np.random.default_rng(2)
    vs = [int.from_bytes(rng.bytes(23), "little") % p for _ in range(500)]
    vs += [0, 1, 2, (1 << 64) - 1, 1 << 64, p - 1, p - 2, p - (1 << 64), p // 2]
    res = np.array([[v % t for v in vs] for t in ts], dtype=U64)
    got = hs._crt_low(res, ts)
    assert [int(g) for g in got] == [v % (1 << 64) for v in vs]


def test_the_flood_fits_up_to_2_to_the_27_elements_and_refuses_beyond() -> None:
    """The worst-case noise plus the flood stays below the data level's room (3/4 of Q / 2t)
    with the union bound over every flooded coefficient; far more elements would not fit."""
    t = 1 << hs._T_BITS
    for n in (1, 10**6, 1 << 27):
        bits = hs.flood_bits(n, t)
        assert bits >= (hs._noise_bound(t) * hs._units(n) * hs.DEGREE).bit_length() + he.SIGMA
        assert hs._noise_bound(t) + (1 << bits) < (1 << 179) // t // 2 // 4 * 3
        assert hs.fits(n)
    with pytest.raises(ValueError, match="needs a flood"):
        hs.flood_bits(1 << 28, t)
    assert not hs.fits(1 << 28) and not hs.fits(0)


def _operands(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1 << 64, n, dtype=U64) for _ in range(2)], [rng.integers(0, 1 << 64, n, dtype=U64) for _ in range(2)]


def _run(a: list[np.ndarray], b: list[np.ndarray], seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    return run_local(
        {
            "alice": hs.simd_cross("bob", True, a[0], b[0], Prg(bytes([seed]) * 32)),
            "bob": hs.simd_cross("alice", False, a[1], b[1], Prg(bytes([seed + 1]) * 32)),
        }
    )


def _want(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a[0] * b[1] + a[1] * b[0]


@needs_he
@pytest.mark.parametrize("n", [1, 7, hs.DEGREE + 3, 3 * hs.DEGREE])
def test_cross_terms_match_numpy(n: int) -> None:
    a, b = _operands(n, seed=n)
    res, rounds = _run(a, b, seed=n % 200)
    with np.errstate(over="ignore"):
        got = res["alice"] + res["bob"]
    assert got.dtype == U64 and got.shape == (n,)
    np.testing.assert_array_equal(got, _want(a, b))
    assert rounds == hs.simd_rounds(n) == 3
    for mine in res.values():  # each share alone is masked
        assert not np.any(mine == _want(a, b))


@needs_he
def test_what_the_key_holder_opens_is_spread_over_all_of_p(monkeypatch: pytest.MonkeyPatch) -> None:
    """v = x + r mod P with r uniform mod P: its residues are drawn independently per prime. A
    mask drawn as one 128-bit integer reduced mod each prime would leave v / P near 0 (x + r
    < 2^129), and v's high bits would show x's."""
    seen: list[np.ndarray] = []
    real = hs._crt_low

    def spy(res, ts):  # type: ignore[no-untyped-def]
        seen.append(res.copy())
        return real(res, ts)

    monkeypatch.setattr(hs, "_crt_low", spy)
    a, b = _operands(2 * hs.DEGREE, seed=5)
    _run(a, b)
    ts = tuple(c.t for c in hs.contexts())
    p = math.prod(ts)
    assert len(seen) == 4  # per holder: what it opened (v), its masks (r)
    for res in seen:
        v = [sum(int(res[j, i]) * (p // t) * pow(p // t, -1, t) for j, t in enumerate(ts)) % p for i in range(0, res.shape[1], 16)]
        frac = np.array([x / p for x in v])
        assert 0.4 < frac.mean() < 0.6 and frac.min() < 0.05 and frac.max() > 0.95


@needs_he
def test_extreme_words_and_zero_shares() -> None:
    """All-ones words, the signed boundary, zeros (a zero plaintext is skipped, not refused)."""
    edge = np.array([0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 63) + 1], dtype=U64)
    n = edge.size
    a = [edge, edge[::-1].copy()]
    for b in ([edge[::-1].copy(), edge], [np.zeros(n, U64), np.zeros(n, U64)]):
        res, _ = _run(a, b, seed=9)
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(res["alice"] + res["bob"], _want(a, b))


@needs_he
def test_chunks_span_several_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hs, "_CHUNK_UNITS", 3)
    monkeypatch.setattr(hs, "_FIRST_UNITS", 2)
    n = 2 * hs.DEGREE + 5  # holder 0: 2 batches, 8 units in chunks of 2, 3, 3; holder 1: 4 units, 2 + 2
    assert hs._chunks(8) == [(0, 2), (2, 5), (5, 8)] and hs._chunks(4) == [(0, 2), (2, 4)]
    a, b = _operands(n, seed=3)
    res, rounds = _run(a, b)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(res["alice"] + res["bob"], _want(a, b))
    assert rounds == hs.simd_rounds(n) == 3 + 2


def _budgets(monkeypatch: pytest.MonkeyPatch, theirs: np.ndarray, *, flood: bool) -> list[int]:
    """alice's view of what bob returns: the invariant noise budget of every evaluated
    ciphertext she decrypts, with bob's shares a_1 = b_1 = ``theirs``; measured before bob's mod
    switch (forced off: the switch is a public function of the flooded ciphertext)."""
    seen: list[int] = []
    real_open = hs._open

    def spy(k, files, peer, data, level):  # type: ignore[no-untyped-def]
        if peer == "bob":
            ct = files.load(k.c.seal.Ciphertext(k.c.ctx), k.c.ctx, bytes(data))
            seen.append(k.decryptor.invariant_noise_budget(ct))
        return real_open(k, files, peer, data, level)

    monkeypatch.setattr(hs, "_open", spy)
    monkeypatch.setattr(hs, "reply_drops", lambda c, bound, degree, shift: 0)
    if not flood:  # the deliberately broken variant: no smudging noise
        monkeypatch.setattr(hs, "_flood_maker", lambda prg, c, bits: lambda: np.zeros((len(c.qs), c.degree), U64))
    a, b = _operands(2 * hs.DEGREE, seed=8)
    _run([a[0], theirs], [b[0], theirs], seed=3)
    monkeypatch.undo()
    return seen


@needs_he
def test_the_key_holders_view_does_not_depend_on_the_evaluators_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """The noise of what alice decrypts is the flood's, whatever bob's shares: zero or uniform,
    her ciphertexts' noise budgets are the same. Without the flood (the broken variant) zero
    shares leave far more budget: the noise would tell them apart."""
    zero = np.zeros(2 * hs.DEGREE, dtype=U64)
    full = np.random.default_rng(9).integers(0, 1 << 64, 2 * hs.DEGREE, dtype=U64)
    flooded = [_budgets(monkeypatch, x, flood=True) for x in (zero, full)]
    assert len(flooded[0]) == len(flooded[1]) == 4  # alice holds the key for one batch, 4 primes
    assert max(abs(x - y) for x, y in zip(*flooded, strict=True)) <= 1
    bare = [_budgets(monkeypatch, x, flood=False) for x in (zero, full)]
    assert min(x - y for x, y in zip(*bare, strict=True)) >= 20
    assert min(bare[1]) > max(flooded[1]) + 20  # the flood dominates the products' noise


@needs_he
def test_replies_arrive_at_one_prime_and_the_bound_is_the_worst_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two of the three data primes are dropped (a third of the bytes) up to 2^24 elements; after
    the switches the flood and the rounding stay below q_0 / (2 t)."""
    for c in hs.contexts():
        for n in (1, 10**6, 1 << 24):
            bound = hs._noise_bound(c.t) + (1 << hs.flood_bits(n, c.t))
            assert he.reply_drops(c, bound, hs.DEGREE, 0) == 2
            after = -(-(-(-bound // c.qs[2]) + hs.DEGREE + 1) // c.qs[1]) + hs.DEGREE + 1
            assert after < c.qs[0] // c.t // 2 // 4 * 3
        # the biggest triples' floods leave room for one switch only (two primes returned)
        assert he.reply_drops(c, hs._noise_bound(c.t) + (1 << hs.flood_bits(1 << 27, c.t)), hs.DEGREE, 0) == 1
    levels: list[list[int]] = []
    real_open = hs._open

    def spy(k, files, peer, data, level):  # type: ignore[no-untyped-def]
        levels.append(list(files.load(k.c.seal.Ciphertext(k.c.ctx), k.c.ctx, bytes(data)).parms_id()))
        return real_open(k, files, peer, data, level)

    monkeypatch.setattr(hs, "_open", spy)
    a, b = _operands(5, seed=4)
    res, _ = _run(a, b)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(res["alice"] + res["bob"], _want(a, b))
    assert sorted(map(tuple, levels)) == sorted(tuple(c.level_parms_id(2)) for c in hs.contexts())


@needs_he
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda msg: {**msg, "a": (msg["a"][0], msg["a"][1][:-1])}, "ciphertexts from 'alice', expected"),
        (lambda msg: {**msg, "a": (msg["a"][0][:-1], msg["a"][1])}, "sizes add up to"),
        (
            lambda msg: {**msg, "a": (np.zeros(40 * msg["a"][1].size, np.uint8), np.full(msg["a"][1].size, 40, U64))},
            "not a valid SEAL object",
        ),
        (lambda msg: {**msg, "pk": [b"junk"] * 4}, "public key from 'alice' is not a valid"),
        (lambda msg: {**msg, "pk": b"junk"}, "'alice' sent no 4 public keys"),
        (lambda msg: [1, 2], "round 0 message from 'alice' is list"),
    ],
)
def test_a_malformed_message_is_an_error_naming_the_peer(bad, match: str) -> None:  # type: ignore[no-untyped-def]
    a, b = _operands(3, seed=1)
    alice = hs.simd_cross("bob", True, a[0], b[0], Prg(bytes(32)))
    bob = hs.simd_cross("alice", False, a[1], b[1], Prg(bytes([1]) * 32))
    to_bob = next(alice).send["bob"]
    next(bob)
    with pytest.raises(HeError, match=match):
        ex = bob.send({"alice": bad(to_bob)})
        if ex.meanwhile is not None:  # the ciphertexts are loaded when evaluated, while round 1 travels
            ex.meanwhile()


@needs_he
def test_a_ciphertext_at_another_level_is_refused() -> None:
    """A valid SEAL ciphertext that is not fresh at the data level (here: a reply-level one)."""
    c = hs.contexts()[0]
    k = hs._Keys(c)
    files = hs.Files()
    try:
        ct = k.encryptor.encrypt_symmetric(k.encode(np.arange(4, dtype=U64)))
        low = c.seal.Ciphertext(c.ctx)
        k.evaluator.mod_switch_to_next(files.load(c.seal.Ciphertext(c.ctx), c.ctx, files.save(ct)), low)
        with pytest.raises(HeError, match="from 'alice' is not a fresh one at the data level"):
            hs._load_fresh(k, files, "alice", files.save(low))
    finally:
        files.close()


# ---- the route -----------------------------------------------------------------------------------


@needs_he
@pytest.mark.parametrize("holders", [2, 3])
def test_products_by_he_agree_with_numpy(holders: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed-point and integer products, with and without a truncation; every elementwise
    triple goes by HE (counted) and no matrix triple does."""
    rng = np.random.default_rng(holders)
    x, y = rng.uniform(-30, 30, (50, 4)), rng.uniform(-30, 30, (50, 4))
    ints = np.arange(-20, 20)
    calls: list[int] = []
    real = hs.simd_cross

    def counted(peer, first, a, b, prg):  # type: ignore[no-untyped-def]
        calls.append(a.size)
        return real(peer, first, a, b, prg)

    monkeypatch.setattr(hs, "simd_cross", counted)
    parties = ["alice", "bob", "carol"][:holders]

    async def program(job):  # type: ignore[no-untyped-def]
        u, v = job.input("alice", x), job.input(parties[-1], y)
        n = job.input("bob", ints, dtype=int)
        return await job.reveal({"mul": u * v, "sq": u * u, "int": n * n})

    out = mpc.simulate(program, parties, protocol="semi2k", dealer="none", mul_triples="he", matrix_triples="ot")
    for got in out.values():
        np.testing.assert_allclose(got["mul"], x * y, atol=2e-3)
        np.testing.assert_allclose(got["sq"], x * x, atol=2e-3)
        np.testing.assert_array_equal(got["int"], ints * ints)
    assert calls and all(c in (200, 40) for c in calls)
    assert len(calls) % (holders * (holders - 1)) == 0 and calls.count(40) == holders * (holders - 1)


def test_auto_picks_he_for_big_arrays_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert uses_he_mul("auto", 10**6) and uses_he_mul("auto", 2 * 10**5)
    # small products stay on OT (a triple's keys and whole batches of 8192 slots cost more; the
    # holders' SEAL calls in one process share a GIL): a tie at ~10^5 in simulate
    for n in (1, 10_000, 1 << 15, 50_000, 10**5):
        assert not uses_he_mul("auto", n), n
    assert uses_he_mul("he", 1) and not uses_he_mul("ot", 10**6)
    assert not uses_he_mul("he", 1 << 40)  # the flood would not fit: OT even when HE is asked for
    monkeypatch.setattr(hs, "fits", lambda n: False)
    assert not uses_he_mul("he", 10)


def test_the_setting_is_checked_and_he_needs_tenseal(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(mpc.ConfigError, match=r"\[mul_triples\] mul_triples must be"):
        matrix_route("fhe", key="mul_triples")
    monkeypatch.setattr(he, "available", lambda: False)
    with pytest.raises(mpc.ConfigError, match=r"mul_triples = 'he' needs TenSEAL"):
        mpc.simulate(_nothing, protocol="semi2k", dealer="none", mul_triples="he")
    with pytest.raises(mpc.ConfigError, match=r"mul_triples must be"):
        mpc.simulate(_nothing, protocol="semi2k", dealer="none", mul_triples="HE")


async def _nothing(job):  # type: ignore[no-untyped-def]
    return None
