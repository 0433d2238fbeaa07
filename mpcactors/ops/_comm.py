"""Declared communication: how a protocol step says what it sends and what it expects.

Theory of operation
-------------------
A protocol step is a plain generator (sans-IO). It computes locally with numpy, then *yields*
an :class:`Exchange` naming what it sends to which peer and which peers it expects a message
from in this round. Whoever drives the generator (the scheduler's executor over real links, or
:func:`run_local` in unit tests) delivers the sends, collects the expected messages and resumes
the generator with ``{peer: payload}``. The step ``return``s its result::

    def open_value(ctx, share):                       # a one-round step
        got = yield Exchange(send={p: share for p in ctx.others}, recv=ctx.others)
        return share + sum(got.values())

Steps compose with ``yield from`` (sequential rounds) and with :func:`gather` (independent
sub-steps advanced in lockstep, their messages merged, so k independent sub-steps cost the rounds
of the longest one). The executor also merges rounds *across* ops and jobs; protocol authors never
batch by hand.

A step may also hand the driver local work that needs no message of the round (``meanwhile``,
an :class:`Ahead`): the executor runs it in a worker thread while the round's messages are in
flight, so computing the next round's outgoing data overlaps the transfer. It is a hint only:
the step calls :meth:`Ahead.result` when it resumes, which computes whatever the driver did not.

Rule every step must keep: in a given round, party A expects a message from B exactly when B's
same step sends one to A in that round. Every party runs the same program, so this holds when
the step's control flow depends only on public values (shapes, party names, op attributes).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["EMPTY", "Ahead", "Exchange", "Step", "gather", "run_local"]

T = TypeVar("T")


class Ahead(Generic[T]):
    """Local work computed at most once: by the driver while a round's messages are in flight
    (``Exchange.meanwhile``), or by the step itself when it resumes (:meth:`result`)."""

    __slots__ = ("_fn", "_lock", "_value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn: Callable[[], T] | None = fn
        self._lock = threading.Lock()  # the driver's run and the step's never overlap; insurance
        self._value: Any = None

    def __call__(self) -> None:
        with self._lock:
            if self._fn is not None:
                self._value = self._fn()
                self._fn = None

    def result(self) -> T:
        """The work's value (computed now if the driver did not run it)."""
        self()
        value: T = self._value
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Exchange:
    """One communication round of one step: payloads out, peers to hear from."""

    send: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # peer -> payload
    recv: frozenset[str] = frozenset()  # peers whose payload this round needs
    # local work needing no message of this round, for the driver to run while they travel
    meanwhile: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.recv, frozenset):
            object.__setattr__(self, "recv", frozenset(self.recv))

    @property
    def empty(self) -> bool:
        return not self.send and not self.recv


EMPTY = Exchange()

# A protocol step: yields Exchanges, is sent {peer: payload}, returns its result.
Step = Generator[Exchange, Mapping[str, Any], T]


def gather(steps: Iterable[Step[Any]]) -> Step[list[Any]]:
    """Run independent steps in lockstep; one merged Exchange per round.

    Round r of the merged step carries round r of every sub-step still running: the payload to a
    peer is ``{index: payload}`` and the received ``{index: payload}`` is split back. Sub-steps that
    have returned drop out. Returns the sub-steps' results in order.
    """
    gens = list(steps)
    results: list[Any] = [None] * len(gens)
    pending: dict[int, Exchange] = {}
    for i, g in enumerate(gens):
        _advance(g, i, None, results, pending)
    while pending:
        send: dict[str, dict[int, Any]] = {}
        recv: set[str] = set()
        for i, ex in pending.items():
            for peer, payload in ex.send.items():
                send.setdefault(peer, {})[i] = payload
            recv |= ex.recv
        got = yield Exchange(send=send, recv=frozenset(recv), meanwhile=_merged(pending.values()))
        current = pending
        pending = {}
        for i, ex in current.items():
            reply = {p: got[p][i] for p in ex.recv}
            _advance(gens[i], i, reply, results, pending)
    return results


