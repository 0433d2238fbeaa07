"""The kernel interface every secret-sharing protocol implements once.

Higher ops (comparisons, non-linear functions, the tensor front end) are written against
:class:`Protocol` and :class:`Share` only, so semi2k and rep3 both get them.

Values live in the ring Z_2^64 (numpy uint64). A :class:`Share` is this party's local view of a
secret-shared array: ``parts`` holds the protocol's local components (semi2k: ``(x_i,)``; rep3:
``(x_i, x_{i+1})``), all of the share's ``shape``; a party that holds no share (the semi2k dealer)
has ``parts == ()``. ``kind`` is ``"arith"`` (additive over Z_2^64) or ``"bool"`` (XOR over bits
of uint64 words, 64 independent bits per element).

Local methods (no communication) return a Share. Methods that communicate return a
:data:`~mpcactors.ops._comm.Step` generator (see ``_comm.py``): drive it with ``yield from``.
Structural numpy operations (reshape, transpose, indexing, broadcast_to, concatenate) commute
with sharing for every protocol here: use :meth:`Share.map` / :meth:`Share.combine`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from ._comm import Step
from ._context import OpContext

__all__ = ["Kind", "Protocol", "Share"]

Kind = Literal["arith", "bool"]


def _contiguous(a: Any) -> np.ndarray:
    """A C-contiguous array; unlike np.ascontiguousarray, keeps 0-d arrays (and numpy scalars,
    which ufuncs return for 0-d inputs) 0-d."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


class Share:
    """One party's local view of a secret-shared uint64 array (see module doc)."""

    __slots__ = ("kind", "parts", "shape")

    def __init__(self, parts: tuple[np.ndarray, ...], shape: tuple[int, ...], kind: Kind = "arith"):
        self.parts = parts
        self.shape = tuple(shape)
        self.kind: Kind = kind

    def __repr__(self) -> str:
        return f"Share(kind={self.kind}, shape={self.shape}, parts={len(self.parts)})"

    @property
    def held(self) -> bool:
        """False at a party that holds no share of this value (e.g. the semi2k dealer)."""
        return bool(self.parts)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...] | None = None) -> Share:
        """Apply a structural numpy function (reshape, transpose, index, ...) to every part.

        ``shape`` is the result's shape; needed only where parts are empty (computed by applying
        ``fn`` to an empty placeholder otherwise).
        """
        if self.parts:
            parts = tuple(_contiguous(fn(p)) for p in self.parts)
            return Share(parts, parts[0].shape, self.kind)
        if shape is None:
            shape = fn(np.empty(self.shape, dtype=np.uint8)).shape
        return Share((), shape, self.kind)

    @staticmethod
    def combine(
        fn: Callable[[Sequence[np.ndarray]], np.ndarray], shares: Sequence[Share]
    ) -> Share:
        """Apply a structural function of several arrays (concatenate, stack) part-wise."""
        kind = shares[0].kind
        if any(s.kind != kind for s in shares):
            raise TypeError("cannot combine arithmetic and boolean shares")
        if not shares[0].parts:
            shape = fn([np.empty(s.shape, dtype=np.uint8) for s in shares]).shape
            return Share((), shape, kind)
        n = len(shares[0].parts)
        parts = tuple(_contiguous(fn([s.parts[i] for s in shares])) for i in range(n))
        return Share(parts, parts[0].shape, kind)


