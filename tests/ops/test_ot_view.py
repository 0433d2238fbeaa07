"""semi2k without a dealer: what a holder sees while the triples are made does not depend on the
other holder's shares.

alice's whole view of making a Beaver triple with bob is what bob sends her: the OT-extension matrix
``U`` (bob as receiver: his choice bits are the bits of his b) and the Gilboa corrections ``tau``
(bob as sender: masked sums with his a). Two distinguishers look for bob's secrets in it: the
agreement of every column of ``U`` with bob's bits, and how often ``tau`` equals bob's a in its
low byte. Both are at chance for the real protocol and catch deliberately broken variants: a
receiver whose GGM leaves coincide (the mask of ``U`` cancels) and a sender whose row hash
is zero (an unmasked Gilboa message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mpcactors.ops import _ot_engine as _ot
from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ops._matmul import ring_matmul
from mpcactors.ops._ot_engine import GILBOA_KEEP, Side, _pack_tau, _unpack_tau, ot_setup
from mpcactors.ops._ot_pairwise import PairwiseSource
from mpcactors.ops._ot_triples import OtSource
from mpcactors.ops._prg import Prg
from mpcactors.ot import OtError
from mpcactors.ot._softspoken import SoftReceiver

from .conftest import CONFIGS, Cluster, recording, ring, signed

N = 512  # triples: 64 N = 32768 correlated OTs each way


def _zero_hash(rows: np.ndarray, index: np.ndarray, out_blocks: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    if out is not None:
        out[...] = 0
        return out.view(np.uint8)
    return np.zeros((rows.shape[0], 16 * out_blocks), dtype=np.uint8)


def _triples(break_bob: Callable[[OtSource], None] | None) -> tuple[list[Any], list[np.ndarray], list[np.ndarray]]:
    """Make N triples; returns (alice's received payloads, alice's triple, bob's triple)."""
    c = Cluster(*CONFIGS["semi2k-2-ot"])
    pairs, _ = run_local({p: ot_setup(p, [q for q in c.parties if q != p], b"view") for p in c.parties})
    ctxs = c.contexts()
    srcs = {p: OtSource(ctxs[p], p, c.parties, pairs[p][q]) for p, q in (("alice", "bob"), ("bob", "alice"))}
    if break_bob is not None:
        break_bob(srcs["bob"])
    seen: list[Any] = []
    steps = {}
    for p, src in srcs.items():
        _, step = src.triple((N,))
        steps[p] = recording(step, seen) if p == "alice" else step
    out, _ = run_local(steps)
    a0, b0, c0 = out["alice"]
    a1, b1, c1 = out["bob"]
    if break_bob is None:  # (a broken variant also breaks correctness; its view is the point)
        np.testing.assert_array_equal(c0 + c1, (a0 + a1) * (b0 + b1))
    return seen, out["alice"], out["bob"]


def _u_agreement(seen: list[Any], bob_b: np.ndarray) -> float:
    """Largest deviation from 1/2 of the agreement of a column of U with bob's bits."""
    u = next(m["u"] for m in seen if "u" in m)
    bits = np.unpackbits(np.ascontiguousarray(bob_b).view(np.uint8), bitorder="little")
    cols = np.unpackbits(u, axis=1, bitorder="little")[:, : bits.size]
    return float(np.max(np.abs((cols == bits[None, :]).mean(axis=1) - 0.5)))


def _tau_hits(seen: list[Any], bob_a: np.ndarray) -> float:
    """How often tau equals bob's a in the low byte (chance: 1/256). tau travels as the kept
    low bytes of each correction (at least one byte of every word)."""
    packed = next(m["tau"] for m in seen if "tau" in m)
    tau = _unpack_tau(packed, 64 * N, Side(64 * N, 1, GILBOA_KEEP))[:, 0]
    delta = np.repeat(bob_a, 64)
    return float(np.mean((tau & np.uint64(0xFF)) == (delta & np.uint64(0xFF))))


def test_alice_sees_nothing_of_bobs_shares() -> None:
    seen, _, bob = _triples(None)
    assert _u_agreement(seen, bob[1]) < 0.03  # measured ~0.01 (max of 64 columns, sd 0.003)
    assert _tau_hits(seen, bob[0]) < 0.02  # chance 0.004


def _equal_streams(src: OtSource) -> None:
    # every leaf of a small VOLE the same: XOR of its 4 streams = 0, so U is bob's bits in the clear
    src.rcv = SoftReceiver(np.repeat(src.rcv._leaves[:, :1], 4, axis=1))


def _unmasked_gilboa(src: OtSource) -> None:
    src.snd.hash = _zero_hash  # type: ignore[assignment]  # x0 = x1 = 0: tau = bob's a


def test_u_distinguisher_catches_an_unmasked_receiver() -> None:
    seen, _, bob = _triples(_equal_streams)
    assert _u_agreement(seen, bob[1]) > 0.4  # measured 0.5: a column is bob's bits


def test_tau_distinguisher_catches_an_unmasked_gilboa_message() -> None:
    seen, _, bob = _triples(_unmasked_gilboa)
    assert _tau_hits(seen, bob[0]) > 0.9  # measured 1.0: tau is bob's a


def test_malformed_ot_message_raises_ot_error_naming_the_peer() -> None:
    c = Cluster(*CONFIGS["semi2k-2-ot"])
    pairs, _ = run_local({p: ot_setup(p, [q for q in c.parties if q != p], b"bad") for p in c.parties})
    ctx = c.contexts()["alice"]
    _, step = OtSource(ctx, "alice", c.parties, pairs["alice"]["bob"]).triple((8,))

    def bob() -> Step[None]:  # sends rows of the wrong shape instead of IKNP columns
        yield Exchange(send={"alice": {"u": np.zeros((3, 3), dtype=np.uint8)}}, recv=frozenset({"alice"}))

    with pytest.raises(OtError, match=r"expected OT-extension columns .* from 'bob'"):
        run_local({"alice": step, "bob": bob()})


def _made(make: Callable[[OtSource], Any], label: bytes) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Run one maker of OtSource at both holders; (alice's arrays, bob's arrays, rounds)."""
    c = Cluster(*CONFIGS["semi2k-2-ot"])
    pairs, _ = run_local({p: ot_setup(p, [q for q in c.parties if q != p], label) for p in c.parties})
    ctxs = c.contexts()
    steps = {}
    for p, q in (("alice", "bob"), ("bob", "alice")):
        _, steps[p] = make(OtSource(ctxs[p], p, c.parties, pairs[p][q]))
    out, rounds = run_local(steps)
    return out["alice"], out["bob"], rounds


@pytest.mark.parametrize("small", [False, True])
def test_every_correlation_is_correct_across_blocks_and_chunks(monkeypatch: pytest.MonkeyPatch, small: bool) -> None:
    """Triples, AND triples, matrix triples, truncation bits and B2A bits against numpy, also
    with kernel blocks and rounds a few hundred rows long (block and chunk edges inside a
    Gilboa group's packed corrections, a random bit range split between the two senders)."""
    if small:
        monkeypatch.setattr(_ot, "BLOCK", 192)
        monkeypatch.setattr(_ot, "ROUND_BYTES", 640 * 24)
    n, d = 37, 18
    (a0, b0, c0), (a1, b1, c1), rounds = _made(lambda s: s.triple((n,)), b"t")
    np.testing.assert_array_equal(c0 + c1, (a0 + a1) * (b0 + b1))
    assert rounds > 2 if small else rounds == 2
    (a0, b0, c0), (a1, b1, c1), _ = _made(lambda s: s.and_triple((n, 2)), b"a")
    np.testing.assert_array_equal(c0 ^ c1, (a0 ^ a1) & (b0 ^ b1))
    assert 0.45 < np.unpackbits((a0 ^ a1).view(np.uint8)).mean() < 0.55  # a is random, not 0
    (a0, b0, c0), (a1, b1, c1), _ = _made(lambda s: s.matrix_triple((3, 5), (5, 2)), b"m")
    np.testing.assert_array_equal(c0 + c1, ring_matmul(a0 + a1, b0 + b1))
    (a0, p0), (a1, p1), rounds = _made(lambda s: s.trunc_bits((n,), d), b"r")
    mod = np.uint64((1 << d) - 1)  # the product is shared modulo 2^d (short corrections)
    np.testing.assert_array_equal((p0 + p1) & mod, a0 & a1)
    assert set(np.unique(a0)) == {0, 1} and set(np.unique(a1)) == {0, 1}
    assert rounds == 2  # 19 + 18 elements: one padded group of 64 rows each way, even when small
    (x0, y0), (x1, y1), _ = _made(lambda s: s.bit_pair((n,)), b"b")
    np.testing.assert_array_equal(x0 ^ x1, y0 + y1)
    assert set(np.unique(x0 ^ x1)) == {0, 1}


def test_kept_bytes_survive_packing() -> None:
    """Packed corrections keep at least the kept low bytes of every row position (and 36 or 54
    words of 64 travel for Gilboa and a d = 18 truncation's 3-byte corrections), whatever the
    row width."""
    rng = np.random.default_rng(3)
    for keep, words in ((GILBOA_KEEP, 36), ((3,) * 64, 32)):
        for width in (1, 3):
            side = Side(64 * 5, width, keep)
            tau = rng.integers(0, 2**64, size=(64 * 5, width), dtype=np.uint64)
            packed = _pack_tau(tau, side)
            assert packed.shape == (5 * words * width,) and packed.dtype == np.uint64
            k = np.array(keep * 5, dtype=np.uint64)[:, None]
            mask = np.where(k == 8, np.uint64(2**64 - 1), (np.uint64(1) << (np.uint64(8) * k)) - np.uint64(1))
            np.testing.assert_array_equal(_unpack_tau(packed, 64 * 5, side) & mask, tau & mask)


def test_malformed_corrections_raise_ot_error_naming_the_peer() -> None:
    c = Cluster(*CONFIGS["semi2k-2-ot"])
    pairs, _ = run_local({p: ot_setup(p, [q for q in c.parties if q != p], b"bad2") for p in c.parties})
    ctxs = c.contexts()
    _, step = OtSource(ctxs["alice"], "alice", c.parties, pairs["alice"]["bob"]).triple((8,))
    _, honest = OtSource(ctxs["bob"], "bob", c.parties, pairs["bob"]["alice"]).triple((8,))

    def bob() -> Step[None]:  # honest first round, then corrections unpacked (64 words a group)
        ex = next(honest)
        yield ex
        yield Exchange(send={"alice": {"tau": np.zeros((512, 1), dtype=np.uint64)}}, recv=frozenset({"alice"}))

    with pytest.raises(OtError, match=r"corrections of 512 x 1 OTs from 'bob'"):
        run_local({"alice": step, "bob": bob()})


def _truncation_view(monkeypatch: pytest.MonkeyPatch, broken: bool) -> float:
    """Truncate 4096 values by 18 bits with no dealer; returns the largest deviation from 1/2 of
    the agreement of the bits alice receives with the msbs of bob's shares (what they open)."""
    if broken:  # every private random bit 0: the opened bit is the share's msb in the clear
        monkeypatch.setattr(Prg, "random_bits", lambda self, shape: np.zeros(shape, dtype=np.uint64))
    c = Cluster(*CONFIGS["semi2k-2-ot"])
    x = np.random.default_rng(11).integers(-(2**61), 2**61, 4096)
    sx = c.share(ring(x))
    ctxs = c.contexts()
    seen: list[Any] = []
    steps = {p: pr.truncate(ctxs[p], sx[p], 18) for p, pr in c.protos.items()}
    steps["alice"] = recording(steps["alice"], seen)
    out, rounds = run_local(steps)
    assert rounds == 2
    got = signed(c.reveal(out)) - (x >> 18)
    assert set(np.unique(got)) <= {0, 1}  # floor(x / 2^18) + {0, 1}, also when broken
    # gather's payload {index: sub-payload}: sub-step 1 is the opening, a packed uint8 array
    (opened,) = [m[1] for m in seen if isinstance(m, dict) and isinstance(m.get(1), np.ndarray)]
    o_bob = np.unpackbits(opened, count=x.size)
    m_bob = (sx["bob"].parts[0] >> np.uint64(63)).astype(np.uint8)
    return float(abs((o_bob == m_bob).mean() - 0.5))


def test_truncation_openings_hide_the_share_msbs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1-bit opening of the two-holder truncation is masked by a private random bit: at
    chance against bob's share msbs, and the distinguisher catches an unmasked variant."""
    assert _truncation_view(monkeypatch, broken=False) < 0.05  # sd ~0.008 at 4096 bits
    assert _truncation_view(monkeypatch, broken=True) > 0.45  # measured 0.5: the msbs themselves


@pytest.mark.parametrize("holders", [3, 4])
def test_pairwise_correlations_of_more_holders(holders: int) -> None:
    """Triples, AND triples, matrix triples (2-d and stacked), B2A bits and truncation tuples of
    3 and 4 holders by pairwise OT agree with numpy on the sums of the holders' parts."""
    names = ("alice", "bob", "carol", "dave")[:holders]
    c = Cluster("semi2k", names, "none")
    pairs, _ = run_local({p: ot_setup(p, [q for q in names if q != p], b"pw") for p in names})
    n, d = 37, 18

    def made(make: Callable[[PairwiseSource], Any]) -> list[list[np.ndarray]]:
        ctxs = c.contexts()
        steps = {p: make(PairwiseSource(ctxs[p], p, names, pairs[p]))[1] for p in names}
        out, _ = run_local(steps)
        return [out[p] for p in names]

    def total(parts: list[np.ndarray], xor: bool = False) -> np.ndarray:
        acc = parts[0].copy()
        for x in parts[1:]:
            acc = acc ^ x if xor else acc + x
        return acc

    res = made(lambda s: s.triple((n,)))
    a, b, cc = (total([r[i] for r in res]) for i in range(3))
    np.testing.assert_array_equal(cc, a * b)
    res = made(lambda s: s.and_triple((n, 2)))
    a, b, cc = (total([r[i] for r in res], xor=True) for i in range(3))
    np.testing.assert_array_equal(cc, a & b)
    for ashape, bshape in (((3, 5), (5, 2)), ((2, 3, 4), (4,))):
        res = made(lambda s, ashape=ashape, bshape=bshape: s.matrix_triple(ashape, bshape))
        a, b, cc = (total([r[i] for r in res]) for i in range(3))
        np.testing.assert_array_equal(cc, ring_matmul(a, b))
    res = made(lambda s: s.bit_pair((n,)))
    boolean, arith = total([r[0] for r in res], xor=True), total([r[1] for r in res])
    np.testing.assert_array_equal(arith, boolean)
    assert set(np.unique(boolean)) == {0, 1}
    res = made(lambda s: s.trunc_tuple((n,), d))
    r, r_mid, r_msb = (total([x[i] for x in res]) for i in range(3))
    np.testing.assert_array_equal(r_mid, (r << np.uint64(1)) >> np.uint64(d + 1))
    # r_msb is only used shifted left by 63 - d, so its shares are made modulo 2^(d + 1)
    # (_ot_pairwise.trunc_keep: fewer correction bytes); r and r_mid are exact
    low = np.uint64((1 << (d + 1)) - 1)
    np.testing.assert_array_equal(r_msb & low, r >> np.uint64(63))