def gather_peers(steps: Mapping[str, Step[Any]]) -> Step[dict[str, Any]]:
    """Run one step per peer in lockstep, each talking only to its own peer; one merged Exchange
    per round.

    The payload to peer p is its step's own, with no index: p runs the matching step for this
    party among its own peers, in whatever order (positional :func:`gather` indices would differ
    between the two ends of a pair when each holder lists the others). Returns
    ``{peer: result}``.

    Raises:
        RuntimeError: a step sends to or expects another party than its peer (a protocol bug).
    """
    results: dict[str, Any] = {}
    pending: dict[str, Exchange] = {}
    for peer, g in steps.items():
        _advance(g, peer, None, results, pending)
    while pending:
        send: dict[str, Any] = {}
        recv: set[str] = set()
        for peer, ex in pending.items():
            if set(ex.send) - {peer} or ex.recv - {peer}:
                raise RuntimeError(f"gather_peers: the step for {peer!r} talks to other parties")
            if peer in ex.send:
                send[peer] = ex.send[peer]
            recv |= ex.recv
        got = yield Exchange(send=send, recv=frozenset(recv), meanwhile=_merged(pending.values()))
        current = pending
        pending = {}
        for peer, ex in current.items():
            _advance(steps[peer], peer, {peer: got[peer]} if peer in ex.recv else {}, results, pending)
    return results


def _merged(exchanges: Iterable[Exchange]) -> Callable[[], None] | None:
    """One ``meanwhile`` running every sub-step's (None when none has any)."""
    works = [ex.meanwhile for ex in exchanges if ex.meanwhile is not None]
    if not works:
        return None
    if len(works) == 1:
        return works[0]

    def run_all() -> None:
        for work in works:
            work()

    return run_all


def _advance(
    gen: Step[Any],
    key: Any,
    reply: Mapping[str, Any] | None,
    results: dict[Any, Any] | list[Any],
    pending: dict[Any, Exchange],
) -> None:
    """Step ``gen`` until it yields a non-empty Exchange (kept in ``pending[key]``) or returns
    (its value goes to ``results[key]``)."""
    try:
        ex = gen.send(reply) if reply is not None else next(gen)
        while ex.empty:
            ex = gen.send({})
    except StopIteration as stop:
        results[key] = stop.value
        return
    pending[key] = ex


def run_local(steps: Mapping[str, Step[T]]) -> tuple[dict[str, T], int]:
    """Drive one step per party to completion in-process, for sans-IO tests.

    Args:
        steps: party name -> that party's generator for the same protocol step.

    Returns:
        ``({party: result}, rounds)`` where rounds counts rounds in which any message moved.

    Raises:
        RuntimeError: a party expects a message nobody sent (a protocol bug), or a deadlock.
    """
    results: dict[str, Any] = {}
    pending: dict[str, Exchange] = {}
    for party, gen in steps.items():
        _advance(gen, party, None, results, pending)
    rounds = 0
    while pending:
        mail: dict[str, dict[str, Any]] = {p: {} for p in steps}
        for sender, ex in pending.items():
            for peer, payload in ex.send.items():
                if peer not in steps:
                    raise RuntimeError(f"{sender!r} sends to unknown party {peer!r}")
                mail[peer][sender] = payload
        rounds += 1
        for ex in pending.values():  # as the executor does while the messages travel
            if ex.meanwhile is not None:
                ex.meanwhile()
        current = pending
        pending = {}
        for party, ex in current.items():
            missing = set(ex.recv) - set(mail[party])
            if missing:
                raise RuntimeError(
                    f"party {party!r} expects messages from {sorted(missing)} that were not sent"
                )
            extra = set(mail[party]) - set(ex.recv)
            if extra:
                raise RuntimeError(f"party {party!r} was sent unexpected messages from {sorted(extra)}")
            _advance(steps[party], party, {p: mail[party][p] for p in ex.recv}, results, pending)
        for party in steps:
            if party not in current and mail[party]:
                raise RuntimeError(f"party {party!r} finished but was sent {sorted(mail[party])}")
    return results, rounds