class Protocol(abc.ABC):
    """A secret-sharing scheme over Z_2^64 with arithmetic and boolean shares.

    One instance per party: methods act on this party's shares.

    Args:
        party: this party's name.
        parties: every party of the job, in order (the dealer included, if any).
        fxp_bits: fractional bits of fixed-point values (used by higher layers; truncation
            amounts are passed explicitly).
        dealer: for protocols that use one, the party that makes correlated randomness.
    """

    name: ClassVar[str]

    def __init__(
        self, party: str, parties: Sequence[str], *, fxp_bits: int = 18, dealer: str | None = None
    ):
        self.party = party
        self.parties = tuple(parties)
        self.fxp_bits = fxp_bits
        self.dealer = dealer

    @property
    @abc.abstractmethod
    def holders(self) -> tuple[str, ...]:
        """The parties that hold shares (all parties but a dealer)."""

    @property
    def holds(self) -> bool:
        """Whether this party holds shares (False at a dealer)."""
        return self.party in self.holders

    # ---- constants and randomness (local) ----------------------------------------------------
    @abc.abstractmethod
    def public(self, value: np.ndarray, kind: Kind = "arith") -> Share:
        """A share of a public ring array ``value`` known to everyone (no communication)."""

    @abc.abstractmethod
    def share(
        self,
        ctx: OpContext,
        owner: str,
        value: np.ndarray | None,
        shape: tuple[int, ...] | None,
        kind: Kind = "arith",
    ) -> Step[Share]:
        """Secret-share ``value`` (a ring array known only at ``owner``; None elsewhere).

        ``shape`` may be None at parties other than the owner: the owner's message carries it.
        Exactly one round in which the owner sends to every other party (at least the shape;
        PRG seeds let it send the data to only one of them).
        """

    # ---- arithmetic, local -------------------------------------------------------------------
    @abc.abstractmethod
    def _binary(
        self, op: str, x: Share, y: Share, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], kind: Kind
    ) -> Share:
        """Apply a linear ``fn`` of two shares of ``kind`` component-wise (checks kinds/shapes)."""

    def add(self, x: Share, y: Share) -> Share:
        return self._binary("add", x, y, np.add, "arith")

    def sub(self, x: Share, y: Share) -> Share:
        return self._binary("sub", x, y, np.subtract, "arith")

    def neg(self, x: Share) -> Share:
        if x.kind != "arith":
            raise TypeError(f"neg needs arith shares, got a {x.kind} share")
        return x.map(np.negative)

    @abc.abstractmethod
    def add_public(self, x: Share, c: np.ndarray) -> Share:
        """x + c for a public ring array c (broadcastable to x.shape)."""

    @abc.abstractmethod
    def mul_public(self, x: Share, c: np.ndarray) -> Share:
        """x * c elementwise for a public ring array c (broadcastable)."""

    @abc.abstractmethod
    def matmul_public(self, x: Share, c: np.ndarray, *, left: bool = False) -> Share:
        """x @ c (or c @ x when ``left``) for a public ring matrix c."""

    # ---- arithmetic, communicating -----------------------------------------------------------
    @abc.abstractmethod
    def mul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        """Elementwise product of two arithmetic shares of the same shape."""

    @abc.abstractmethod
    def matmul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        """Matrix product with numpy ``@`` semantics (1-D, 2-D and stacked operands)."""

    @abc.abstractmethod
    def truncate(self, ctx: OpContext, x: Share, bits: int) -> Step[Share]:
        """Signed (arithmetic) shift right by ``bits``: fixed-point rescaling after a product.

        Faithful: floor(x / 2^bits) + e with e in {0, 1} for every |x| < 2^62 (``_trunc.py``),
        never a wrap-around failure."""

    def mul_trunc(self, ctx: OpContext, x: Share, y: Share, bits: int) -> Step[Share]:
        """``truncate(mul(x, y), bits)``: the fixed-point product. A protocol may fuse the two
        (rep3 opens the truncation mask straight from the 3-out-of-3 product: one round less)."""
        z = yield from self.mul(ctx.child("mul"), x, y)
        return (yield from self.truncate(ctx.child("trunc"), z, bits))

    def matmul_trunc(self, ctx: OpContext, x: Share, y: Share, bits: int) -> Step[Share]:
        """``truncate(matmul(x, y), bits)``; see :meth:`mul_trunc`."""
        z = yield from self.matmul(ctx.child("mul"), x, y)
        return (yield from self.truncate(ctx.child("trunc"), z, bits))

    @abc.abstractmethod
    def reveal(self, ctx: OpContext, x: Share, to: str | None = None) -> Step[np.ndarray | None]:
        """Open ``x`` (arith or bool) to every party (``to=None``) or only to ``to``.
        Returns the ring array where it is revealed, None elsewhere."""

    # ---- boolean -----------------------------------------------------------------------------
    def xor(self, x: Share, y: Share) -> Share:
        return self._binary("xor", x, y, np.bitwise_xor, "bool")

    @abc.abstractmethod
    def xor_public(self, x: Share, c: np.ndarray) -> Share: ...

    @abc.abstractmethod
    def and_public(self, x: Share, c: np.ndarray) -> Share: ...

    @abc.abstractmethod
    def and_(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        """Bitwise AND of two boolean shares (multiplication over GF(2), 64 lanes a word)."""

    def shift(self, x: Share, amount: int) -> Share:
        """Logical shift of a boolean share (local): left for amount > 0, right for < 0."""
        if amount >= 0:
            return x.map(lambda p: p << np.uint64(amount))
        return x.map(lambda p: p >> np.uint64(-amount))

    @abc.abstractmethod
    def a2b_summands(self, x: Share) -> list[Share]:
        """Boolean shares of values whose sum mod 2^64 is the arithmetic ``x`` (local).

        E.g. semi2k: each holder's additive share, boolean-shared as (x_i at i, 0 elsewhere).
        An adder circuit over these gives the boolean sharing of x (A2B).
        """

    @abc.abstractmethod
    def bit_to_arith(self, ctx: OpContext, b: Share) -> Step[Share]:
        """Boolean share of single bits (each word 0 or 1) -> arithmetic share of the same 0/1."""

    # ---- helpers for the scheduler -----------------------------------------------------------
    def zeros(self, shape: tuple[int, ...], kind: Kind = "arith") -> Share:
        return self.public(np.zeros(shape, dtype=np.uint64), kind)

    def job_setup(self, ctx: OpContext, job: bytes) -> Step[None] | None:
        """A step the protocol runs once per job in the set-up op (op 0), or None.

        semi2k without a dealer runs its base OTs here."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.name, "parties": list(self.parties), "dealer": self.dealer}
