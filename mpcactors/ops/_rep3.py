"""rep3: 2-out-of-3 replicated secret sharing over Z_2^64 (ABY3), semi-honest, honest majority.

Theory of operation
-------------------
x = x_0 + x_1 + x_2 (mod 2^64; XOR for boolean shares) and party i holds (x_i, x_{i+1}), indices
mod 3 (Araki et al. 2016; Mohassel & Rindal, "ABY3", CCS 2018). Party i shares a PRG seed with
each neighbour. Every communicating op is ONE round but truncation (two):

* mul / matmul / and (ABY3 Sec. 3): z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i, where
  alpha_i = F(k_{i,i+1}) - F(k_{i-1,i}) is a zero sharing from the neighbours' seeds; z is a 3-out-
  of-3 sharing of x y, and party i sends z_i to party i-1, which restores replication. One
  message per party. matmul: the same with @. and: the same over GF(2) (& and XOR).
* truncate: faithful truncation (``_trunc.py``) with a tuple (r, r_mid, r_msb) that party 2
  deals to parties 0 and 1 from the seeds it shares with each (like semi2k's dealer); 0 and 1
  open c = x + 2^62 + r between themselves (party 2 knows r, so it must never see c), compute
  an additive sharing of floor(x / 2^d) + e, e in {0, 1}, and re-replicate it re-randomised
  by k_{0,1} (party 2 knows the tuple's shares, so unmasked it would learn c's top bit). Two
  rounds; no failure for |x| < 2^62 (ABY3's trunc1, used before, failed like SecureML's).
  ``mul_trunc`` / ``matmul_trunc`` feed the product's 3-out-of-3 z straight into the opening
  (party 2 sends z_2 to both), so a fixed-point product stays at two rounds.
* bit_to_arith (ABY3 Sec. 5.4, bit injection via three-party OT): with b = d XOR c, where
  d = b_0 XOR b_1 is known to party 0 (sender) and c = b_2 to parties 1 and 2, party 0 offers
  m_beta = (d XOR beta) - y_0 - y_1 for beta in {0, 1}; two OTs run in parallel, one to each
  of parties 1 and 2 with the other as helper, so both learn y_2 = m_c. One round.
* share: the owner derives x_o and x_{o+1} from the seeds it shares with its neighbours and sends
  x_{o+2} to both others. reveal: party i sends x_{i+1} to party i-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError, ShapeError
from ._checks import (
    ROUND_MARKER,
    U64,
    as_ring,
    broadcast_shape,
    field,
    need_kind,
    owned_value,
    public_shape,
    recv_array,
    recv_arrays,
    recv_shape,
    same_shape,
)
from ._comm import Exchange, Step
from ._context import OpContext
from ._dealer import Dealing
from ._matmul import matmul_shape, ring_matmul
from ._protocol import Kind, Protocol, Share
from ._trunc import masked_share, truncated_share, tuple_specs, tuple_values

__all__ = ["Rep3"]


def _check_bits(x: Share, bits: int) -> None:
    need_kind("truncate", "arith", x)
    if not 0 <= bits <= 62:
        raise ValueError(f"truncate: bits must be in 0..62, not {bits!r}")


def _a(x: Any) -> np.ndarray:
    """ufuncs return numpy scalars for 0-d operands: make them arrays again."""
    return np.asarray(x)


class Rep3(Protocol):
    """Replicated sharing among exactly three parties (module doc).

    Raises:
        ConfigError: not exactly 3 distinct parties, a party not among them, or a dealer given.
    """

    name = "rep3"

    def __init__(
        self, party: str, parties: Sequence[str], *, fxp_bits: int = 18, dealer: str | None = None
    ) -> None:
        super().__init__(party, parties, fxp_bits=fxp_bits, dealer=dealer)
        if len(self.parties) != 3 or len(set(self.parties)) != 3:
            raise ConfigError(
                f"rep3 needs exactly 3 distinct parties, got {list(self.parties)!r}", key="parties"
            )
        if party not in self.parties:
            raise ConfigError(
                f"party {party!r} is not one of {list(self.parties)!r}", key="parties"
            )
        if dealer is not None:
            raise ConfigError(f"rep3 uses no dealer; remove dealer = {dealer!r}", key="dealer")
        self._i = self.parties.index(party)
        self._next = self.parties[(self._i + 1) % 3]
        self._prev = self.parties[(self._i + 2) % 3]

    @property
    def holders(self) -> tuple[str, ...]:
        return self.parties

    # ---- local ops -----------------------------------------------------------------------------
    def public(self, value: np.ndarray, kind: Kind = "arith") -> Share:
        """Component 0 is the value, components 1 and 2 are zero."""
        v = as_ring(value)
        first = v.copy() if self._i == 0 else np.zeros(v.shape, dtype=U64)
        second = v.copy() if self._i == 2 else np.zeros(v.shape, dtype=U64)
        return Share((first, second), v.shape, kind)

    def _binary(self, op: str, x: Share, y: Share, fn: Any, kind: Kind) -> Share:
        need_kind(op, kind, x, y)
        shape = broadcast_shape(op, x.shape, y.shape)
        parts = (_a(fn(x.parts[0], y.parts[0])), _a(fn(x.parts[1], y.parts[1])))
        return Share(parts, shape, kind)

    def _to_component0(self, op: str, x: Share, c: np.ndarray, fn: Any) -> Share:
        """Apply ``fn(., c)`` to component 0 only (held as part 0 by party 0, part 1 by party 2)."""
        c = as_ring(c, "public operand")
        public_shape(op, x, c)
        p0, p1 = x.parts
        if self._i == 0:
            p0 = _a(fn(p0, c))
        elif self._i == 2:
            p1 = _a(fn(p1, c))
        return Share((p0, p1), x.shape, x.kind)

    def _to_both(self, op: str, x: Share, c: np.ndarray, fn: Any) -> Share:
        c = as_ring(c, "public operand")
        public_shape(op, x, c)
        return Share((_a(fn(x.parts[0], c)), _a(fn(x.parts[1], c))), x.shape, x.kind)

    def add_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("add_public", "arith", x)
        return self._to_component0("add_public", x, c, np.add)

    def xor_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("xor_public", "bool", x)
        return self._to_component0("xor_public", x, c, np.bitwise_xor)

    def mul_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("mul_public", "arith", x)
        return self._to_both("mul_public", x, c, np.multiply)

    def and_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("and_public", "bool", x)
        return self._to_both("and_public", x, c, np.bitwise_and)

    def matmul_public(self, x: Share, c: np.ndarray, *, left: bool = False) -> Share:
        need_kind("matmul_public", "arith", x)
        c = as_ring(c, "public operand")
        shape = matmul_shape(c.shape, x.shape) if left else matmul_shape(x.shape, c.shape)
        if left:
            parts = (ring_matmul(c, x.parts[0]), ring_matmul(c, x.parts[1]))
        else:
            parts = (ring_matmul(x.parts[0], c), ring_matmul(x.parts[1], c))
        return Share(parts, shape, "arith")

    def a2b_summands(self, x: Share) -> list[Share]:
        """Summand j is component x_j alone, boolean-shared as (0, .., x_j, .., 0) (ABY3 5.3)."""
        need_kind("a2b_summands", "arith", x)
        out = []
        for j in range(3):
            first = x.parts[0] if j == self._i else np.zeros(x.shape, dtype=U64)
            second = x.parts[1] if j == (self._i + 1) % 3 else np.zeros(x.shape, dtype=U64)
            out.append(Share((first, second), x.shape, "bool"))
        return out

    # ---- share and reveal ------------------------------------------------------------------------
    def share(
        self,
        ctx: OpContext,
        owner: str,
        value: np.ndarray | None,
        shape: tuple[int, ...] | None,
        kind: Kind = "arith",
    ) -> Step[Share]:
        v = owned_value(self.parties, self.party, owner, value, shape)
        o = self.parties.index(owner)
        o_prev, o_next = self.parties[(o + 2) % 3], self.parties[(o + 1) % 3]
        xor = kind == "bool"
        if v is not None:
            mine = ctx.prg(o_prev).random_u64(v.shape)  # x_o, also known to o - 1
            theirs = ctx.prg(o_next).random_u64(v.shape)  # x_{o+1}, also known to o + 1
            rest = _a(v ^ mine ^ theirs) if xor else _a(v - mine - theirs)  # x_{o+2}
            msg = {"shape": list(v.shape), "data": rest}
            yield Exchange(send={o_prev: msg, o_next: msg})
            return Share((mine, theirs), v.shape, kind)
        got = yield Exchange(recv=frozenset({owner}))
        msg = got[owner]
        announced = recv_shape(field(msg, "shape", owner), owner)
        if shape is not None and tuple(shape) != announced:
            raise ShapeError(
                f"share: {owner!r} shares shape {announced}, caller said {tuple(shape)}"
            )
        rest = recv_array(field(msg, "data", owner), announced, owner, "input share")
        seeded = ctx.prg(owner).random_u64(announced)
        if self.party == o_next:  # holds (x_{o+1}, x_{o+2})
            return Share((seeded, rest), announced, kind)
        return Share((rest, seeded), announced, kind)  # o - 1 holds (x_{o+2}, x_o)

    def reveal(self, ctx: OpContext, x: Share, to: str | None = None) -> Step[np.ndarray | None]:
        """Party i sends x_{i+1} (its second part) to party i - 1, which lacks exactly that."""
        if to is not None and to not in self.parties:
            raise ValueError(f"reveal: {to!r} is not a party of {list(self.parties)!r}")
        if to is None:
            got = yield Exchange(send={self._prev: x.parts[1]}, recv=frozenset({self._next}))
        elif to == self._prev:
            yield Exchange(send={to: x.parts[1]})
            return None
        elif to != self.party:  # the third party: a round marker only (see ROUND_MARKER)
            yield Exchange(send={to: ROUND_MARKER})
            return None
        else:
            got = yield Exchange(recv=frozenset({self._next, self._prev}))
        missing = recv_array(got[self._next], x.shape, self._next, "revealed share")
        if x.kind == "bool":
            return _a(x.parts[0] ^ x.parts[1] ^ missing)
        return _a(x.parts[0] + x.parts[1] + missing)

    # ---- products ----------------------------------------------------------------------------------
    def _zero_share(self, ctx: OpContext, shape: tuple[int, ...], xor: bool) -> np.ndarray:
        """alpha_i = F(k_{i,i+1}) - F(k_{i-1,i}): the three sum (XOR) to zero."""
        mine = ctx.prg(self._next).random_u64(shape)
        other = ctx.prg(self._prev).random_u64(shape)
        if xor:
            mine ^= other
        else:
            mine -= other
        return mine

    def _reshare(
        self, ctx: OpContext, z: np.ndarray, shape: tuple[int, ...], kind: Kind
    ) -> Step[Share]:
        """3-out-of-3 z_i -> replicated (z_i, z_{i+1}): send z_i to party i - 1."""
        got = yield Exchange(send={self._prev: z}, recv=frozenset({self._next}))
        return Share(
            (z, recv_array(got[self._next], shape, self._next, "reshared product")), shape, kind
        )

    def mul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        need_kind("mul", "arith", x, y)
        shape = same_shape("mul", x, y)
        (x0, x1), (y0, y1) = x.parts, y.parts
        z = self._zero_share(ctx, shape, xor=False)
        z += _a(x0 * (y0 + y1))
        z += _a(x1 * y0)
        return (yield from self._reshare(ctx, z, shape, "arith"))

    def matmul(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        need_kind("matmul", "arith", x, y)
        shape = matmul_shape(x.shape, y.shape)
        (x0, x1), (y0, y1) = x.parts, y.parts
        z = self._zero_share(ctx, shape, xor=False)
        z += ring_matmul(x0, _a(y0 + y1))
        z += ring_matmul(x1, y0)
        return (yield from self._reshare(ctx, z, shape, "arith"))

    def and_(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        need_kind("and_", "bool", x, y)
        shape = same_shape("and_", x, y)
        (x0, x1), (y0, y1) = x.parts, y.parts
        z = self._zero_share(ctx, shape, xor=True)
        z ^= _a(x0 & (y0 ^ y1))
        z ^= _a(x1 & y0)
        return (yield from self._reshare(ctx, z, shape, "bool"))

    # ---- truncation --------------------------------------------------------------------------------
    def truncate(self, ctx: OpContext, x: Share, bits: int) -> Step[Share]:
        """Faithful truncation (``_trunc.py``), floor(x / 2^d) + e, e in {0, 1}, |x| < 2^62.

        Two rounds (:meth:`_open_truncated`): parties 0 and 1 hold x as the 2-out-of-2 sharing
        a = x_0 + x_1 (party 0), b = x_2 (party 1); party 2 deals the tuple.
        """
        _check_bits(x, bits)
        if bits == 0:
            return x
        if self._i == 2:
            return (yield from self._open_truncated(ctx, None, x.shape, bits, fused=False))
        mine = _a(x.parts[0] + x.parts[1]) if self._i == 0 else x.parts[1]
        return (yield from self._open_truncated(ctx, mine, x.shape, bits, fused=False))

    def mul_trunc(self, ctx: OpContext, x: Share, y: Share, bits: int) -> Step[Share]:
        """Fixed-point product trunc(x y, d) in two rounds, as many as mul + ABY3 trunc1 took:
        the 3-out-of-3 product z_i (:meth:`mul`) feeds the truncation's opening directly, in
        place of the resharing round."""
        need_kind("mul", "arith", x, y)
        shape = same_shape("mul", x, y)
        if not 0 <= bits <= 62:
            raise ValueError(f"truncate: bits must be in 0..62, not {bits!r}")
        if bits == 0:
            return (yield from self.mul(ctx, x, y))
        (x0, x1), (y0, y1) = x.parts, y.parts
        z = self._zero_share(ctx, shape, xor=False)
        z += _a(x0 * (y0 + y1))
        z += _a(x1 * y0)
        return (yield from self._open_truncated(ctx, z, shape, bits, fused=True))

    def matmul_trunc(self, ctx: OpContext, x: Share, y: Share, bits: int) -> Step[Share]:
        """trunc(x @ y, d) in two rounds, like :meth:`mul_trunc`."""
        need_kind("matmul", "arith", x, y)
        shape = matmul_shape(x.shape, y.shape)
        if not 0 <= bits <= 62:
            raise ValueError(f"truncate: bits must be in 0..62, not {bits!r}")
        if bits == 0:
            return (yield from self.matmul(ctx, x, y))
        (x0, x1), (y0, y1) = x.parts, y.parts
        z = self._zero_share(ctx, shape, xor=False)
        z += ring_matmul(x0, _a(y0 + y1))
        z += ring_matmul(x1, y0)
        return (yield from self._open_truncated(ctx, z, shape, bits, fused=True))

    def _open_truncated(
        self,
        ctx: OpContext,
        mine: np.ndarray | None,
        shape: tuple[int, ...],
        bits: int,
        fused: bool,
    ) -> Step[Share]:
        """Truncate the value whose additive summands the parties pass as ``mine``, in two
        rounds, with a tuple that party 2 deals to parties 0 and 1:

        1. Party 2 deals r (r_0 from k_{0,2}, r_1 from k_{1,2}: free) and sends party 1 the
           corrections of r_mid and r_msb (``_dealer.py``). Parties 0 and 1 open
           c = x + 2^62 + r between themselves: party 0 sends its summand + r_0 + 2^62, party 1
           its summand + r_1. ``fused`` (a product's 3-out-of-3 z): party 2 has a summand too,
           z_2, and sends it to both (z_2 carries -F(k_{1,2}), hidden from party 0, and
           F(k_{2,0}), hidden from party 1). Party 2 knows r and the tuple but never sees c;
           parties 0 and 1 see c (uniform: r is) and one share each of the tuple.
        2. Parties 0 and 1 compute additive y_0 + y_1 = floor(x / 2^d) + e (``_trunc.py``) and
           re-replicate: with u, t from k_{0,1}, the components are (y_0 - u, t, y_1 + u - t);
           party 0 sends the first, party 1 the third to party 2. To party 2, who dealt the
           tuple (y_1 alone would tell it c's top bit, hence the carry of x + r), both are
           uniform: this re-randomisation keeps the dealer blind.
        """
        p0, p1, p2 = self.parties
        own, corrections = Dealing(self.party, (p0, p1), p2).deal(
            ctx, tuple_specs(shape), lambda totals: tuple_values(bits, totals)
        )
        if own is None:  # party 2: deal (and pass z_2), then receive the new components
            to_p1: dict[str, Any] = {"d": tuple(corrections or ())}
            send: dict[str, Any] = {p1: to_p1}
            if fused:
                to_p1["z"] = mine
                send[p0] = {"z": mine}
            yield Exchange(send=send)
            got = yield Exchange(recv=frozenset({p0, p1}))
            comp0 = recv_array(got[p0], shape, p0, "truncated share")
            comp2 = recv_array(got[p1], shape, p1, "truncated share")
            return Share((comp2, comp0), shape, "arith")
        if mine is None:  # pragma: no cover - callers pass a summand at parties 0 and 1
            raise RuntimeError("truncation summand missing")
        first = self._i == 0
        other = p1 if first else p0
        r_i, mid_i, msb_i = own  # at party 1, mid_i and msb_i arrive from party 2
        if r_i is None:  # pragma: no cover - r is free: every holder draws it
            raise RuntimeError("truncation mask missing")
        c = masked_share(mine, r_i, first)
        recv = {other, p2} if (fused or not first) else {other}
        got = yield Exchange(send={other: c}, recv=frozenset(recv))
        c = _a(c + recv_array(got[other], shape, other, "masked value"))
        if fused:
            c += recv_array(field(got[p2], "z", p2), shape, p2, "product share")
        if mid_i is None or msb_i is None:  # party 1, the last holder
            mid_i, msb_i = recv_arrays(field(got[p2], "d", p2), (shape, shape), p2, "correction")
        y = truncated_share(c, mid_i, msb_i, bits, first)
        pair = ctx.prg(other)
        u, t = pair.random_u64(shape), pair.random_u64(shape)
        if first:
            y -= u
            yield Exchange(send={p2: y})
            return Share((y, t), shape, "arith")
        y += u
        y -= t
        yield Exchange(send={p2: y})
        return Share((t, y), shape, "arith")

    # ---- boolean -> arithmetic ---------------------------------------------------------------------
    def bit_to_arith(self, ctx: OpContext, b: Share) -> Step[Share]:
        """[b]^B -> [b]^A for bits in one round by two parallel 3-party OTs (module doc).

        Math: roles S = party 0 (knows d = b_0 XOR b_1), R = party 1 and H = party 2 (both know
        c = b_2). y_0 comes from k_{0,2}, y_1 from k_{0,1}; S forms m_beta = (d XOR beta) - y_0 - y_1.
        OT to R: S sends m_beta XOR w_beta (w from k_{0,2}), H sends w_c; OT to H: S sends
        m_beta XOR v_beta (v from k_{0,1}), R sends v_c. Both get y_2 = m_c = b - y_0 - y_1; R
        never sees w_{1-c}, H never sees v_{1-c}, S receives nothing.
        """
        need_kind("bit_to_arith", "bool", b)
        shape = b.shape
        one = U64(1)
        s, r_, h = self.parties
        if self._i == 0:
            with_h, with_r = ctx.prg(h), ctx.prg(r_)
            y0, w0, w1 = (with_h.random_u64(shape) for _ in range(3))
            y1, v0, v1 = (with_r.random_u64(shape) for _ in range(3))
            d = _a((b.parts[0] ^ b.parts[1]) & one)
            m0 = _a(d - y0 - y1)
            m1 = _a((d ^ one) - y0 - y1)
            yield Exchange(send={r_: (_a(m0 ^ w0), _a(m1 ^ w1)), h: (_a(m0 ^ v0), _a(m1 ^ v1))})
            return Share((y0, y1), shape, "arith")
        c = _a(b.parts[1] if self._i == 1 else b.parts[0]) & one
        if self._i == 1:  # R: knows y_1 and v, receives w_c from H
            g = ctx.prg(s)
            y1, v0, v1 = (g.random_u64(shape) for _ in range(3))
            mine, other, helper = (v0, v1), h, h
        else:  # H: knows y_0 and w, receives v_c from R
            g = ctx.prg(s)
            y0, w0, w1 = (g.random_u64(shape) for _ in range(3))
            mine, other, helper = (w0, w1), r_, r_
        chosen_mask = _a(np.where(c == one, mine[1], mine[0]))
        got = yield Exchange(send={other: chosen_mask}, recv=frozenset({s, helper}))
        pair = got[s]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            recv_array(pair, shape, s, "OT messages")  # raises ProtocolError
        e0 = recv_array(pair[0], shape, s, "OT message")
        e1 = recv_array(pair[1], shape, s, "OT message")
        mask = recv_array(got[helper], shape, helper, "OT mask")
        y2 = _a(np.where(c == one, e1, e0) ^ mask)
        if self._i == 1:
            return Share((y1, y2), shape, "arith")
        return Share((y2, y0), shape, "arith")
