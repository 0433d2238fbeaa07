"""semi2k without a dealer: the two holders make their own correlations by oblivious transfer.

Theory of operation
-------------------
Everything here is built on correlated OT over Z_2^64 both ways at once (``_ot_engine.py``: the
base OTs and a SoftSpoken set-up once per job, extension instances per op, chunked rounds, short corrections): the
sender inputs ``delta_j``, the receiver a bit ``r_j``; the sender gets a random ``x_j`` and the
receiver ``x_j + r_j delta_j``.

* **Product of a sender's value and a receiver's value** (Gilboa 1999, "Two party RSA key
  generation", CRYPTO'99): for ``y = sum_l 2^l y_l`` the receiver chooses with the bits ``y_l``
  and the sender correlates with ``delta = x``: ``sum_l 2^l (x_l + y_l x) - sum_l 2^l x_l = x y``,
  so the receiver keeps ``sum_l 2^l (x_l + y_l x)`` and the sender ``-sum_l 2^l x_l``: an additive
  sharing of ``x y`` from 64 OTs per word.
* **Beaver triples** (Keller, Orsini, Scholl, "MASCOT", CCS 2016, section 4 in its semi-honest
  form): each holder i draws ``a_i, b_i`` privately; ``c = (a_0 + a_1)(b_0 + b_1)`` is
  ``a_0 b_0 + a_1 b_1`` (local) plus the cross terms ``a_0 b_1`` and ``a_1 b_0``, one Gilboa
  product each, one per direction. Where TenSEAL is installed, big ones (from ~10^5 elements
  under ``mul_triples = "auto"``, :func:`uses_he_mul`) get both cross terms from BFV's SIMD
  slots instead (``_he_simd.py``: ~0.15 KB per element each way instead of ~0.8 KB).
* **Matrix triples** ``C = A B``: the cross term ``A_i B_j`` is one Gilboa product per entry
  ``B_j[s, t]`` with the column ``A_i[:, s]`` as a vector correlation (L = rows of A); the
  receiver sums ``2^l`` weighted outputs into column ``t``. When ``B`` has more entries than
  ``A``, the term is computed transposed (``(B_j^T A_i^T)^T``, roles swapped) so the OT count is
  ``64 min(mk, kn)``. Traffic grows with ``m k n``: cheap only while one dimension is small.
  Where TenSEAL is installed, a big one goes by lattice HE instead (``_he_triples.py``: traffic
  ~ ``m k + m n``), chosen per shape by modelled cost (:func:`uses_he`, ``matrix_triples``), in
  a child process when the runtime offers one (``OtPair.offload``) and it is worth its start.
* **AND triples** from random OT, with no correction at all (GMW multiplication triples from
  two random OTs, as in Asharov, Lindell, Schneider, Zohner, CCS 2013): a random OT gives the sender
  ``x^0, x^1`` and the receiver ``r, x^r``, and ``x^0 XOR x^r = r AND (x^0 XOR x^1)``. So holder
  i's ``a_i`` is defined by its OTs as sender (bit ``lsb(x^0 XOR x^1)``), the other holder
  chooses with the bits of its ``b_j``, and the cross term ``a_i AND b_j`` is shared as
  ``lsb(x^0)`` and ``lsb(x^r)``. ``a_i`` is known only after the OT (``b_i`` is early), and
  only ``U`` travels: 8 bytes per bit instead of 16 (:func:`_rot_pair`, ``c`` rounds).
* **Random bits with both sharings** (B2A, bit injection): ``r = s XOR t`` with ``s`` at the
  sender and ``t`` at the receiver; arithmetically ``r = s + t - 2 s t`` and ``s t`` is one
  correlated OT with ``delta = s`` and choice ``t``. Holder 0 is the sender of the first half of
  the bits and holder 1 of the rest, so both directions share the rounds and the traffic.
* **Truncation bits** for ``_trunc.py``'s two-holder truncation: a private random bit at each
  holder and an additive sharing of their product, one correlated OT per element (delta = the
  sender's bit, choice = the receiver's; only the low ``ceil(d / 8)`` bytes of its correction
  matter, as the product enters the truncation times ``2^(64-d)``).

Who sees what: only OT messages travel (``_ot_engine.py``): neither depends on the other holder's
shares. Semi-honest only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._config import MATRIX_TRIPLES
from .._errors import ConfigError
from .._log import get_logger
from . import _he_simd, _he_triples
from ._checks import U64
from ._comm import Step, gather
from ._context import OpContext
from ._matmul import matmul_shape, ring_matmul
from ._ot_engine import (
    GILBOA_KEEP,
    OtPair,
    Side,
    Sink,
    _cot_pair,
    _rot_pair,
    matmul_ot_rounds,
    ot_setup,
)

__all__ = [
    "WARN_MATRIX_BYTES", "OtPair", "OtSource", "matmul_ot_rounds", "matrix_route", "matrix_triple_rounds", "ot_setup",
    "uses_he", "uses_he_mul",
]

# a matrix triple by OT that sends at least this much per holder logs a warning first (matmul
# 256^3 sends ~4.9 GB, 384^3 ~16 GB, 1024^3 ~310 GB)
WARN_MATRIX_BYTES = 10**10

_POW2 = np.left_shift(U64(1), np.arange(64, dtype=U64))

# Modelled CPU of a matrix triple by OT, per holder (fitted to matmul 256 on the bench host,
# 2026-12-04: 4.2 M OTs of 256 words each way, ~25 s of CPU per holder): per correlated OT
# (extension and hash, both directions) and per word an OT carries (correction, weighted sum), ms
_OT_COST_ROW, _OT_COST_WORD = 1.3e-4, 2.2e-5
# ... and of an elementwise triple, per element (128 correlated OTs, both directions; mul 10^6
# without a dealer took ~8.4 s of triples per holder), ms
_OT_COST_MUL = 8.4e-3
# HE takes an elementwise triple only where it is modelled this much cheaper: in one process
# (simulate) the holders' SEAL calls, in process below worth_a_process, share one GIL while OT's
# numpy kernels overlap (measured in simulate: HE 10 % slower at 5 10^4 elements, a tie at 10^5,
# 0.66x OT's time at 10^6); ties stay on OT (no child process, less memory)
_HE_MUL_MARGIN = 0.6


def matrix_route(setting: str, *, resolve: bool = True, key: str = "matrix_triples") -> str:
    """How this holder makes matrix triples for ``matrix_triples = setting`` (or elementwise
    ones for ``key = "mul_triples"``): ``"ot"``; ``"he"`` (every shape that fits the HE
    parameters); ``"auto"`` (each shape by modelled cost) where TenSEAL imports, else ``"ot"``.
    Without ``resolve`` (a dealer makes the triples) the setting is only checked: ``"ot"``.

    Raises:
        ConfigError: an unknown setting, or ``"he"`` where TenSEAL does not import.
    """
    if setting not in MATRIX_TRIPLES:
        raise ConfigError(f"{key} must be 'auto', 'ot' or 'he', not {setting!r}", key=key)
    if setting == "ot" or not resolve:
        return "ot"
    if _he_triples.available():
        return setting
    if setting == "he":
        raise ConfigError(
            f"{key} = 'he' needs TenSEAL and zstandard (pip install 'mpcactors[he]'), which do not import here",
            key=key,
        )
    return "ot"


def matrix_triple_rounds(route: str, ashape: tuple[int, ...], bshape: tuple[int, ...]) -> int:
    """Rounds of a two-holder matrix triple for these operand shapes on ``route`` (by HE or by
    OT, as :meth:`OtSource.matrix_triple` chooses)."""
    m = 1 if len(ashape) == 1 else ashape[-2]
    k = ashape[-1]
    n = 1 if len(bshape) == 1 else bshape[-1]
    if uses_he(route, m, k, n):
        return _he_triples.he_rounds(m, k, n)
    return matmul_ot_rounds(ashape, bshape)


def uses_he(route: str, m: int, k: int, n: int) -> bool:
    """Whether a 2-d matrix triple A (m, k) @ B (k, n) goes by HE on ``route``: where the shape
    fits the HE parameters and (``"auto"``) HE's modelled cost is below OT's (per holder)."""
    if route == "ot" or not m * k * n:
        return False
    try:
        plan = _he_triples.plan_blocks(m, k, n)
        _he_triples.flood_bits(plan)
    except ValueError:
        return False
    if route == "he":
        return True
    rows = 64 * k * min(m, n)
    ot = rows * (_OT_COST_ROW + _OT_COST_WORD * max(m, n))
    # a holder does one direction's encryptions and decryptions and the other's products:
    # plan.cost() models exactly that sum
    return plan.cost() < ot


def uses_he_mul(route: str, n: int) -> bool:
    """Whether an elementwise triple of ``n`` elements goes by HE on ``route``
    (``_he_simd.py``): where it fits the HE parameters and (``"auto"``) HE's modelled cost per
    holder is below OT's."""
    if route == "ot" or not _he_simd.fits(n):
        return False
    return route == "he" or _he_simd.cost(n) < _HE_MUL_MARGIN * n * _OT_COST_MUL


