"""semi2k: additive secret sharing over Z_2^64 among n >= 2 holders, semi-honest, with a dealer.

Theory of operation
-------------------
Holder i keeps x_i with x = sum x_i (mod 2^64), or x = XOR x_i for boolean shares. Linear ops are
local. Products use Beaver triples (Beaver 1991) made by a dealer that sends only a correction
share to the last holder (see ``_dealer.py``), so every communicating op is ONE round:

* mul / matmul / and: open e = x - a, f = y - b (holders to holders) while the dealer sends c's
  correction; then z_i = c_i + e b_i + a_i f (+ e f at holder 0). matmul: C = A @ B.
* truncate: faithful truncation with a dealt (r, bits d..62 of r, msb r) (``_trunc.py``;
  Damgard et al. 2019, Escudero et al. 2020; SPU's TruncAPr), any number of holders: holders
  open c = x + 2^62 + r among themselves while the dealer's corrections travel in the same
  round. One round; result floor(x / 2^d) + e, e in {0, 1}, never a failure for |x| < 2^62, and
  c is uniform. (The SecureML local truncation used before for 2 holders failed with
  probability ~ |x| / 2^63 by ~2^(64-d): products of 10^4 blew up a few times per 10^6.)
  Two holders without a dealer instead share the wrap bit of their shares of x + 2^62 (one
  correlated OT per element, made from the shape, and a 1-bit opening each; ``_trunc.py``):
  the same result and range.
* bit_to_arith: a dealt random bit r with a boolean and an arithmetic sharing; open c = b XOR r
  (packed bits) and set [b] = c + (1 - 2c) [r]. One round.
* share: the owner sends the shape to everyone and data to at most one holder; the other holders
  expand their shares from the PRG they share with the owner. reveal: one round; holders first
  add a fresh zero sharing from their pairwise seeds, which the dealer lacks (a raw product
  share z_i = c_i + e b_i + a_i f lets the dealer, who knows a_i, b_i, c_i, solve for e, f).

Who sees what: every opening inside an op (Beaver's e, f; truncation's x + r; B2A's b XOR r)
goes from holders to holders only and is masked by dealt randomness the holders do not know;
the dealer receives nothing but revealed values, as uniform sharings. See docs/PROTOCOLS.md.

Dealer modes: ``dealer="<party>"`` (a party of the job that holds no shares: it learns nothing
but shapes) or ``dealer="trusted-first-party"``, where the first holder deals to itself and the
others: it knows every triple, so it can recover every masked value. INSECURE, for tests and
demos only; constructing it logs a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError, ShapeError
from .._log import get_logger
from ..ot._base import OtError
from ..ot._softspoken import K as SOFTSPOKEN_K
from ..ot._softspoken import check_k
from ._checks import (
    ROUND_MARKER,
    U64,
    as_ring,
    broadcast_shape,
    field,
    fresh,
    need_kind,
    owned_value,
    pack_bits,
    public_shape,
    recv_array,
    recv_arrays,
    recv_bits,
    recv_shape,
    same_shape,
)
from ._comm import Exchange, Step, gather
from ._context import OpContext
from ._dealer import Dealing, Dealt, Finish, Mode
from ._matmul import matmul_shape, ring_matmul
from ._ot_pairwise import PairwiseSource
from ._ot_triples import Made, OtPair, OtSource, matrix_route, ot_setup
from ._protocol import Kind, Protocol, Share
from ._semi2k_prep import Prepared, Source, fitting, pair, pairwise, prepare_product
from ._trunc import (
    masked_share,
    truncated_share,
    tuple_specs,
    tuple_values,
    wrap_opening,
    wrap_truncated_share,
)

__all__ = ["NO_DEALER", "TRUSTED_FIRST_PARTY", "Semi2k"]

TRUSTED_FIRST_PARTY = "trusted-first-party"
NO_DEALER = "none"


class Semi2k(Protocol):
    """Additive sharing among the holders with dealer-made correlated randomness (module doc).

    Args:
        party: this party.
        parties: every party of the job, the dealer included.
        fxp_bits: fixed-point fractional bits.
        dealer: a party of the job that deals and holds no shares, ``"trusted-first-party"``
            (insecure: the first holder deals), or None / ``"none"``: no dealer, the holders
            make their correlations by oblivious transfer, two holders with each other
            (``_ot_triples.py``), more by pairs (``_ot_pairwise.py``).
        softspoken_k: without a dealer, SoftSpoken's bits per small VOLE (1, 2, 4 or 8; 1 is
            IKNP): ``U`` is ``16 / k`` bytes per OT, the PRG work grows as ``2^k / k``. 2 (the
            default) is the least CPU per byte saved; 4 sends ~30 % fewer bytes per product for
            ~35 % more OT CPU, for links where bandwidth, not CPU, is the limit.
        matrix_triples: without a dealer, how two holders make matrix triples: ``"ot"``
            (Gilboa products, traffic ~ m k n), ``"he"`` (lattice HE through TenSEAL,
            ``_he_triples.py``, traffic ~ m k + m n, where the shape fits its parameters) or
            ``"auto"``: HE where TenSEAL imports and its modelled cost is below OT's.
        mul_triples: the same for elementwise triples (``"he"``: BFV's SIMD slots, ``_he_simd.py``).

    Raises:
        ConfigError: a dealer that is not a party, fewer than 2 holders, a bad party list, a bad
            ``softspoken_k``, an unknown triple route, or ``"he"`` where TenSEAL does not import.
    """

    name = "semi2k"
    # where a node runs big self-contained steps (HE matrix triples) off its own GIL: set by the
    # runtime (mpcactors._offload.run_in_process); None computes them in this process
    offload: Callable[[str, Mapping[str, Any]], Step[Any]] | None = None

    def __init__(
        self,
        party: str,
        parties: Sequence[str],
        *,
        fxp_bits: int = 18,
        dealer: str | None = None,
        softspoken_k: int = SOFTSPOKEN_K,
        matrix_triples: str = "auto",
        mul_triples: str = "auto",
    ) -> None:
        super().__init__(party, parties, fxp_bits=fxp_bits, dealer=dealer)
        try:
            self.softspoken_k = check_k(softspoken_k)
        except ValueError as exc:
            raise ConfigError(str(exc), key="softspoken_k") from None
        if len(set(self.parties)) != len(self.parties):
            raise ConfigError(f"party names repeat in {list(self.parties)!r}", key="parties")
        if party not in self.parties:
            raise ConfigError(
                f"party {party!r} is not one of {list(self.parties)!r}", key="parties"
            )
        self._ot: dict[str, OtPair] | None = None
        if dealer is None or dealer == NO_DEALER:
            holders = self.parties
            dealing = None
        elif dealer == TRUSTED_FIRST_PARTY:
            holders = self.parties
            dealing = holders[0]
            get_logger(party=party, protocol="semi2k").warning(
                "insecure_trusted_first_party_dealer",
                dealer=dealing,
                detail="the first holder makes every Beaver triple and can unmask every value; "
                "use only for tests and demos",
            )
        elif dealer in self.parties:
            holders = tuple(p for p in self.parties if p != dealer)
            dealing = dealer
        else:
            raise ConfigError(
                f"semi2k dealer {dealer!r} is not a party of the job {list(self.parties)!r}",
                key="dealer",
            )
        if len(holders) < 2:
            raise ConfigError(
                f"semi2k needs at least 2 share holders besides the dealer, got {list(holders)!r}",
                key="parties",
            )
        self._holders = holders
        self._dealing = Dealing(party, holders, dealing) if dealing is not None else None
        # "ot" or "he" (checked always, resolved only where the holders make their own triples)
        self.matrix_triples = matrix_route(matrix_triples, resolve=dealing is None)
        self.mul_triples = matrix_route(mul_triples, resolve=dealing is None, key="mul_triples")
        self._first = holders[0]
        self._last = holders[-1]

    @property
    def holders(self) -> tuple[str, ...]:
        return self._holders

    @property
    def dealerless(self) -> bool:
        """True when the holders make their own correlations by OT (no dealer)."""
        return self._dealing is None

    def job_setup(self, ctx: OpContext, job: bytes) -> Step[None] | None:
        """Without a dealer: base OTs with every other holder, run in the job's set-up op."""
        if self._dealing is not None:
            return None
        return self._setup_ot(job)

    def _setup_ot(self, job: bytes) -> Step[None]:
        peers = [h for h in self._holders if h != self.party]
        pairs = yield from ot_setup(self.party, peers, job, self.softspoken_k)
        self._ot = {
            p: dataclasses.replace(x, matrix=self.matrix_triples, mul=self.mul_triples, offload=self.offload)
            for p, x in pairs.items()
        }

    def _source(self, ctx: OpContext) -> Source:
        """The op's maker of correlations: with the other holder, or with every other holder by
        pairs when there are more than two."""
        if self._ot is None:
            raise OtError(
                f"semi2k at {self.party!r}: no base OTs with the other holders (the job's set-up "
                "op did not run them)"
            )
        if len(self._holders) > 2:
            return PairwiseSource(ctx, self.party, self._holders, self._ot)
        (pair,) = self._ot.values()
        return OtSource(ctx, self.party, self._holders, pair)

    def _pair_source(self, ctx: OpContext) -> OtSource:
        return pair(self._source(ctx))

    @property
    def insecure(self) -> bool:
        """True in the trusted-first-party mode."""
        return self.dealer == TRUSTED_FIRST_PARTY

    # ---- local ops -----------------------------------------------------------------------------
    def _new(self, parts: tuple[np.ndarray, ...], shape: tuple[int, ...], kind: Kind) -> Share:
        return Share(parts if self.holds else (), shape, kind)

    def public(self, value: np.ndarray, kind: Kind = "arith") -> Share:
        v = as_ring(value)
        if not self.holds:
            return Share((), v.shape, kind)
        part = v.copy() if self.party == self._first else np.zeros(v.shape, dtype=U64)
        return Share((part,), v.shape, kind)

    def _binary(self, op: str, x: Share, y: Share, fn: Any, kind: Kind) -> Share:
        need_kind(op, kind, x, y)
        shape = broadcast_shape(op, x.shape, y.shape)
        if not self.holds:
            return Share((), shape, kind)
        return Share((fresh(fn, x.parts[0], y.parts[0]),), shape, kind)

    def _with_public(self, op: str, x: Share, c: np.ndarray, fn: Any, everyone: bool) -> Share:
        c = as_ring(c, "public operand")
        public_shape(op, x, c)
        if not self.holds or not (everyone or self.party == self._first):
            return x
        return Share((fresh(fn, x.parts[0], c),), x.shape, x.kind)

    def add_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("add_public", "arith", x)
        return self._with_public("add_public", x, c, np.add, everyone=False)

    def mul_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("mul_public", "arith", x)
        return self._with_public("mul_public", x, c, np.multiply, everyone=True)

    def xor_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("xor_public", "bool", x)
        return self._with_public("xor_public", x, c, np.bitwise_xor, everyone=False)

    def and_public(self, x: Share, c: np.ndarray) -> Share:
        need_kind("and_public", "bool", x)
        return self._with_public("and_public", x, c, np.bitwise_and, everyone=True)

    def matmul_public(self, x: Share, c: np.ndarray, *, left: bool = False) -> Share:
        need_kind("matmul_public", "arith", x)
        c = as_ring(c, "public operand")
        shape = matmul_shape(c.shape, x.shape) if left else matmul_shape(x.shape, c.shape)
        if not self.holds:
            return Share((), shape, "arith")
        part = ring_matmul(c, x.parts[0]) if left else ring_matmul(x.parts[0], c)
        return Share((part,), shape, "arith")

    def a2b_summands(self, x: Share) -> list[Share]:
        need_kind("a2b_summands", "arith", x)
        out = []
        for h in self._holders:
            if not self.holds:
                out.append(Share((), x.shape, "bool"))
            elif h == self.party:
                out.append(Share((x.parts[0],), x.shape, "bool"))
            else:
                out.append(Share((np.zeros(x.shape, dtype=U64),), x.shape, "bool"))
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
        xor = kind == "bool"
        # The owner keeps the remainder if it holds shares; otherwise the last holder gets it.
        receiver = None if owner in self._holders else self._last
        expanders = [h for h in self._holders if h != owner and h != receiver]
        if v is not None:
            rest = v.copy()
            for h in expanders:
                s = ctx.prg(h).random_u64(v.shape)
                if xor:
                    rest ^= s
                else:
                    rest -= s
            send: dict[str, dict[str, Any]] = {p: {"shape": list(v.shape)} for p in ctx.others}
            if receiver is not None:
                send[receiver]["data"] = rest
            yield Exchange(send=send)
            return (
                self._new((rest,), v.shape, kind) if receiver is None else Share((), v.shape, kind)
            )
        got = yield Exchange(recv=frozenset({owner}))
        msg = got[owner]
        announced = recv_shape(field(msg, "shape", owner), owner)
        if shape is not None and tuple(shape) != announced:
            raise ShapeError(
                f"share: {owner!r} shares shape {announced}, caller said {tuple(shape)}"
            )
        if not self.holds:
            return Share((), announced, kind)
        if self.party == receiver:
            data = recv_array(field(msg, "data", owner), announced, owner, "input share")
            return Share((data,), announced, kind)
        return Share((ctx.prg(owner).random_u64(announced),), announced, kind)

    def _zero_share(self, ctx: OpContext, shape: tuple[int, ...], xor: bool) -> np.ndarray:
        """A fresh sharing of zero among the holders, from their pairwise seeds (no round).

        Holder i adds F(k_ij) for every holder j after it and subtracts it for every holder
        before it (XOR for boolean shares). A dealer holds none of the k_ij, so to it the
        re-randomised shares are uniform given their sum.
        """
        me = self._holders.index(self.party)
        out = np.zeros(shape, dtype=U64)
        for j, h in enumerate(self._holders):
            if j == me:
                continue
            s = ctx.prg(h).random_u64(shape)
            if xor:
                out ^= s
            elif j > me:
                out += s
            else:
                out -= s
        return out

    def reveal(self, ctx: OpContext, x: Share, to: str | None = None) -> Step[np.ndarray | None]:
        """Open ``x`` to every party or to ``to``, in one round.

        Holders first re-randomise their shares with a fresh zero sharing (:meth:`_zero_share`):
        a revealed product's raw shares z_i = c_i + e b_i + a_i f (+ e f) would let the dealer,
        who knows every a_i, b_i, c_i, solve for e and f and so learn both factors. After the
        re-randomisation every target sees a uniform sharing of the value and nothing else.
        """
        if to is not None and to not in self.parties:
            raise ValueError(f"reveal: {to!r} is not a party of {list(self.parties)!r}")
        targets = [p for p in self.parties if to is None or p == to]
        xor = x.kind == "bool"
        mine: np.ndarray | None = ROUND_MARKER  # a dealer only marks the round
        if self.holds:
            mine = self._zero_share(ctx, x.shape, xor)
            (np.bitwise_xor if xor else np.add)(mine, x.parts[0], out=mine)
        send = {p: mine for p in targets if p != self.party} if self.holds or to else {}
        wants = self.party in targets
        if to is None:  # everyone hears the holders
            recv = frozenset(h for h in self._holders if h != self.party)
        else:  # `to` hears every other party, so every party has this one round
            recv = frozenset(p for p in self.parties if p != self.party) if wants else frozenset()
        got = yield Exchange(send=send, recv=recv)
        if not wants:
            return None
        holders = [h for h in self._holders if h != self.party]
        parts = [recv_array(got[h], x.shape, h, "revealed share") for h in holders]
        if mine is not None:
            parts.append(mine)
        op = np.bitwise_xor if xor else np.add
        out = fresh(op, parts[0], parts[1])
        for p in parts[2:]:
            op(out, p, out=out)
        return out

    # ---- one dealt object + one opening, in one round ------------------------------------------------
    def _dealt_round(
        self,
        ctx: OpContext,
        specs: Sequence[Dealt],
        finish: Finish,
        opening: Callable[[list[Any]], Any],
        make: Callable[[Source], Made] | None,
        prepared: list[np.ndarray] | None = None,
    ) -> Step[tuple[list[np.ndarray] | None, Any, dict[str, Any]]]:
        """Deal one object (``_dealer.py``) and, in the same round, send ``opening(own)`` (which
        may use only the free arrays) to every other holder. Without a dealer ``make`` makes the
        object by OT (:meth:`_ot_round`), unless it was ``prepared`` ahead (:meth:`prepare`): then
        only the opening's round is left, as with a dealer.

        Returns:
            ``(own, mine, theirs)``: this holder's dealt arrays with the corrections filled in,
            its own opening and ``{holder: opening}`` of the others; ``(None, None, {})`` at a
            non-holder dealer.
        """
        if self._dealing is None:
            if prepared is not None:
                mine = opening(prepared)
                return prepared, mine, (yield from _open(self._peers(), mine))
            if make is None:
                raise RuntimeError("semi2k: this object has no maker by OT (internal)")
            return (yield from self._ot_round(ctx, specs, opening, make))
        own, corrections = self._dealing.deal(ctx, specs, finish)
        dealing = self._dealing.dealing
        peers = [h for h in self._holders if h != self.party]
        sends: dict[str, dict[str, Any]] = {}
        if corrections is not None:
            sends.setdefault(self._last, {})["d"] = tuple(corrections)
        mine = None
        if own is not None:
            mine = opening(own)
            for h in peers:
                sends.setdefault(h, {})["o"] = mine
        recv = set(peers) if own is not None else set()
        if self.party == self._last:
            recv.add(dealing)
        got = yield Exchange(send=sends, recv=frozenset(recv))
        if own is None:
            return None, None, {}
        if self.party == self._last:
            shapes = [sp.shape for sp in specs if sp.corrected]
            dealt = iter(
                recv_arrays(field(got[dealing], "d", dealing), shapes, dealing, "correction")
            )
            own = [next(dealt) if a is None else a for a in own]
        return own, mine, {h: field(got[h], "o", h) for h in peers}  # type: ignore[return-value]

    def _ot_round(
        self,
        ctx: OpContext,
        specs: Sequence[Dealt],
        opening: Callable[[list[Any]], Any],
        make: Callable[[Source], Made],
    ) -> Step[tuple[list[np.ndarray] | None, Any, dict[str, Any]]]:
        """The object made by OT with the other holders (``_ot_triples.py``, ``_ot_pairwise.py``),
        the opening sent in the OT's first round when the free arrays are drawn locally
        (triples, random bits: one extra round in all), after the OT otherwise (truncation
        tuples of more than two holders)."""
        early, step = make(self._source(ctx))
        peers = self._peers()
        if all(e is not None for e, s in zip(early, specs) if not s.corrected):
            mine = opening(early)
            own, got = yield from gather([step, _open(peers, mine)])
        else:
            own = yield from step
            mine = opening(own)
            got = yield from _open(peers, mine)
        return own, mine, got

    # ---- Beaver products ---------------------------------------------------------------------------
    def _beaver(
        self,
        ctx: OpContext,
        x: Share,
        y: Share,
        out_shape: tuple[int, ...],
        boolean: bool,
        matrix: bool,
        prepared: list[np.ndarray] | None = None,
    ) -> Step[Share]:
        """z = x * y (or x @ y, or x & y) with one dealt (or ``prepared``) triple, in one round
        (module doc).

        Math (Beaver 1991; CrypTen beaver.py): with a dealt triple c = a b, open e = x - a and
        f = y - b; then x y = c + e b + a f + e f, and holder i's share is
        z_i = c_i + e b_i + a_i f, plus e f at holder 0 (computed as e (b_0 + f)).
        Over GF(2) (and_): + and - are XOR, * is AND. matmul: C = A @ B, products are @.
        """
        mode: Mode = "xor" if boolean else "add"
        specs = [Dealt(x.shape, mode), Dealt(y.shape, mode), Dealt(out_shape, mode, corrected=True)]
        mul: Any
        plus: Any
        minus: Any
        if boolean:
            mul, plus, minus = np.bitwise_and, np.bitwise_xor, np.bitwise_xor
        else:
            mul, plus, minus = (ring_matmul if matrix else np.multiply), np.add, np.subtract

        def finish(totals: list[Any]) -> list[np.ndarray]:
            if matrix:
                return [ring_matmul(totals[0], totals[1])]
            return [np.asarray(mul(totals[0], totals[1], out=totals[0]))]  # totals are ours

        def make(src: Source) -> Made:
            if boolean:
                return src.and_triple(x.shape)
            if matrix:
                return src.matrix_triple(x.shape, y.shape)
            return src.triple(x.shape)

        own, mine, theirs = yield from self._dealt_round(
            ctx,
            specs,
            finish,
            lambda own: (fresh(minus, x.parts[0], own[0]), fresh(minus, y.parts[0], own[1])),
            make,
            fitting(prepared, (x.shape, y.shape, out_shape)),
        )
        if own is None:
            return Share((), out_shape, x.kind)
        a, b, c = own  # a, b: this holder's own PRG arrays (or prepared ones), overwritten; c: read only
        opened = [
            recv_arrays(msg, (x.shape, y.shape), h, "masked operands") for h, msg in theirs.items()
        ]
        e, f = fresh(plus, mine[0], opened[0][0]), fresh(plus, mine[1], opened[0][1])
        for e_h, f_h in opened[1:]:
            plus(e, e_h, out=e)
            plus(f, f_h, out=f)
        if self.party == self._first:
            plus(b, f, out=b)  # e (b_0 + f) = e b_0 + e f
        if matrix:
            z = ring_matmul(e, b)
            z += ring_matmul(a, f)
        else:
            z = mul(e, b, out=e)
            plus(z, mul(a, f, out=a), out=z)
        plus(z, c, out=z)
        return Share((z,), out_shape, x.kind)

    def mul(self, ctx: OpContext, x: Share, y: Share, prepared: Prepared | None = None) -> Step[Share]:
        """Elementwise product; ``prepared``: its triple made ahead by :meth:`prepare`."""
        need_kind("mul", "arith", x, y)
        shape = same_shape("mul", x, y)
        triple = prepared.triple if prepared is not None else None
        return (yield from self._beaver(ctx, x, y, shape, boolean=False, matrix=False, prepared=triple))

    def matmul(self, ctx: OpContext, x: Share, y: Share, prepared: Prepared | None = None) -> Step[Share]:
        """Matrix product; ``prepared``: its matrix triple made ahead by :meth:`prepare`."""
        need_kind("matmul", "arith", x, y)
        shape = matmul_shape(x.shape, y.shape)
        triple = prepared.triple if prepared is not None else None
        return (yield from self._beaver(ctx, x, y, shape, boolean=False, matrix=True, prepared=triple))

    # ---- preprocessing ahead, from shapes ----------------------------------------------------------
    @property
    def prepares(self) -> bool:
        """True when products can have their correlations made ahead (no dealer: the dealer's
        own part already needs only shapes and runs ahead)."""
        return self._dealing is None

    def prepare(
        self, ctx: OpContext, kind: str, xshape: tuple[int, ...], yshape: tuple[int, ...], bits: int
    ) -> Step[Prepared]:
        """The correlations of one product made from shapes alone, before its operands exist:
        the triple (``kind`` "mul": operands of one shape; "matmul": a matrix triple) and, for
        ``bits`` > 0, the truncation's correlation (two holders: the wrap bit's; more: the
        tuple). The scheduler runs this as an op of its own as soon as the product is built, so
        the product's online part is the dealer's: the opening, then the truncation's opening
        (:meth:`mul` / :meth:`mul_trunc` with ``prepared``)."""
        trunc = self._source(ctx.child("trunc")) if bits else None
        return (yield from prepare_product(self._source(ctx.child("mul")), trunc, kind, xshape, yshape, bits))

    def and_(self, ctx: OpContext, x: Share, y: Share) -> Step[Share]:
        need_kind("and_", "bool", x, y)
        shape = same_shape("and_", x, y)
        return (yield from self._beaver(ctx, x, y, shape, boolean=True, matrix=False))

    # ---- truncation ------------------------------------------------------------------------------
    def truncate(self, ctx: OpContext, x: Share, bits: int) -> Step[Share]:
        """Faithful truncation, floor(x / 2^bits) + e with e in {0, 1}, for |x| < 2^62, in one
        round with a dealt tuple (``_trunc.py``: Damgard et al. 2019, Escudero et al. 2020).

        The dealer deals (r free; r_mid, r_msb corrected) from the shape alone; holders open
        c = x + 2^62 + r among themselves (never to the dealer, who knows r) while the dealer's
        correction travels in the same round. Two holders without a dealer compute the wrap bit
        of their shares instead, from one correlated OT per element whose first round carries
        the 1-bit openings (``_trunc.py``, "Two holders without a dealer"): two rounds.
        """
        need_kind("truncate", "arith", x)
        if not 0 <= bits <= 62:
            raise ValueError(f"truncate: bits must be in 0..62, not {bits!r}")
        if bits == 0:
            return x
        shape = x.shape
        first = self.party == self._first
        if self._dealing is None and len(self._holders) == 2:
            early, bits_step = self._pair_source(ctx).trunc_bits(shape, bits)
            a_i = early[0]
            if a_i is None:
                raise RuntimeError("semi2k: truncation bits without the early bit (internal)")
            o_i = wrap_opening(x.parts[0], a_i, first)
            own, got = yield from gather([bits_step, _open(self._peers(), pack_bits(o_i))])
            return self._wrap_share(x, own, o_i, got, bits)
        own, c_i, theirs = yield from self._dealt_round(
            ctx,
            tuple_specs(shape),
            lambda totals: tuple_values(bits, totals),
            lambda own: masked_share(x.parts[0], own[0], first),
            lambda src: pairwise(src).trunc_tuple(shape, bits),  # more than two holders
        )
        if own is None:
            return Share((), shape, "arith")
        c = fresh(np.add, c_i, 0)
        for h, msg in theirs.items():
            np.add(c, recv_array(msg, shape, h, "masked value"), out=c)
        return Share((truncated_share(c, own[1], own[2], bits, first),), shape, "arith")

    def _peers(self) -> list[str]:
        """The other holders."""
        return [h for h in self._holders if h != self.party]

    def _wrap_share(self, x: Share, own: list[np.ndarray], o_i: np.ndarray, got: dict[str, Any], bits: int) -> Share:
        """The two-holder truncation's share from the truncation bits ``own`` = (a_i, [a_0 a_1]_i),
        this holder's opened bit and the other's (``_trunc.wrap_truncated_share``)."""
        ((peer, msg),) = got.items()
        o_peer = recv_bits(msg, x.shape, peer, "opened wrap bit")
        y = wrap_truncated_share(x.parts[0], own[0], own[1], o_i, o_peer, bits, self.party == self._first)
        return Share((y,), x.shape, "arith")

    def mul_trunc(self, ctx: OpContext, x: Share, y: Share, bits: int, prepared: Prepared | None = None) -> Step[Share]:
        """The fixed-point product. Without a dealer the truncation's correlation is made by OT
        in the product's rounds (it needs only the shape), so the truncation adds only its
        opening; ``prepared`` (:meth:`prepare`): both made ahead, two rounds as with a dealer."""
        if self._dealing is None and 0 < bits <= 62:
            need_kind("mul", "arith", x, y)
            return (yield from self._ot_product_trunc(ctx, self.mul, x, y, same_shape("mul", x, y), bits, prepared))
        return (yield from super().mul_trunc(ctx, x, y, bits))

    def matmul_trunc(
        self, ctx: OpContext, x: Share, y: Share, bits: int, prepared: Prepared | None = None
    ) -> Step[Share]:
        """:meth:`mul_trunc` for matmul."""
        if self._dealing is None and 0 < bits <= 62:
            need_kind("matmul", "arith", x, y)
            shape = matmul_shape(x.shape, y.shape)
            return (yield from self._ot_product_trunc(ctx, self.matmul, x, y, shape, bits, prepared))
        return (yield from super().matmul_trunc(ctx, x, y, bits))

    def _ot_product_trunc(
        self,
        ctx: OpContext,
        product: Callable[..., Step[Share]],
        x: Share,
        y: Share,
        shape: tuple[int, ...],
        bits: int,
        prepared: Prepared | None,
    ) -> Step[Share]:
        first = self.party == self._first
        if prepared is not None and (prepared.bits != bits or prepared.shapes != (x.shape, y.shape, shape)):
            prepared = None  # made for another use (not by the scheduler): make both here
        if prepared is not None and prepared.trunc is not None:
            z = yield from product(ctx.child("mul"), x, y, prepared=prepared)
            own = prepared.trunc
        elif len(self._holders) > 2:  # the tuple by pairwise OT beside the product, then c = z + r
            _, tuple_step = pairwise(self._source(ctx.child("trunc"))).trunc_tuple(shape, bits)
            z, own = yield from gather([product(ctx.child("mul"), x, y), tuple_step])
        else:
            _, bits_step = pair(self._source(ctx.child("trunc"))).trunc_bits(shape, bits)
            z, own = yield from gather([product(ctx.child("mul"), x, y), bits_step])
        if len(self._holders) > 2:
            c_i = masked_share(z.parts[0], own[0], first)
            got = yield from _open(self._peers(), c_i)
            c = fresh(np.add, c_i, 0)
            for h, msg in got.items():
                np.add(c, recv_array(msg, shape, h, "masked value"), out=c)
            return Share((truncated_share(c, own[1], own[2], bits, first),), shape, "arith")
        o_i = wrap_opening(z.parts[0], own[0], first)
        got = yield from _open(self._peers(), pack_bits(o_i))
        return self._wrap_share(z, own, o_i, got, bits)

    # ---- boolean -> arithmetic ---------------------------------------------------------------------
    def bit_to_arith(self, ctx: OpContext, b: Share) -> Step[Share]:
        """[b]^B -> [b]^A for bits, one round, with a dealt random bit r shared both ways.

        Math: open c = b XOR r (1 bit an element on the wire); b = c + r - 2 c r, so holder i's
        share is (1 - 2c) r_i, plus c at holder 0. Only bit 0 of each word of ``b`` is used.
        """
        need_kind("bit_to_arith", "bool", b)
        shape = b.shape
        specs = [Dealt(shape, "bit"), Dealt(shape, "add", corrected=True)]
        own, mine, theirs = yield from self._dealt_round(
            ctx,
            specs,
            lambda totals: [np.array(totals[0], dtype=U64)],
            lambda own: pack_bits(np.asarray((b.parts[0] & U64(1)) ^ own[0])),
            lambda src: src.bit_pair(shape),
        )
        if own is None:
            return Share((), shape, "arith")
        c = recv_bits(mine, shape, self.party, "own masked bit")
        for h, msg in theirs.items():
            c ^= recv_bits(msg, shape, h, "masked bit")
        ra_i = own[1]
        z = np.asarray(np.where(c == U64(1), np.negative(ra_i), ra_i))  # (1 - 2c) r_i
        if self.party == self._first:
            z += c
        return Share((z,), shape, "arith")


def _open(peers: Sequence[str], mine: Any) -> Step[dict[str, Any]]:
    """Send this holder's opening to the other holders and receive theirs (one round)."""
    got = yield Exchange(send={p: mine for p in peers}, recv=frozenset(peers))
    return {p: got[p] for p in peers}
