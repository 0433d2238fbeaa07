"""semi2k without a dealer: what a holder sees while the triples are made does not depend on the
other holder's shares.

alice's whole view of making a Beaver triple with bob is what bob sends her: the IKNP matrix
``U`` (bob as receiver: his choice bits are the bits of his b) and the Gilboa corrections ``tau``
(bob as sender: masked sums with his a). Two distinguishers look for bob's secrets in it: the
agreement of every column of ``U`` with bob's bits, and how often ``tau`` equals bob's a in its
low byte. Both are at chance for the real protocol and catch deliberately broken variants: a
receiver whose two key streams coincide (the mask of ``U`` cancels) and a sender whose row hash
is zero (an unmasked Gilboa message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ops._ot_triples import OtSource, ot_setup
from mpcactors.ot import OtError
from mpcactors.ot._kernels import ColumnPrg

from .conftest import CONFIGS, Cluster

N = 512  # triples: 64 N = 32768 correlated OTs each way


def _recording(gen: Step[Any], seen: list[Any]) -> Step[Any]:
    """Forward ``gen``'s exchanges, keeping every payload it receives."""
    reply = None
    try:
        while True:
            ex: Exchange = gen.send(reply) if reply is not None else next(gen)
            reply = yield ex
            seen.extend(reply.values())
    except StopIteration as stop:
        return stop.value


def _zero_hash(rows: np.ndarray, index: np.ndarray, out_blocks: int = 1) -> np.ndarray:
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
        steps[p] = _recording(step, seen) if p == "alice" else step
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
    """How often tau equals bob's a in the low byte (chance: 1/256)."""
    tau = next(m["tau"] for m in seen if "tau" in m)[:, 0]
    delta = np.repeat(bob_a, 64)
    return float(np.mean((tau & np.uint64(0xFF)) == (delta & np.uint64(0xFF))))


def test_alice_sees_nothing_of_bobs_shares() -> None:
    seen, _, bob = _triples(None)
    assert _u_agreement(seen, bob[1]) < 0.03  # measured ~0.01 (max of 128 columns, sd 0.003)
    assert _tau_hits(seen, bob[0]) < 0.02  # chance 0.004


def _equal_streams(src: OtSource) -> None:
    src.rcv._g1 = ColumnPrg(src.rcv._keys[0])  # G(k0) ^ G(k0) = 0: U is bob's bits in the clear


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

    with pytest.raises(OtError, match=r"expected IKNP columns .* from 'bob'"):
        run_local({"alice": step, "bob": bob()})
