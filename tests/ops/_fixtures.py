"""A sans-IO harness for the comparison / non-linear tests: every party of one protocol in-process.

``Harness("semi2k")`` is alice and bob with dealer carol; ``Harness("semi2k-ot")`` is alice and
bob with no dealer (correlations by OT); ``Harness("rep3")`` is alice, bob and carol; ``Harness("reference", parties=...)`` is the test-only plaintext reference protocol.
Steps run through :func:`~mpcactors.ops._comm.run_local` with real Exchanges, so round counts are
the protocol's. Each :meth:`Harness.run` gets a fresh context path, like a new op.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mpcactors.ops._comm import Step, run_local
from mpcactors.ops._context import OpContext
from mpcactors.ops._protocol import Kind, Protocol, Share
from mpcactors.ops._ring import decode, encode, to_ring

from ._reference import Reference

__all__ = [
    "A2B_ROUNDS",
    "CMP_ROUNDS",
    "MSB_ROUNDS",
    "MUL_ROUNDS",
    "MUL_TRUNC_ROUNDS",
    "PROTOCOLS",
    "TRUNC_ROUNDS",
    "Harness",
]

PROTOCOLS = ("semi2k", "semi2k-ot", "rep3")
# Rounds of the MSB circuit (2 A2B summands in 2-party semi2k, 3 in rep3), of a comparison
# (+1 bit_to_arith), of one truncation, of one product and of a fixed-point product. Without a
# dealer (semi2k-ot) every product and B2A bit takes one more round (its triple's OT runs with
# the opening) and a truncation one more (its wrap bit's OT carries the 1-bit openings in its first
# round; beside a product the OT runs with the product and the openings follow).
# semi2k-ot's MSB (64 bits) is the millionaires' protocol (_millionaire.py): its random OTs, the
# leaf words and 4 tree levels; A2B keeps the AND circuit (1 + 6 AND rounds, two per AND without
# a dealer).
MSB_ROUNDS = {"semi2k": 6, "semi2k-ot": 6, "rep3": 7}
CMP_ROUNDS = {"semi2k": 7, "semi2k-ot": 8, "rep3": 8}
A2B_ROUNDS = {"semi2k": 7, "semi2k-ot": 14, "rep3": 8}
TRUNC_ROUNDS = {"semi2k": 1, "semi2k-ot": 2, "rep3": 2}
MUL_ROUNDS = {"semi2k": 1, "semi2k-ot": 2, "rep3": 1}
MUL_TRUNC_ROUNDS = {"semi2k": 2, "semi2k-ot": 3, "rep3": 2}

Values = dict[str, Share]


def _contexts(parties: Sequence[str], salt: str) -> dict[str, OpContext]:
    """Contexts with deterministic seeds (a failing case replays exactly; no flaky randomness)."""
    groups = [
        frozenset(g) for r in (1, 2, len(parties)) for g in itertools.combinations(parties, r)
    ]
    seeds = {
        g: hashlib.sha256(f"{salt}/{','.join(sorted(g))}".encode()).digest() for g in set(groups)
    }
    return {
        p: OpContext(p, parties, {g: s for g, s in seeds.items() if p in g}, (b"test", 0))
        for p in parties
    }


def _make(
    name: str, party: str, parties: Sequence[str], fxp_bits: int, dealer: str | None
) -> Protocol:
    if name == "reference":
        return Reference(party, parties, fxp_bits=fxp_bits)
    from mpcactors.ops._registry import make_protocol

    return make_protocol(name, party, parties, fxp_bits=fxp_bits, dealer=dealer)


class Harness:
    """All parties of one protocol instance, with helpers to share, run and open values."""

    def __init__(
        self,
        protocol: str,
        parties: Sequence[str] | None = None,
        *,
        dealer: str | None = None,
        fxp_bits: int = 18,
        seed: str = "mpcactors-tests",
    ) -> None:
        self.name = protocol
        if protocol == "semi2k-ot":
            protocol, dealer = "semi2k", "none"
            parties = parties or ("alice", "bob")
        if parties is None:
            parties = ("alice", "bob", "carol") if protocol != "reference" else ("alice", "bob")
            if protocol == "semi2k" and dealer is None:
                dealer = "carol"
        self.parties = tuple(parties)
        self.fxp_bits = fxp_bits
        self.protos = {p: _make(protocol, p, self.parties, fxp_bits, dealer) for p in self.parties}
        self.ctxs = _contexts(self.parties, seed)
        self._ops = itertools.count()
        self.owner = self.protos[self.parties[0]].holders[0]
        setup = {p: pr.job_setup(self._ctx(p, -1), b"harness") for p, pr in self.protos.items()}
        if any(st is not None for st in setup.values()):  # semi2k without a dealer: base OTs
            run_local({p: st for p, st in setup.items() if st is not None})

    def _ctx(self, p: str, op: int) -> OpContext:
        return self.ctxs[p].child(op)

    def run(self, fn: Callable[..., Step[Any]], *args: Any) -> tuple[dict[str, Any], int]:
        """Run ``fn(ctx, proto, *args_at_party)`` at every party; ``({party: result}, rounds)``.

        An argument that is a ``{party: Share}`` dict is replaced by that party's share; any other
        argument is passed as is.
        """
        op = next(self._ops)
        steps = {}
        for p in self.parties:
            local = [a[p] if isinstance(a, dict) else a for a in args]
            steps[p] = fn(self._ctx(p, op), self.protos[p], *local)
        return run_local(steps)

    def local(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Apply a local (non-communicating) function at every party, like :meth:`run`."""
        out = {}
        for p in self.parties:
            local = [a[p] if isinstance(a, dict) else a for a in args]
            out[p] = fn(self.protos[p], *local)
        return out

    def share_ring(
        self, ring: np.ndarray, kind: Kind = "arith", owner: str | None = None
    ) -> Values:
        owner = owner or self.owner
        op = next(self._ops)
        steps = {
            p: self.protos[p].share(
                self._ctx(p, op), owner, ring if p == owner else None, None, kind
            )
            for p in self.parties
        }
        return run_local(steps)[0]

    def share_fxp(self, values: np.ndarray | float) -> Values:
        return self.share_ring(encode(np.asarray(values, dtype=np.float64), self.fxp_bits))

    def share_int(self, values: np.ndarray | int) -> Values:
        return self.share_ring(to_ring(np.asarray(values, dtype=np.int64)))

    def open_ring(self, shares: Values) -> np.ndarray:
        op = next(self._ops)
        steps = {p: self.protos[p].reveal(self._ctx(p, op), shares[p]) for p in self.parties}
        res = run_local(steps)[0]
        return np.asarray(res[self.owner])

    def open_fxp(self, shares: Values) -> np.ndarray:
        return decode(self.open_ring(shares), self.fxp_bits)

    def open_int(self, shares: Values) -> np.ndarray:
        return decode(self.open_ring(shares), 0)

    def call(self, fn: Callable[..., Step[Any]], *args: Any) -> tuple[Values, int]:
        """Like :meth:`run` for a step returning a Share."""
        return self.run(fn, *args)
