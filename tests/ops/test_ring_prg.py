"""ring_matmul against exact Python integers, the PRG and its per-op streams, seed agreement."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcactors._errors import ConfigError, ProtocolError, ShapeError
from mpcactors.ops import _matmul
from mpcactors.ops._comm import run_local
from mpcactors.ops._context import OpContext
from mpcactors.ops._matmul import matmul_shape, ring_matmul
from mpcactors.ops._prg import Prg
from mpcactors.ops._seeds import agree_seeds

MOD = 1 << 64


def exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product with Python ints (object arrays), reduced mod 2^64."""
    return np.matmul(a.astype(object), b.astype(object)) % MOD


def rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64)


# ---- ring_matmul ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sa, sb",
    [
        ((70, 600), (600, 50)),  # K above the 256 / 512 blocks, one limb path
        ((9, 3000), (3000, 7)),  # K above every block size (2730)
        ((2, 3, 40, 80), (80, 30)),  # stacked, broadcast
        ((3000,), (3000, 130)),  # 1-D left
        ((130, 2100), (2100,)),  # 1-D right
        ((5000,), (5000,)),  # 1-D @ 1-D -> 0-d (small: numpy's integer loop)
    ],
)
def test_ring_matmul_is_exact(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(sa) + sum(sb))
    a, b = rand(rng, sa), rand(rng, sb)
    got = ring_matmul(a, b)
    want = exact(a, b)
    assert got.dtype == np.uint64 and got.shape == np.shape(want)
    assert np.array_equal(got.astype(object), want)


def test_ring_matmul_worst_case_limbs() -> None:
    """All-ones words maximise every limb product: the sums must still be exact."""
    a = np.full((16, 3000), MOD - 1, dtype=np.uint64)  # 16 x 3000 x 8: on the limb path
    b = np.full((3000, 8), MOD - 1, dtype=np.uint64)
    assert np.array_equal(ring_matmul(a, b).astype(object), exact(a, b))
    a[:, ::2] = (1 << 22) - 1  # the largest low limb, high limbs zero
    assert np.array_equal(ring_matmul(a, b).astype(object), exact(a, b))


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(0, 6),
    k=st.integers(0, 6),
    n=st.integers(0, 6),
    data=st.data(),
)
def test_small_ring_matmul_matches_numpy(m: int, k: int, n: int, data: st.DataObject) -> None:
    """Tiny and empty shapes, through numpy's loop and (threshold 0) through the limb path."""
    el = st.integers(0, 2**64 - 1)
    a = data.draw(hnp.arrays(np.uint64, (m, k), elements=el))
    b = data.draw(hnp.arrays(np.uint64, (k, n), elements=el))
    np.testing.assert_array_equal(ring_matmul(a, b), a @ b)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_matmul, "_SMALL_WORK", 0)
        np.testing.assert_array_equal(ring_matmul(a, b), a @ b)


@pytest.mark.parametrize(
    "sa, sb, want",
    [
        ((3,), (3,), ()),
        ((2, 3), (3,), (2,)),
        ((3,), (3, 4), (4,)),
        ((5, 1, 2, 3), (4, 3, 6), (5, 4, 2, 6)),
    ],
)
def test_matmul_shape(sa: tuple[int, ...], sb: tuple[int, ...], want: tuple[int, ...]) -> None:
    assert matmul_shape(sa, sb) == want == np.matmul(np.zeros(sa), np.zeros(sb)).shape


@pytest.mark.parametrize(
    "sa, sb", [((), (3,)), ((2, 3), (2, 3)), ((2, 2, 3), (3, 3, 1)), ((4,), (3,))]
)
def test_matmul_shape_errors(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError):
        matmul_shape(sa, sb)


# ---- PRG and contexts -----------------------------------------------------------------------------------
def test_prg_is_the_aes_ctr_keystream() -> None:
    key = bytes(range(32))
    n = (1 << 17) + 3  # spans several internal chunks
    ref = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(8 * n))
    got = Prg(key).random_u64(n)
    assert got.tobytes() == ref and got.flags.writeable
    g = Prg(key)
    parts = [g.random_u64((2, 3)), g.random_u64(0), g.random_u64(()), g.random_u64(5)]
    assert b"".join(p.tobytes() for p in parts) == ref[: 8 * 12]
    assert parts[2].shape == ()


def test_prg_streams_agree_per_seed_key_whatever_else_is_drawn() -> None:
    """A dealer walks streams with several holders; each holder walks only its own."""
    seeds = {
        frozenset({"d", "a"}): b"1" * 32,
        frozenset({"d", "b"}): b"2" * 32,
        frozenset({"d"}): b"3" * 32,
    }
    dealer = OpContext("d", ("a", "b", "d"), seeds, (b"job", 1))
    a = OpContext("a", ("a", "b", "d"), {frozenset({"d", "a"}): b"1" * 32}, (b"job", 1))
    b = OpContext("b", ("a", "b", "d"), {frozenset({"d", "b"}): b"2" * 32}, (b"job", 1))
    d_a1, d_b1, d_priv, d_a2 = dealer.prg("a"), dealer.prg("b"), dealer.prg(), dealer.prg("a")
    assert d_a1.random_u64(4).tolist() == a.prg("d").random_u64(4).tolist()
    assert d_b1.random_u64(4).tolist() == b.prg("d").random_u64(4).tolist()
    assert d_a2.random_u64(4).tolist() == a.prg("d").random_u64(4).tolist()
    assert d_priv.random_u64(4).tolist() != dealer.child(0).prg("a").random_u64(4).tolist()
    with pytest.raises(KeyError, match="no seed"):
        a.prg("b")


