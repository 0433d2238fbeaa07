"""The millionaires' protocol (``_millionaire.py``): semi2k without a dealer, two holders.

Results against numpy on random and edge shares (the holders' parts chosen directly, so the
carries of equal chunks are hit on purpose), every ``bits`` and chunk width, the round count,
``msb``'s dispatch, and alice's view: the leaf words bob sends her as OT sender are padded, so
their pairs are uniform to her; two distinguishers (the one-hot ``eq`` pattern of an unpadded
word, and words that repeat when bob's input is fixed) are at chance for the protocol and catch
a variant without pads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpcactors.ops import _boolean as B
from mpcactors.ops import _millionaire as M
from mpcactors.ops._comm import Exchange, Step
from mpcactors.ops._context import OpContext
from mpcactors.ops._protocol import Protocol
from mpcactors.ops._ring import to_ring
from mpcactors.ot import OtError

from ._fixtures import Harness
from .conftest import recording

U64 = np.uint64
EDGES = np.array([0, -1, 2**63 - 1, -(2**63), 1, -2, 2**62, -(2**62)], dtype=np.int64)


@pytest.fixture(scope="module")
def h() -> Harness:
    return Harness("semi2k-ot")


def _step(ctx: OpContext, proto: Protocol, part: np.ndarray, bits: int, m: int) -> Step[np.ndarray]:
    return (yield from M.millionaire_msb(ctx, proto._source(ctx), part, bits, m))  # type: ignore[attr-defined]


def _run(h: Harness, x0: np.ndarray, x1: np.ndarray, bits: int, m: int = M.CHUNK_BITS) -> tuple[np.ndarray, int]:
    """The holders' parts given directly; (XOR of the two output shares, rounds)."""
    out, rounds = h.run(_step, {"alice": x0, "bob": x1}, bits, m)
    for p in ("alice", "bob"):
        assert out[p].shape == x0.shape and out[p].dtype == U64
        assert np.all(out[p] <= U64(1))  # every word 0 or 1
    return out["alice"] ^ out["bob"], rounds


def _want(x0: np.ndarray, x1: np.ndarray, bits: int) -> np.ndarray:
    return ((x0 + x1) >> U64(bits - 1)) & U64(1)  # sign of the low `bits` bits of the sum