# ---- correlations ------------------------------------------------------------------------------


def _bits_of(x: np.ndarray) -> np.ndarray:
    """(n,) uint64 -> (64 n,) bool, bit l of word j at 64 j + l."""
    flat = np.ascontiguousarray(x.reshape(-1), dtype=U64)
    return np.unpackbits(flat.view(np.uint8), bitorder="little").astype(bool)


def _weighted(v: np.ndarray, width: int) -> np.ndarray:
    """(64 n, L) -> (n, L): sum_l 2^l v[64 j + l]."""
    v3 = v.reshape(-1, 64, width)
    out = np.einsum("nlw,l->nw", v3, _POW2)  # wraps mod 2^64 like the ring
    return out


def draw_operands(ctx: OpContext, ashape: tuple[int, ...], bshape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """This holder's private random parts (a_i, b_i) of a triple, from its PRG stream of the op."""
    g = ctx.prg()
    return g.random_u64(ashape), g.random_u64(bshape)


# Each maker of OtSource returns (early, step): the arrays a holder has before any message (from
# its private PRG; None where an OT output is needed) and the step that completes the list.
Made = tuple[list[np.ndarray | None], Step[list[np.ndarray]]]


class OtSource:
    """This holder's maker of OT correlations for one op (2 holders; module doc).

    Args:
        ctx: the op's context (its address labels the extension instances; ``ctx.prg()`` draws
            this holder's private randomness).
        party: this holder.
        holders: both holders, in the protocol's order.
        pair: the base OTs with the other holder.
    """

    def __init__(self, ctx: OpContext, party: str, holders: Sequence[str], pair: OtPair) -> None:
        self.ctx = ctx
        self.party = party
        self.peer = pair.peer
        self.first = party == holders[0]
        self._holders = tuple(holders)
        self._pair = pair
        session = ctx.label(b"semi2k-ot")
        self.snd = pair.sender.derive(session)
        self.rcv = pair.receiver.derive(session)
        self.u_bytes = pair.u_bytes

    def _cross(self, xs: np.ndarray, ys: np.ndarray, acc: np.ndarray) -> Step[None]:
        """acc += this holder's share of x_me * y_peer + x_peer * y_me (elementwise, flat):
        the two cross terms of a triple, one Gilboa product per direction."""
        n = acc.size
        if uses_he_mul(self._pair.mul, n):  # ~0.15 KB per element each way instead of ~0.8 KB
            offload = self._pair.offload
            if offload is not None and _he_simd.worth_a_process(n):  # off this GIL
                args = {"peer": self.peer, "first": self.first, "a": np.ascontiguousarray(xs),
                        "b": np.ascontiguousarray(ys), "key": self.ctx.prg().random_bytes(32)}
                cross = yield from offload("he_simd_cross", args)
            else:
                cross = yield from _he_simd.simd_cross(self.peer, self.first, xs, ys, self.ctx.prg())
            acc += cross
            return
        ybits = _bits_of(ys)

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] -= _weighted(x0, 1)[:, 0]

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] += _weighted(y, 1)[:, 0]

        side = Side(64 * n, 1, GILBOA_KEEP, self.u_bytes)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side,
            lambda lo, hi: xs[lo // 64 : hi // 64], on_send, lambda lo, hi: ybits[lo:hi], on_recv,
        )

    def triple(self, shape: tuple[int, ...]) -> Made:
        """An elementwise Beaver triple (a_i, b_i, c_i); a_i, b_i early."""
        a, b = draw_operands(self.ctx, shape, shape)

        def step() -> Step[list[np.ndarray]]:
            c = np.multiply(a, b).reshape(-1)
            yield from self._cross(a.reshape(-1), b.reshape(-1), c)
            return [a, b, c.reshape(shape)]

        return [a, b, None], step()

    def and_triple(self, shape: tuple[int, ...]) -> Made:
        """A boolean triple over 64-bit words, c = (a_0 ^ a_1) & (b_0 ^ b_1); b_i early, a_i
        from the OTs (module doc: a random OT is an AND triple's cross term, no correction)."""
        b = self.ctx.prg().random_u64(shape)

        def step() -> Step[list[np.ndarray]]:
            n = int(np.prod(shape, dtype=np.int64))
            bbits = _bits_of(b)
            a = np.empty(8 * n, dtype=np.uint8)
            cross = np.empty(8 * n, dtype=np.uint8)
            one = np.uint8(1)

            def low(x: np.ndarray) -> np.ndarray:
                return x[:, 0].astype(np.uint8) & one

            def on_send(lo: int, hi: int, x0: np.ndarray, x1: np.ndarray) -> None:
                low0 = low(x0)
                a[lo // 8 : hi // 8] = np.packbits(low(x1) ^ low0, bitorder="little")
                cross[lo // 8 : hi // 8] = np.packbits(low0, bitorder="little")

            def on_recv(lo: int, hi: int, x: np.ndarray) -> None:
                cross[lo // 8 : hi // 8] ^= np.packbits(low(x), bitorder="little")

            yield from _rot_pair(self.peer, self.snd, self.rcv, 64 * n, on_send, lambda lo, hi: bbits[lo:hi], on_recv)
            a_w = a.view(U64).reshape(shape)
            return [a_w, b, (a_w & b) ^ cross.view(U64).reshape(shape)]

        return [None, b, None], step()

    def and_cross(self, a: np.ndarray, b: np.ndarray) -> Step[np.ndarray]:
        """This holder's XOR share of ``(a_me & b_peer) ^ (a_peer & b_me)`` for its own 64-bit
        words ``a``, ``b`` (any shape): one correlated OT per bit each way (delta = a bit of
        a_me, choice = the bit of b_peer; the output's low bit is the share), one byte of each
        correction kept. For more than two holders, whose a_i must be one value for every
        peer (:meth:`and_triple` defines a_i by the OTs of one pair)."""
        n = a.size
        abits = _bits_of(a).astype(U64)
        bbits = _bits_of(b)
        out = np.zeros(8 * n, dtype=np.uint8)

        def sink(lo: int, hi: int, x: np.ndarray) -> None:
            out[lo // 8 : hi // 8] ^= np.packbits((x[:, 0] & U64(1)).astype(bool), bitorder="little")

        side = Side(64 * n, 1, (1,) * 64, self.u_bytes)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side, lambda lo, hi: abits[lo:hi], sink, lambda lo, hi: bbits[lo:hi], sink
        )
        return out.view(U64).reshape(a.shape)

    def products(
        self,
        deltas: np.ndarray | None,
        choices: np.ndarray | None,
        keep_bytes: int | tuple[int, ...] | None = None,
    ) -> Step[tuple[np.ndarray, np.ndarray]]:
        """Additive shares of ``delta_j * choice_j`` with this peer: as sender for ``deltas``
        (uint64 words; share -x_j) and as receiver for ``choices`` (bool; share
        x_j + choice_j delta_j), one correlated OT each. Either may be None (no rows that way):
        the two rounds are kept, so holders with nothing to do stay in step. ``keep_bytes``:
        only that many low bytes of each correction travel (the shares are then valid modulo
        2^(8 keep_bytes)), or a tuple of 64: row 64 j + l keeps ``keep_bytes[l]``; the rows are
        padded to whole groups of 64 and the padding dropped."""
        d = np.zeros(0, dtype=U64) if deltas is None else np.ascontiguousarray(deltas, dtype=U64)
        r = np.zeros(0, dtype=bool) if choices is None else np.asarray(choices, dtype=bool)
        nd, nr = d.size, r.size
        keep = None
        if keep_bytes is not None:
            keep = (keep_bytes,) * 64 if isinstance(keep_bytes, int) else tuple(keep_bytes)
            d = np.concatenate([d, np.zeros(-nd % 64, dtype=U64)])
            r = np.concatenate([r, np.zeros(-nr % 64, dtype=bool)])
        sent = np.empty(d.size, dtype=U64)
        got = np.empty(r.size, dtype=U64)

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            np.negative(x0[:, 0], out=sent[lo:hi])

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            got[lo:hi] = y[:, 0]

        yield from _cot_pair(
            self.peer, self.snd, self.rcv, Side(d.size, 1, keep, self.u_bytes), Side(r.size, 1, keep, self.u_bytes),
            lambda lo, hi: d[lo:hi], on_send, lambda lo, hi: r[lo:hi], on_recv,
        )
        return sent[:nd], got[:nr]

    def matrix_triple(self, ashape: tuple[int, ...], bshape: tuple[int, ...]) -> Made:
        """A matrix triple (A_i, B_i, C_i), C = A @ B, under numpy's matmul rules; A_i, B_i
        early. Stacks are one 2-d triple per matrix of the broadcast stack, run together."""
        a_full, b_full = draw_operands(self.ctx, ashape, bshape)
        return [a_full, b_full, None], self._matrix_or_stack(a_full, b_full, True)

    def _matrix_or_stack(self, a_full: np.ndarray, b_full: np.ndarray, local: bool) -> Step[list[np.ndarray]]:
        """[A_i, B_i, C_i] for this holder's A_i, B_i; C_i has A_i B_i only if ``local`` (without
        it, C_i is this holder's share of the two cross terms with this peer alone)."""
        if a_full.ndim <= 2 and b_full.ndim <= 2:
            return (yield from self._matrix(a_full, b_full, a_full.shape, b_full.shape, local))
        return (yield from self._stack(a_full, b_full, a_full.shape, b_full.shape, local))

    def _stack(
        self, a_full: np.ndarray, b_full: np.ndarray, ashape: tuple[int, ...], bshape: tuple[int, ...], local: bool
    ) -> Step[list[np.ndarray]]:
        out = matmul_shape(ashape, bshape)
        a2 = a_full.reshape((1,) + ashape) if len(ashape) == 1 else a_full
        b2 = b_full.reshape(bshape + (1,)) if len(bshape) == 1 else b_full
        batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
        ab = np.broadcast_to(a2, batch + a2.shape[-2:])
        bb = np.broadcast_to(b2, batch + b2.shape[-2:])
        n = int(np.prod(batch, dtype=np.int64))
        ab = ab.reshape((n,) + a2.shape[-2:])
        bb = bb.reshape((n,) + b2.shape[-2:])
        # One independent extension instance per matrix (its own session), so gather may
        # interleave them; products of broadcast copies share A_i or B_i but not the OTs.
        subs = [OtSource(self.ctx.child(f"stack{i}"), self.party, self._holders, self._pair) for i in range(n)]
        res = yield from gather(
            [sub._matrix(ab[i], bb[i], ab[i].shape, bb[i].shape, local) for i, sub in enumerate(subs)]
        )
        cross = np.stack([r[2] for r in res]) if n else np.zeros((0,) + out[-2:], dtype=U64)
        return [a_full, b_full, cross.reshape(out)]

    def _matrix(
        self, a_full: np.ndarray, b_full: np.ndarray, ashape: tuple[int, ...], bshape: tuple[int, ...], local: bool
    ) -> Step[list[np.ndarray]]:
        a = a_full.reshape((1,) + ashape if len(ashape) == 1 else ashape)
        b = b_full.reshape(bshape + (1,) if len(bshape) == 1 else bshape)
        m, k = a.shape
        n = b.shape[1]
        if uses_he(self._pair.matrix, m, k, n):  # traffic ~ m k + m n instead of m k n
            offload = self._pair.offload
            if offload is not None and _he_triples.worth_a_process(m, k, n):  # off this GIL
                args = {"peer": self.peer, "a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b),
                        "key": self.ctx.prg().random_bytes(32)}
                cross = yield from offload("he_cross_terms", args)
            else:
                cross = yield from _he_triples.he_cross_terms(self.peer, a, b, self.ctx.prg())
            if local:
                cross += ring_matmul(a, b)
            return [a_full, b_full, cross.reshape(matmul_shape(ashape, bshape))]
        # I send with `left` (rows_out x inner) and choose with the bits of `right` (inner x
        # cols_out): the cross terms A_me B_peer and A_peer B_me. When B has more entries than
        # A, the same on the transposes: A_i B_j = (B_j^T A_i^T)^T (fewer OTs: 64 min(mk, kn)).
        transposed = k * n > m * k
        if transposed:
            left, right, rows_out, cols_out = b.T, a.T, n, m
        else:
            left, right, rows_out, cols_out = a, b, m, n
        rbits = _bits_of(np.ascontiguousarray(right))  # entry (s, t) at s * cols_out + t
        cols = np.ascontiguousarray(left.T)  # (inner, rows_out): row s = column s of left
        acc_t = np.zeros((cols_out, rows_out), dtype=U64)  # row t = column t of the result

        def deltas(lo: int, hi: int) -> np.ndarray:  # one column per group of 64 rows
            return cols[np.arange(lo // 64, hi // 64) // cols_out]

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.subtract.at(acc_t, ent % cols_out, _weighted(x0, rows_out))

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.add.at(acc_t, ent % cols_out, _weighted(y, rows_out))

        side = Side(64 * k * cols_out, rows_out, GILBOA_KEEP, self.u_bytes)
        sent = side.rows * side.row_bytes()
        if sent >= WARN_MATRIX_BYTES:  # OT traffic grows with m k n: say so before hours of it
            path = self.ctx.path
            get_logger(party=self.party, protocol="semi2k").warning(
                "large_matrix_triple_by_ot",
                job=path[0].decode(errors="replace") if path and isinstance(path[0], bytes) else str(path[:1]),
                op=str(path[1:]), shape=f"{tuple(a.shape)} @ {tuple(b.shape)}", peer=self.peer,
                gb_per_holder=round(sent / 1e9, 1), bytes_per_holder=int(sent),
                detail="a matrix triple without a dealer sends 64 k min(m, n) correlated OTs of max(m, n) "
                "words each way; a dealer party sends (m k + k n + m n) x 8 bytes instead",
            )  # fmt: skip
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side, deltas, on_send, lambda lo, hi: rbits[lo:hi], on_recv
        )
        cross = acc_t if transposed else acc_t.T  # (m, n) either way
        c = np.ascontiguousarray(cross)
        if local:
            c += ring_matmul(a, b)
        return [a_full, b_full, c.reshape(matmul_shape(ashape, bshape))]

    def _random_bits(self, bits: np.ndarray, unit: int, keep: tuple[int, ...] | None, add: Sink) -> Step[None]:
        """Arithmetic shares of the random bits r = s XOR t = s + t - 2 s t, one correlated OT
        per bit (delta = the sender's private bit s, choice = the receiver's bit t): this
        holder's share of bit j is its own bit plus what ``add(lo, hi, c)`` receives for bits
        lo..hi-1 (``c`` = 2 x0 as sender, -2 (x0 + t s) as receiver; mod 2^(8 keep)). Holder 0
        sends for the first half of ``bits`` (bool, in whole ``unit``s), holder 1 for the rest,
        so both directions run in the same rounds."""
        count = bits.size
        half = count // unit // 2 * unit
        mine, theirs = (0, half), (half, count)
        if not self.first:
            mine, theirs = theirs, mine
        s0, r0 = mine[0], theirs[0]

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            add(s0 + lo, s0 + hi, x0[:, 0] << U64(1))  # s - 2 (-x0)

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            add(r0 + lo, r0 + hi, np.negative(y[:, 0] << U64(1)))  # t - 2 (x0 + t s)

        yield from _cot_pair(
            self.peer, self.snd, self.rcv,
            Side(mine[1] - mine[0], 1, keep, self.u_bytes), Side(theirs[1] - theirs[0], 1, keep, self.u_bytes),
            lambda lo, hi: bits[s0 + lo : s0 + hi].astype(U64), on_send,
            lambda lo, hi: bits[r0 + lo : r0 + hi], on_recv,
        )

    def bit_pair(self, shape: tuple[int, ...]) -> Made:
        """A random bit with a boolean (early) and an arithmetic sharing (B2A)."""
        n = int(np.prod(shape, dtype=np.int64))
        bits = self.ctx.prg().random_bits(n)

        def step() -> Step[list[np.ndarray]]:
            arith = bits.copy()

            def add(lo: int, hi: int, c: np.ndarray) -> None:
                arith[lo:hi] += c

            yield from self._random_bits(bits.astype(bool), 1, None, add)
            return [bits.reshape(shape), arith.reshape(shape)]

        return [bits.reshape(shape), None], step()

    def trunc_bits(self, shape: tuple[int, ...], bits: int) -> Made:
        """(a_i, [a_0 a_1]_i) for the two-holder truncation of ``_trunc.py``: a private random bit
        a_i per element at each holder (early) and an additive sharing of the product of the two
        holders' bits, valid modulo 2^bits (``bits`` <= 62, what the truncation reads).

        One correlated OT per element (delta = the sender's bit, choice = the receiver's: the
        sender keeps -x, the receiver x + a_0 a_1), only ``ceil(bits / 8)`` bytes of each
        correction on the wire; holder 0 sends for the first half of the elements and holder 1
        for the rest, so both directions share the two rounds and the traffic."""
        n = int(np.prod(shape, dtype=np.int64))
        own = self.ctx.prg().random_bits(n)

        def step() -> Step[list[np.ndarray]]:
            half = n // 2
            mine, theirs = (0, half), (half, n)
            if not self.first:
                mine, theirs = theirs, mine
            x_snd, x_rcv = yield from self.products(
                own[mine[0] : mine[1]], own[theirs[0] : theirs[1]].astype(bool), -(-bits // 8)
            )
            prod = np.empty(n, dtype=U64)
            prod[mine[0] : mine[1]] = x_snd
            prod[theirs[0] : theirs[1]] = x_rcv
            return [own.reshape(shape), prod.reshape(shape)]

        return [own.reshape(shape), None], step()