# ---- seed agreement ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4])
def test_agree_seeds(n: int) -> None:
    parties = ["alice", "bob", "carol", "dave"][:n]
    seeds, rounds = run_local({p: agree_seeds(p, parties, b"job-7") for p in parties})
    assert rounds == 1
    everyone = frozenset(parties)
    for p in parties:
        keys = set(seeds[p])
        want = {frozenset({p}), everyone} | {frozenset({p, q}) for q in parties if q != p}
        assert keys == want
        assert all(isinstance(s, bytes) and len(s) == 32 for s in seeds[p].values())
        assert len(set(seeds[p].values())) == len(want)  # all distinct
    for p in parties:
        for q in parties:
            assert seeds[p][frozenset({p, q})] == seeds[q][frozenset({p, q})]
    assert len({seeds[p][everyone] for p in parties}) == 1
    # Seeds plug into OpContext and give the same streams at both ends.
    ctx = {p: OpContext(p, parties, seeds[p], (b"job-7", 0)) for p in parties}
    assert ctx["alice"].prg("bob").random_bytes(16) == ctx["bob"].prg("alice").random_bytes(16)


def test_seeds_are_fresh_per_run_and_bound_to_the_job() -> None:
    parties = ["alice", "bob"]
    one, _ = run_local({p: agree_seeds(p, parties, b"job-1") for p in parties})
    two, _ = run_local({p: agree_seeds(p, parties, b"job-1") for p in parties})
    key = frozenset(parties)
    assert one["alice"][key] != two["alice"][key]


def test_seed_agreement_rejects_bad_messages() -> None:
    step = agree_seeds("alice", ["alice", "bob"], b"j")
    next(step)
    with pytest.raises(ProtocolError, match="bob"):
        step.send({"bob": {"pk": b"short", "contrib": bytes(32)}})
    step = agree_seeds("alice", ["alice", "bob"], b"j")
    next(step)
    with pytest.raises(ProtocolError, match="bob"):
        step.send({"bob": [1, 2]})
    with pytest.raises(ConfigError):
        next(agree_seeds("zoe", ["alice", "bob"], b"j"))


@pytest.mark.parametrize(
    "protocol, dealer", [("rep3", None), ("semi2k", "carol"), ("semi2k", "trusted-first-party")]
)
def test_protocols_run_on_agreed_seeds(protocol: str, dealer: str | None) -> None:
    """Seeds from agree_seeds drive a share, a multiplication and a reveal end to end."""
    from mpcactors.ops._registry import make_protocol

    parties = ["alice", "bob", "carol"]
    seeds, _ = run_local({p: agree_seeds(p, parties, b"job-9") for p in parties})
    protos = {p: make_protocol(protocol, p, parties, dealer=dealer) for p in parties}
    x = np.array([-3, 4, 2**40], dtype=np.int64).view(np.uint64)

    def prog(p: str):  # type: ignore[no-untyped-def]
        ctx = OpContext(p, parties, seeds[p], (b"job-9", 1))
        sx = yield from protos[p].share(ctx.child(0), "alice", x if p == "alice" else None, None)
        sq = yield from protos[p].mul(ctx.child(1), sx, sx)
        return (yield from protos[p].reveal(ctx.child(2), sq))

    out, rounds = run_local({p: prog(p) for p in parties})
    assert rounds == 3
    for p in parties:
        np.testing.assert_array_equal(out[p], x * x)


def test_small_and_chunked_draws_read_one_keystream() -> None:
    """random_u64 takes small draws by one update() and big ones chunk by chunk: the same
    keystream either way, so a stream does not depend on how it is drawn."""
    from mpcactors.ops._prg import _SMALL, Prg

    key = bytes(range(32))
    a, b = Prg(key), Prg(key)
    pieces = [a.random_u64(3), a.random_u64((2, 5)), a.random_u64(_SMALL), a.random_u64(_SMALL + 1)]
    whole = b.random_u64(3 + 10 + 2 * _SMALL + 1)
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in pieces]), whole)
    assert pieces[1].shape == (2, 5) and pieces[1].flags.writeable
    assert a.random_u64(()).shape == () and a.random_u64(0).shape == (0,)


def test_stream_labels_encode_path_counter_and_parties() -> None:
    """The PRG label of an op's stream: its path, then the stream counter, then the parties."""
    from mpcactors.ops._context import OpContext, _label

    ctx = OpContext("alice", ["alice", "bob"], {frozenset({"alice", "bob"}): bytes(32)}, (b"job", 7, "x"))
    assert _label((b"job", 7, "x"), 1, frozenset({"bob", "alice"})) == (
        b"mpcactors/prg/v1" + b"b\x00\x00\x00\x03job" + b"i" + (7).to_bytes(8, "big") + b"s\x00\x00\x00\x01x"
        + b"c" + (1).to_bytes(8, "big") + b"p\x00\x00\x00\x05alice" + b"p\x00\x00\x00\x03bob"
    )
    from mpcactors.ops._prg import Prg, stream_key

    ctx.prg("bob")
    second = ctx.prg("bob").random_u64(4)
    expected = Prg(stream_key(bytes(32), _label((b"job", 7, "x"), 1, frozenset({"alice", "bob"})))).random_u64(4)
    np.testing.assert_array_equal(second, expected)
