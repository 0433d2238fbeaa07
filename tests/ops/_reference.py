"""A test-only plaintext-reference protocol: honest-but-trivial additive sharing over n parties.

Not secure: multiplication and AND reconstruct the operands at every party ("trusted" product)
and reshare the result with a PRG every party holds. It exists so the boolean circuits and
non-linear functions can be tested through :func:`~mpcactors.ops._comm.run_local` with real
Exchanges (one round per communicating kernel call, like the real protocols) before and beside
semi2k/rep3. Two parties: SecureML local truncation (0 rounds), like 2-party semi2k; more parties:
exact truncation by reconstruction (1 round).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcactors.ops._comm import Exchange, Step
from mpcactors.ops._context import OpContext
from mpcactors.ops._protocol import Kind, Protocol, Share

__all__ = ["Reference"]

_ONE = np.uint64(1)


def _u64(c: np.ndarray | int) -> np.ndarray:
    arr = np.asarray(c)
    if arr.dtype != np.uint64:
        arr = (
            arr.astype(np.int64).view(np.uint64)
            if arr.dtype.kind in "iub"
            else arr.astype(np.uint64)
        )
    return arr


class Reference(Protocol):
    """Additive shares over Z_2^64 (arith) or XOR (bool); products by reconstruction."""

    name = "reference"

    @property
    def holders(self) -> tuple[str, ...]:
        return self.parties

    def _first(self) -> bool:
        return self.party == self.parties[0]

    # ---- local ---------------------------------------------------------------------------
    def public(self, value: np.ndarray, kind: Kind = "arith") -> Share:
        value = _u64(value)
        part = value.copy() if self._first() else np.zeros_like(value)
        return Share((part,), value.shape, kind)

    def _binary(self, op: str, x: Share, y: Share, fn: Any, kind: Any) -> Share:
        return Share((fn(x.parts[0], y.parts[0]),), x.shape, kind)

    def add_public(self, x: Share, c: np.ndarray) -> Share:
        c = _u64(c)
        part = x.parts[0] + c if self._first() else x.parts[0] + np.zeros_like(c)
        return Share((part,), part.shape, "arith")

    def mul_public(self, x: Share, c: np.ndarray) -> Share:
        part = x.parts[0] * _u64(c)
        return Share((part,), part.shape, "arith")

    def matmul_public(self, x: Share, c: np.ndarray, *, left: bool = False) -> Share:
        c = _u64(c)
        part = c @ x.parts[0] if left else x.parts[0] @ c
        return Share((part,), part.shape, "arith")

    def xor_public(self, x: Share, c: np.ndarray) -> Share:
        c = _u64(c)
        part = x.parts[0] ^ c if self._first() else x.parts[0] ^ np.zeros_like(c)
        return Share((part,), part.shape, "bool")

    def and_public(self, x: Share, c: np.ndarray) -> Share:
        part = x.parts[0] & _u64(c)
        return Share((part,), part.shape, "bool")

    def a2b_summands(self, x: Share) -> list[Share]:
        out = []
        for p in self.parties:
            part = x.parts[0].copy() if p == self.party else np.zeros_like(x.parts[0])
            out.append(Share((part,), x.shape, "bool"))
        return out

    # ---- communicating -------------------------------------------------------------------
    def _reshare(self, ctx: OpContext, value: np.ndarray, kind: Kind) -> Share:
        prg = ctx.prg(*ctx.others)
        masks = [prg.random_u64(value.shape) for _ in self.parties[1:]]
        idx = self.parties.index(self.party)
        if idx == 0:
            part = value.copy()
            for m in masks:
                part = part - m if kind == "arith" else part ^ m
        else:
            part = masks[idx - 1]
        return Share((part,), value.shape, kind)

    def _reconstruct(self, ctx: OpContext, xs: list[Share], kind: Kind) -> Step[list[np.ndarray]]:
        mine = [x.parts[0] for x in xs]
        got: Mapping[str, Any] = yield Exchange(
            send={p: mine for p in ctx.others}, recv=frozenset(ctx.others)
        )
        out = []
        for i, a in enumerate(mine):
            v = a.copy()
            for p in ctx.others:
                v = v + got[p][i] if kind == "arith" else v ^ got[p][i]
            out.append(v)
        return out

    def share(
        self,
        ctx: OpContext,
        owner: str,
        value: np.ndarray | None,
        shape: tuple[int, ...] | None,
        kind: Kind = "arith",
    ) -> Step[Share]:
        others = [p for p in self.parties if p != owner]
        if self.party == owner:
            if value is None:
                raise ValueError("the owner must pass the value")
            value = _u64(value)
            part = value.copy()
            for p in others:
                m = ctx.prg(p).random_u64(value.shape)
                part = part - m if kind == "arith" else part ^ m
            yield Exchange(send={p: list(value.shape) for p in others})
            return Share((part,), value.shape, kind)
        got = yield Exchange(recv=frozenset({owner}))
        shp = tuple(got[owner])
        return Share((ctx.prg(owner).random_u64(shp),), shp, kind)

    def mul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        a, b = yield from self._reconstruct(ctx, [x, y], "arith")
        return self._reshare(ctx, a * b, "arith")

    def matmul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        a, b = yield from self._reconstruct(ctx, [x, y], "arith")
        return self._reshare(ctx, a @ b, "arith")

    def and_(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        a, b = yield from self._reconstruct(ctx, [x, y], "bool")
        return self._reshare(ctx, a & b, "bool")

    def truncate(self, ctx: OpContext, x: Share, bits: int) -> Step[Share]:
        if len(self.parties) == 2:  # SecureML: local, off by at most 1 with high probability
            p = x.parts[0]
            if self._first():
                part = (p.view(np.int64) >> bits).view(np.uint64)
            else:
                part = np.uint64(0) - ((np.uint64(0) - p).view(np.int64) >> bits).view(np.uint64)
            return Share((part,), x.shape, "arith")
        (v,) = yield from self._reconstruct(ctx, [x], "arith")
        return self._reshare(ctx, (v.view(np.int64) >> bits).view(np.uint64), "arith")

    def reveal(self, ctx: OpContext, x: Share, to: str | None = None) -> Step[np.ndarray | None]:
        if to is None:
            (v,) = yield from self._reconstruct(ctx, [x], x.kind)
            return v
        if self.party == to:
            got = yield Exchange(recv=frozenset(ctx.others))
            v = x.parts[0].copy()
            for p in ctx.others:
                v = v + got[p] if x.kind == "arith" else v ^ got[p]
            return v
        yield Exchange(send={to: x.parts[0]})
        return None

    def bit_to_arith(self, ctx: OpContext, b: Share) -> Step[Share]:
        (v,) = yield from self._reconstruct(ctx, [b], "bool")
        return self._reshare(ctx, v & _ONE, "arith")