def _parts(n: int, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random parts plus edge sums (0, -1, extremes) and sums whose low bits-1 bits make every
    chunk equal (x0' + x1' = 2^q - 1: no carry) or just carry (2^q, 2^q + 1, 2^q - 2)."""
    g = np.random.default_rng(seed)
    x0 = g.integers(0, 2**64, size=n, dtype=np.uint64)
    x1 = g.integers(0, 2**64, size=n, dtype=np.uint64)
    edge = to_ring(EDGES)
    x1[: edge.size] = edge - x0[: edge.size]
    q = bits - 1
    low = U64((1 << q) - 1)
    j = edge.size + np.arange(5)  # x1 = 2^q - 1 - x0' + d + 2^q r: x0' + x1' around 2^q
    d = to_ring(np.array([-1, 0, 1, 2, -2]))
    x1[j] = (low - (x0[j] & low)) + d + (g.integers(0, 2**64, size=5, dtype=np.uint64) << U64(q))
    x0[-4:] = x0[-8:-4]  # equal parts
    x1[-4:] = x0[-4:]
    return x0, x1


@pytest.mark.parametrize("bits", range(2, 65))
def test_agrees_with_numpy_for_every_width(h: Harness, bits: int) -> None:
    x0, x1 = _parts(300, bits, bits)
    got, rounds = _run(h, x0, x1, bits)
    np.testing.assert_array_equal(got, _want(x0, x1, bits))
    assert rounds == M.millionaire_rounds(bits)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("bits", [2, 7, 33, 64])
def test_every_chunk_width(h: Harness, m: int, bits: int) -> None:
    x0, x1 = _parts(1000, bits, 100 * m + bits)
    got, rounds = _run(h, x0, x1, bits, m)
    np.testing.assert_array_equal(got, _want(x0, x1, bits))
    assert rounds == M.millionaire_rounds(bits, m)


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7, 13), (129,)])
def test_shapes_keep_the_round_structure(h: Harness, shape: tuple[int, ...]) -> None:
    g = np.random.default_rng(len(shape))
    x0 = g.integers(0, 2**64, size=shape, dtype=np.uint64)
    x1 = g.integers(0, 2**64, size=shape, dtype=np.uint64)
    got, rounds = _run(h, x0, x1, 64)
    assert got.shape == shape
    np.testing.assert_array_equal(got, _want(x0, x1, 64))
    assert rounds == M.millionaire_rounds(64) == 6


def test_a_wrong_share_would_be_seen(h: Harness) -> None:
    x0, x1 = _parts(200, 64, 7)
    got, _ = _run(h, x0, x1, 64)
    got[3] ^= U64(1)
    assert not np.array_equal(got, _want(x0, x1, 64))


def test_msb_dispatches_to_the_millionaire_without_a_dealer(h: Harness) -> None:
    x = np.concatenate([EDGES, np.random.default_rng(3).integers(-(2**63), 2**63 - 1, 1000)])
    res, rounds = h.run(B.msb, h.share_ring(to_ring(x)))
    assert rounds == M.millionaire_rounds(64)
    assert res["alice"].kind == "bool"
    np.testing.assert_array_equal(h.open_ring(res), (x < 0).astype(U64))


def test_rejects_bad_widths(h: Harness) -> None:
    with pytest.raises(ValueError, match="bits must be in 2..64"):
        h.run(_step, np.zeros(3, dtype=U64), 65, 4)
    with pytest.raises(ValueError, match="chunk bits"):
        h.run(_step, np.zeros(3, dtype=U64), 64, 6)


# ---- alice's view ---------------------------------------------------------------------------


def _leaf_words(h: Harness, bob_part: np.ndarray) -> list[np.ndarray]:
    """The leaf words alice receives from bob (bob the OT sender of the upper half)."""
    seen: list[Any] = []

    def step(ctx: OpContext, proto: Protocol, part: np.ndarray) -> Step[np.ndarray]:
        inner = _step(ctx, proto, part, 64, 4)
        return (yield from (recording(inner, seen) if ctx.party == "alice" else inner))

    alice = np.random.default_rng(5).integers(0, 2**64, size=bob_part.shape, dtype=np.uint64)
    h.run(step, {"alice": alice, "bob": bob_part})
    (words,) = [m for m in seen if isinstance(m, tuple)]
    return [np.asarray(w, dtype=U64) for w in words[:-1]]  # the 4-bit chunks (the top has 3)


def _one_hot_eq(words: list[np.ndarray]) -> float:
    """How often the 16 eq bits of a word (bits 2v + 1) have exactly one odd one out, the
    pattern of ``[a_j == v] ^ r_eq`` in the clear (chance 32 / 2^16)."""
    hits = []
    odd = U64(2) * np.arange(16, dtype=U64) + U64(1)
    for w in words:
        eq_bits = ((w[:, None] >> odd) & U64(1)).sum(axis=1)
        hits.append((eq_bits == 1) | (eq_bits == 15))
    return float(np.mean(hits))


def _repeats(words: list[np.ndarray]) -> float:
    """With bob's input one fixed value: how often a chunk's word, relative to its pair 0
    (which removes the sender's output bits r_lt, r_eq), is the chunk's most common one
    (chance ~2048 / 2^30: 1 / 2048 for the count of one)."""
    out = []
    for w in words:
        rel = w ^ ((w & U64(1)) * U64(0x55555555)) ^ (((w >> U64(1)) & U64(1)) * U64(0xAAAAAAAA))
        _, counts = np.unique(rel, return_counts=True)
        out.append(counts.max() / w.size)
    return float(np.mean(out))


def test_alice_sees_uniform_leaf_words(h: Harness) -> None:
    bob = np.full(4096, 0x0123456789ABCDEF, dtype=U64)  # one fixed input: a padless word repeats
    words = _leaf_words(h, bob)
    assert _one_hot_eq(words) < 0.005  # chance 0.0005
    assert _repeats(words) < 0.01  # 1 / 2048


def test_distinguishers_catch_unpadded_leaf_words(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "_pad_word", lambda k0, k1, sel: np.zeros_like(k0))
    bob = np.full(4096, 0x0123456789ABCDEF, dtype=U64)
    words = _leaf_words(h, bob)
    assert _one_hot_eq(words) > 0.99  # measured 1.0
    assert _repeats(words) > 0.99  # measured 1.0: the word is a function of bob's input


def test_malformed_leaf_words_raise_ot_error_naming_the_peer(h: Harness) -> None:
    def step(ctx: OpContext, proto: Protocol, part: np.ndarray) -> Step[Any]:
        if ctx.party == "alice":
            return (yield from _step(ctx, proto, part, 64, 4))
        gen = _step(ctx, proto, part, 64, 4)  # bob runs the OTs, then sends garbage words
        ex = next(gen)
        reply = yield ex
        while True:
            ex = gen.send(reply)
            if isinstance(ex.send.get("alice"), tuple):
                yield Exchange(send={"alice": (np.zeros(3, dtype=U64),)}, recv=frozenset({"alice"}))
                return None
            reply = yield ex

    with pytest.raises(OtError, match="leaf word arrays from 'bob'"):
        h.run(step, np.zeros(10, dtype=U64))
