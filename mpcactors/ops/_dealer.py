"""Correlated randomness from a dealer that sends only corrections (semi2k).

Theory of operation
-------------------
The dealing party D shares a PRG stream with every holder h (``ctx.prg(h)`` at D,
``ctx.prg(D)`` at h; D's own stream is private when D is itself a holder, the insecure
``trusted-first-party`` mode). A dealt object -- a Beaver triple, a truncation pair, a random bit
with two sharings -- is a list of arrays, each either

* *free*: every holder's share is expanded from its stream, so D knows each share and their
  combination (the random a, b of a triple, the mask r of a truncation pair), or
* *corrected*: every holder but the last expands its share from its stream; D computes the
  value the object needs (c = a b, r >> d, ...) from the free totals and sends the last holder
  only ``value - sum(other shares)`` (XOR for boolean objects).

Free arrays are what holders use *before* the round (to mask their inputs), corrected ones only
*after* it, so D's correction travels in the same round as the holders' openings: a Beaver
multiplication stays one round, and the dealer sends one array per object instead of 3n.
Everything is derived from the op's context, so dealing never depends on execution order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from ._checks import U64
from ._context import OpContext
from ._prg import Prg

__all__ = ["Dealing", "Dealt", "draw"]

Mode = Literal["add", "xor", "bit"]


class Dealt(NamedTuple):
    """One array of a dealt object: its shape, how shares combine, whether it is corrected."""

    shape: tuple[int, ...]
    mode: Mode  # "add": additive mod 2^64; "xor": XOR of words; "bit": XOR shares of 0/1 words
    corrected: bool = False


def draw(g: Prg, spec: Dealt) -> np.ndarray:
    """One holder's share of ``spec`` from stream ``g`` (bits are drawn packed: 1 bit a bit)."""
    if spec.mode == "bit":
        n = int(np.prod(spec.shape, dtype=np.int64))
        raw = np.frombuffer(g.random_bytes((n + 7) // 8), dtype=np.uint8)
        return np.unpackbits(raw, count=n).astype(U64).reshape(spec.shape)
    return g.random_u64(spec.shape)


class _Acc:
    """Sum (or XOR) of arrays, never writing into an array it did not allocate."""

    __slots__ = ("owned", "value", "xor")

    def __init__(self, xor: bool) -> None:
        self.value: np.ndarray | None = None
        self.owned = False
        self.xor = xor

    def add(self, x: np.ndarray) -> None:
        op = np.bitwise_xor if self.xor else np.add
        if self.value is None:
            self.value = x
        elif self.owned:
            op(self.value, x, out=self.value)
        else:
            self.value = np.asarray(op(self.value, x))
            self.owned = True


# finish(totals) -> the values of the corrected arrays, as fresh arrays (the corrections are
# computed in place in them); totals[k] is the combination of every holder's share of free array k
# (None for corrected arrays), a fresh array finish may overwrite.
Finish = Callable[[list[Any]], list[np.ndarray]]


class Dealing:
    """Who deals to whom in one semi2k instance; runs the local half of every dealt object.

    Args:
        party: this party.
        holders: the share holders, in order (the last receives corrections).
        dealing: the party that deals (a non-holder dealer, or the first holder).
    """

    __slots__ = ("dealing", "holders", "last", "party")

    def __init__(self, party: str, holders: Sequence[str], dealing: str) -> None:
        self.party = party
        self.holders = tuple(holders)
        self.dealing = dealing
        self.last = self.holders[-1]

    @property
    def deals(self) -> bool:
        return self.party == self.dealing

    def _stream(self, ctx: OpContext, holder: str) -> Prg:
        if self.deals:
            return ctx.prg() if holder == self.party else ctx.prg(holder)
        return ctx.prg(self.dealing)

    def deal(
        self, ctx: OpContext, specs: Sequence[Dealt], finish: Finish
    ) -> tuple[list[np.ndarray | None] | None, list[np.ndarray] | None]:
        """The local half of dealing one object (no communication).

        Returns:
            ``(own, corrections)``: ``own`` is this holder's shares in ``specs`` order (None at a
            non-holder; at the last holder the corrected entries are None until the dealer's
            message arrives); ``corrections`` is what the dealing party sends the last holder
            (None elsewhere).
        """
        if not self.deals:
            if self.party not in self.holders:
                return None, None
            g = self._stream(ctx, self.party)
            is_last = self.party == self.last
            own = [None if (s.corrected and is_last) else draw(g, s) for s in specs]
            return own, None
        accs = [_Acc(xor=s.mode != "add") for s in specs]
        mine: list[np.ndarray | None] | None = None
        for h in self.holders:
            g = self._stream(ctx, h)
            shares: list[np.ndarray | None] = []
            for s, acc in zip(specs, accs):
                if s.corrected and h == self.last:
                    shares.append(None)
                    continue
                x = draw(g, s)
                acc.add(x)
                shares.append(x)
            if h == self.party:
                mine = shares
        totals = [None if s.corrected else acc.value for s, acc in zip(specs, accs)]
        targets = iter(finish(totals))
        corrections = []
        for s, acc in zip(specs, accs):
            if not s.corrected:
                continue
            target = next(targets)
            partial = acc.value
            if partial is None:
                corrections.append(target)
            elif s.mode == "add":
                corrections.append(np.subtract(target, partial, out=target))
            else:
                corrections.append(np.bitwise_xor(target, partial, out=target))
        return mine, corrections
