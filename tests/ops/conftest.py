"""Fixtures for the semi2k / rep3 kernel tests: every party of one protocol instance in-process.

:class:`Cluster` drives one step per party through :func:`run_local` (real Exchanges, so round
counts are the protocol's), with deterministic seeds so a failing case replays exactly, and can
count the bytes every party sends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ops._context import OpContext
from mpcactors.ops._protocol import Kind, Protocol, Share
from mpcactors.ops._registry import make_protocol

# (protocol, parties, dealer): every configuration the suite runs over.
CONFIGS = {
    "semi2k-2+dealer": ("semi2k", ("alice", "bob", "carol"), "carol"),
    "semi2k-3+dealer": ("semi2k", ("alice", "bob", "carol", "dave"), "dave"),
    "semi2k-4+dealer": ("semi2k", ("alice", "bob", "carol", "dave", "erin"), "erin"),
    "semi2k-tfp-2": ("semi2k", ("alice", "bob"), "trusted-first-party"),
    "semi2k-2-ot": ("semi2k", ("alice", "bob"), "none"),
    "semi2k-3-ot": ("semi2k", ("alice", "bob", "carol"), "none"),
    "semi2k-tfp-3": ("semi2k", ("alice", "bob", "carol"), "trusted-first-party"),
    "rep3": ("rep3", ("alice", "bob", "carol"), None),
}


def payload_bytes(obj: Any) -> int:
    """Bytes of the arrays (and bytes) inside a payload, the part that dominates the wire."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (bytes, bytearray)):
        return len(obj)
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0 if obj is None else 8


def _counting(gen: Step[Any], log: list[tuple[str, int]], rounds: list[int]) -> Step[Any]:
    """Forward ``gen``'s exchanges, logging (peer, bytes) of everything it sends and counting
    its rounds (non-empty exchanges)."""
    reply = None
    try:
        while True:
            ex: Exchange = gen.send(reply) if reply is not None else next(gen)
            for peer, payload in ex.send.items():
                log.append((peer, payload_bytes(payload)))
            rounds[0] += not ex.empty
            reply = yield ex
    except StopIteration as stop:
        return stop.value


class Cluster:
    """All parties of one protocol instance; deterministic seeds from ``seed``."""

    def __init__(
        self,
        protocol: str,
        parties: Sequence[str],
        dealer: str | None = None,
        *,
        fxp_bits: int = 18,
        seed: int = 0,
    ) -> None:
        self.name = protocol
        self.parties = tuple(parties)
        self.fxp_bits = fxp_bits
        self.protos: dict[str, Protocol] = {
            p: make_protocol(protocol, p, self.parties, fxp_bits=fxp_bits, dealer=dealer)
            for p in self.parties
        }
        self.holders = self.protos[self.parties[0]].holders
        # semi2k without a dealer makes its correlations by OT inside the op: +1 round for a
        # product, a B2A bit or a truncation (the opening travels in the OT's first round)
        self.ot = protocol == "semi2k" and dealer == "none"
        rng = np.random.default_rng(seed)
        shared = {}
        for r in (1, 2, len(self.parties)):
            for group in itertools.combinations(self.parties, r):
                shared[frozenset(group)] = rng.bytes(32)
        self._seeds = {p: {k: v for k, v in shared.items() if p in k} for p in self.parties}
        self._ops = itertools.count()
        self.sent: dict[str, list[tuple[str, int]]] = {}
        setup_ctxs = self.contexts()
        steps = {p: pr.job_setup(setup_ctxs[p], b"test-job") for p, pr in self.protos.items()}
        if any(s is not None for s in steps.values()):  # semi2k without a dealer: base OTs
            run_local({p: s for p, s in steps.items() if s is not None})

    def rounds(self, kernel: str) -> int:
        """Rounds of one kernel op ("mul", "and", "b2a", "trunc") in this configuration."""
        if self.name == "rep3":
            return {"trunc": 2}.get(kernel, 1)
        if self.ot and len(self.holders) > 2:  # by pairs: random bits fold in one holder a stage
            stages = 2 * (len(self.holders) - 1)
            return {"trunc": stages + 1, "b2a": stages}.get(kernel, 2)
        if self.ot:
            return 2
        return 1

    def contexts(self) -> dict[str, OpContext]:
        op = next(self._ops)
        return {p: OpContext(p, self.parties, self._seeds[p], (b"test", op)) for p in self.parties}

    def run(self, fn: Callable[[Protocol, OpContext], Step[Any]]) -> tuple[dict[str, Any], int]:
        """Run ``fn(proto, ctx)`` at every party; returns ``({party: result}, rounds)`` and
        records every party's sends in :attr:`sent` (``{party: [(peer, bytes)]}``). Checks that
        every party took part in every round (lockstep, see ``_checks.ROUND_MARKER``)."""
        ctxs = self.contexts()
        self.sent = {p: [] for p in self.parties}
        counts = {p: [0] for p in self.parties}
        steps = {
            p: _counting(fn(self.protos[p], ctxs[p]), self.sent[p], counts[p]) for p in self.parties
        }
        out, rounds = run_local(steps)
        # Lockstep: every party takes part in every round, so steps compose with `yield from`.
        assert {c[0] for c in counts.values()} == {rounds}, counts
        return out, rounds

    def share(self, value: Any, owner: str | None = None, kind: Kind = "arith") -> dict[str, Share]:
        owner = owner or self.holders[0]
        value = np.asarray(value)
        out, rounds = self.run(
            lambda pr, ctx: pr.share(ctx, owner, value if pr.party == owner else None, None, kind)
        )
        assert rounds == 1
        return out

    def reveal(self, shares: dict[str, Share], to: str | None = None) -> np.ndarray:
        """Open to everyone (checking all parties agree) and return the ring array."""
        out, rounds = self.run(lambda pr, ctx: pr.reveal(ctx, shares[pr.party], to))
        assert rounds == 1
        values = [v for v in out.values() if v is not None]
        for v in values[1:]:
            np.testing.assert_array_equal(v, values[0])
        return values[0]

    def op(self, fn: Callable[[Protocol, OpContext], Step[Any]]) -> tuple[dict[str, Any], int]:
        return self.run(fn)

    def local(self, fn: Callable[[Protocol], Any]) -> dict[str, Any]:
        return {p: fn(pr) for p, pr in self.protos.items()}


def recording(gen: Step[Any], seen: list[Any]) -> Step[Any]:
    """Forward ``gen``'s exchanges, keeping every payload it receives."""
    reply = None
    try:
        while True:
            ex: Exchange = gen.send(reply) if reply is not None else next(gen)
            reply = yield ex
            seen.extend(reply.values())
    except StopIteration as stop:
        return stop.value


def ring(values: Any) -> np.ndarray:
    """Signed integers -> uint64 ring elements."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def signed(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64).view(np.int64)


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    protocol, parties, dealer = CONFIGS[request.param]
    yield Cluster(protocol, parties, dealer)
