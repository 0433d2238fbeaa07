"""semi2k without a dealer: the two holders make their own correlations by oblivious transfer.

Theory of operation
-------------------
Once per job (op 0, :func:`ot_setup`) each holder runs 128 Chou-Orlandi base OTs in each direction
with the other holder (``ot/_base.py``), so each is an IKNP extension sender towards the other and
an extension receiver from it. Every op then derives its own pair of extension instances from the
base keys and the op's address (:meth:`~mpcactors.ot._extension.ExtSender.derive`): instances of
different ops are independent, so concurrent ops may extend in any order.

Everything rests on one primitive, additive correlated OT over Z_2^64 (IKNP03 with the Gilboa
correction, ``cot_send``/``cot_receive``): the sender inputs ``delta_j`` (a vector of L words),
the receiver a bit ``r_j``; the sender gets a random ``x_j`` and the receiver ``x_j + r_j delta_j``.
:func:`_cot_pair` runs this in both directions at once, chunked: in round t each holder sends
its IKNP matrix ``U`` for chunk t (as receiver) and its correction ``tau = x^0 + delta - x^1`` for
chunk t-1 (as sender), so ``c`` chunks cost ``c + 1`` rounds and no chunk is held whole.

* **Product of a sender's value and a receiver's value** (Gilboa 1999, "Two party RSA key
  generation", CRYPTO'99): for ``y = sum_l 2^l y_l`` the receiver chooses with the bits ``y_l``
  and the sender correlates with ``delta = x``: ``sum_l 2^l (x_l + y_l x) - sum_l 2^l x_l = x y``,
  so the receiver keeps ``sum_l 2^l (x_l + y_l x)`` and the sender ``-sum_l 2^l x_l``: an additive
  sharing of ``x y`` from 64 OTs per word.
* **Beaver triples** (Keller, Orsini, Scholl, "MASCOT", CCS 2016, section 4 in its semi-honest
  form): each holder i draws ``a_i, b_i`` privately; ``c = (a_0 + a_1)(b_0 + b_1)`` is
  ``a_0 b_0 + a_1 b_1`` (local) plus the cross terms ``a_0 b_1`` and ``a_1 b_0``, one Gilboa
  product each, one per direction.
* **Matrix triples** ``C = A B``: the cross term ``A_i B_j`` is one Gilboa product per entry
  ``B_j[s, t]`` with the column ``A_i[:, s]`` as a vector correlation (L = rows of A); the
  receiver sums ``2^l`` weighted outputs into column ``t``. When ``B`` has more entries than
  ``A``, the term is computed transposed (``(B_j^T A_i^T)^T``, roles swapped) so the OT count is
  ``64 min(mk, kn)``. Traffic grows with ``m k n``: cheap only while one dimension is small.
* **AND triples**: the same over GF(2): the low bit of ``x + r delta`` for ``delta`` in {0, 1} is
  ``x_0 XOR (r AND delta)``, so a cross term ``a_i AND b_j`` is one correlated OT per bit.
* **Random bits with both sharings** (B2A, bit injection): ``r = s XOR t`` with ``s`` at holder
  0 and ``t`` at holder 1; arithmetically ``r = s + t - 2 s t`` and ``s t`` is one correlated OT
  with ``delta = s`` and choice ``t``.
* **Truncation tuples** (r, bits d..62 of r, msb r) for ``_trunc.py`` (Damgard et al. 2019): r is
  built from 64 random bits with both sharings, ``r = sum_k 2^k r_k``; then ``r_mid`` and
  ``r_msb`` are linear in the arithmetic shares of the bits.

Who sees what: a holder sees the other's ``U`` rows (pseudorandom: masked by a PRG of a base-OT
key it does not hold) and ``tau`` corrections (each masked by the hash of a row the receiver
cannot compute: ``H(Q ^ s)`` for the message it did not choose). Neither depends on the other
holder's shares; the test suite checks both with a distinguisher that catches an unmasked
variant. Semi-honest only, as IKNP without the KOS15 check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ..ot._base import OtError
from ..ot._extension import (
    ExtReceiver,
    ExtSender,
    ext_receiver_setup,
    ext_sender_setup,
)
from ._checks import U64
from ._comm import Exchange, Step, gather
from ._context import OpContext
from ._matmul import matmul_shape, ring_matmul

__all__ = ["OtPair", "OtSource", "ot_setup"]

ROUND_BYTES = 1 << 25  # U + tau bytes per chunk (one round) and direction
_WIDTH = 128
_POW2 = np.left_shift(U64(1), np.arange(64, dtype=U64))


@dataclasses.dataclass(slots=True)
class OtPair:
    """Base OTs with one peer: this holder as extension sender to it and as receiver from it."""

    peer: str
    sender: ExtSender
    receiver: ExtReceiver


def ot_setup(party: str, peers: Sequence[str], job: bytes) -> Step[dict[str, OtPair]]:
    """Base OTs with every peer, both directions at once (2 rounds, 128 OTs each way)."""
    label = b"mpcactors/semi2k-ot/v1/" + job

    def one(peer: str) -> Step[OtPair]:
        first, second = sorted((party, peer))
        me_first = party == first
        # direction (first -> second): first is the extension sender; labels name the direction
        lab_fs = label + b"/" + first.encode() + b">" + second.encode()
        lab_sf = label + b"/" + second.encode() + b">" + first.encode()
        # gather pairs sub-steps by index: index 0 is the direction first -> second at both
        s_step = ext_sender_setup(peer, _WIDTH, label=lab_fs if me_first else lab_sf)
        r_step = ext_receiver_setup(peer, _WIDTH, label=lab_sf if me_first else lab_fs)
        if me_first:
            snd, rcv = yield from gather([s_step, r_step])
        else:
            rcv, snd = yield from gather([r_step, s_step])
        return OtPair(peer, snd, rcv)

    pairs = yield from gather([one(p) for p in peers])
    return {p.peer: p for p in pairs}


# ---- the engine: correlated OT both ways, chunked ------------------------------------------------


def _rows_per_round(width: int) -> int:
    rows = ROUND_BYTES // (8 * width + _WIDTH // 8)
    return max(64, rows // 64 * 64)


def _chunks(n: int, width: int) -> list[tuple[int, int]]:
    step = _rows_per_round(width)
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _hash_words(h: Callable[..., np.ndarray], rows: np.ndarray, first: int, words: int) -> np.ndarray:
    idx = np.arange(first, first + rows.shape[0], dtype=np.uint64)
    out = h(rows, idx, -(-words // 2))
    return out.view(U64)[:, :words]


# Callbacks of _cot_pair: deltas(a, b) -> (b - a, L) uint64 for the sender's rows a..b;
# on_send(a, b, x) with the sender's (b - a, L) outputs; choices(a, b) -> (b - a,) bool for the
# receiver's rows; on_recv(a, b, y) with the receiver's outputs x + r delta.
Deltas = Callable[[int, int], np.ndarray]
Chosen = Callable[[int, int], np.ndarray]
Sink = Callable[[int, int, np.ndarray], None]


@dataclasses.dataclass(slots=True)
class Side:
    """One direction of :func:`_cot_pair` as this holder sees it."""

    rows: int  # number of correlated OTs
    width: int  # words per OT message (L)


def _cot_pair(
    peer: str,
    snd: ExtSender | None,
    rcv: ExtReceiver | None,
    send: Side,
    recv: Side,
    deltas: Deltas | None,
    on_send: Sink | None,
    choices: Chosen | None,
    on_recv: Sink | None,
) -> Step[None]:
    """Additive correlated OT with ``peer`` in both directions at once (module doc).

    ``send``: the OTs where this holder is the sender (the peer's ``recv``); ``recv``: those
    where it chooses. Both holders call this with mirrored sides, so the round structure is
    public: round t carries U of receiver chunk t and tau of sender chunk t - 1.
    """
    sc = _chunks(send.rows, send.width)
    rc = _chunks(recv.rows, recv.width)
    if not sc and not rc:  # empty arrays: keep the round structure of every other shape
        for _ in range(2):
            yield Exchange(send={peer: {}}, recv=frozenset({peer}))
        return
    rounds = max(len(sc), len(rc)) + 1
    tau_out: np.ndarray | None = None
    kept: np.ndarray | None = None  # receiver: H(T) of the chunk whose tau arrives next
    kept_r: np.ndarray | None = None
    for t in range(rounds):
        msg: dict[str, np.ndarray] = {}
        new_kept = new_r = None
        if t < len(rc):
            if rcv is None or choices is None:
                raise OtError("correlated OT: receiver side without its state")
            a, b = rc[t]
            r = np.asarray(choices(a, b), dtype=bool)
            first = rcv.rows_done
            u, tt = rcv.choice_columns(r)
            new_kept = _hash_words(rcv.hash, tt, first, recv.width)
            new_r = r
            msg["u"] = u
        if tau_out is not None:
            msg["tau"] = tau_out
            tau_out = None
        expect = t < len(sc) or 0 < t <= len(rc)
        got = yield Exchange(
            send={peer: msg} if msg else {}, recv=frozenset({peer}) if expect else frozenset()
        )
        body = got.get(peer) if expect else None
        if expect and not isinstance(body, dict):
            raise OtError(f"correlated OT: malformed message from {peer!r} in round {t}")
        if t < len(sc):
            if snd is None or deltas is None or on_send is None:
                raise OtError("correlated OT: sender side without its state")
            a, b = sc[t]
            u_in = body.get("u") if body else None
            cols = (snd.width, -(-(b - a) // 8))
            if not isinstance(u_in, np.ndarray) or u_in.shape != cols or u_in.dtype != np.uint8:
                raise OtError(
                    f"correlated OT: expected IKNP columns {cols} uint8 from {peer!r} in round {t}, "
                    f"got {getattr(u_in, 'shape', type(u_in).__name__)}"
                )
            first = snd.rows_done
            q = snd.rows_from_columns(u_in, b - a)
            x0 = _hash_words(snd.hash, q, first, send.width)
            np.bitwise_xor(q, snd.delta, out=q)
            x1 = _hash_words(snd.hash, q, first, send.width)
            d = deltas(a, b)
            tau = np.add(x0, d.reshape(b - a, send.width))
            tau -= x1
            tau_out = tau
            on_send(a, b, x0)
        if 0 < t <= len(rc):
            a, b = rc[t - 1]
            tau_in = body.get("tau") if body else None
            if not isinstance(tau_in, np.ndarray) or tau_in.shape != (b - a, recv.width) or tau_in.dtype != U64:
                raise OtError(f"correlated OT: expected ({b - a}, {recv.width}) corrections from {peer!r}")
            y = kept
            if y is None or kept_r is None:  # set in round t - 1 < len(rc)
                raise OtError("correlated OT: corrections before rows (internal)")
            y += np.where(kept_r[:, None], tau_in, U64(0))
            if on_recv is not None:
                on_recv(a, b, y)
        kept, kept_r = new_kept, new_r


def ot_rounds(width: int, rows: int) -> int:
    """Rounds of :func:`_cot_pair` for ``rows`` correlated OTs of ``width`` words each way."""
    return max(len(_chunks(rows, width)), 1) + 1


def matmul_ot_rounds(ashape: tuple[int, ...], bshape: tuple[int, ...]) -> int:
    """Rounds of a 2-d matrix triple by OT (:meth:`OtSource.matrix_triple`)."""
    m = 1 if len(ashape) == 1 else ashape[-2]
    k = ashape[-1]
    n = 1 if len(bshape) == 1 else bshape[-1]
    if k * n > m * k:
        m, n = n, m
    return ot_rounds(m, 64 * k * n)


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

    def _cross(self, xs: np.ndarray, ys: np.ndarray, acc: np.ndarray) -> Step[None]:
        """acc += this holder's share of x_me * y_peer + x_peer * y_me (elementwise, flat):
        the two cross terms of a triple, one Gilboa product per direction."""
        n = acc.size
        ybits = _bits_of(ys)

        def deltas(lo: int, hi: int) -> np.ndarray:
            return np.repeat(xs[lo // 64 : hi // 64], 64)

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] -= _weighted(x0, 1)[:, 0]

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] += _weighted(y, 1)[:, 0]

        side = Side(64 * n, 1)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side, deltas, on_send, lambda lo, hi: ybits[lo:hi], on_recv
        )

    def triple(self, shape: tuple[int, ...]) -> Made:
        """An elementwise Beaver triple (a_i, b_i, c_i); a_i, b_i early."""
        g = self.ctx.prg()
        a = g.random_u64(shape)
        b = g.random_u64(shape)

        def step() -> Step[list[np.ndarray]]:
            c = np.multiply(a, b).reshape(-1)
            yield from self._cross(a.reshape(-1), b.reshape(-1), c)
            return [a, b, c.reshape(shape)]

        return [a, b, None], step()

    def and_triple(self, shape: tuple[int, ...]) -> Made:
        """A boolean triple over 64-bit words, c = (a_0 ^ a_1) & (b_0 ^ b_1); a_i, b_i early.

        Over GF(2) the low bit of ``x + r delta`` (delta in {0, 1}) is ``x_0 ^ (r & delta)``, so
        the arithmetic correlated OT serves bit by bit."""
        g = self.ctx.prg()
        a = g.random_u64(shape)
        b = g.random_u64(shape)

        def step() -> Step[list[np.ndarray]]:
            n = int(np.prod(shape, dtype=np.int64))
            abits = _bits_of(a).astype(U64)
            bbits = _bits_of(b)
            acc = np.zeros(64 * n, dtype=U64)

            def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
                acc[lo:hi] ^= x0[:, 0] & U64(1)

            def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
                acc[lo:hi] ^= y[:, 0] & U64(1)

            side = Side(64 * n, 1)
            yield from _cot_pair(
                self.peer, self.snd, self.rcv, side, side,
                lambda lo, hi: abits[lo:hi], on_send, lambda lo, hi: bbits[lo:hi], on_recv,
            )
            cross = np.packbits(acc.astype(np.uint8), bitorder="little").view(U64)
            return [a, b, (a & b) ^ cross.reshape(shape)]

        return [a, b, None], step()

    def matrix_triple(self, ashape: tuple[int, ...], bshape: tuple[int, ...]) -> Made:
        """A matrix triple (A_i, B_i, C_i), C = A @ B, under numpy's matmul rules; A_i, B_i
        early. Stacks are one 2-d triple per matrix of the broadcast stack, run together."""
        g = self.ctx.prg()
        a_full = g.random_u64(ashape)
        b_full = g.random_u64(bshape)
        if len(ashape) <= 2 and len(bshape) <= 2:
            return [a_full, b_full, None], self._matrix(a_full, b_full, ashape, bshape)
        return [a_full, b_full, None], self._stack(a_full, b_full, ashape, bshape)

    def _stack(
        self, a_full: np.ndarray, b_full: np.ndarray, ashape: tuple[int, ...], bshape: tuple[int, ...]
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
            [sub._matrix(ab[i], bb[i], ab[i].shape, bb[i].shape) for i, sub in enumerate(subs)]
        )
        cross = np.stack([r[2] for r in res]) if n else np.zeros((0,) + out[-2:], dtype=U64)
        return [a_full, b_full, cross.reshape(out)]

    def _matrix(
        self, a_full: np.ndarray, b_full: np.ndarray, ashape: tuple[int, ...], bshape: tuple[int, ...]
    ) -> Step[list[np.ndarray]]:
        a = a_full.reshape((1,) + ashape if len(ashape) == 1 else ashape)
        b = b_full.reshape(bshape + (1,) if len(bshape) == 1 else bshape)
        m, k = a.shape
        n = b.shape[1]
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

        def deltas(lo: int, hi: int) -> np.ndarray:
            ent = np.arange(lo // 64, hi // 64)
            return np.repeat(cols[ent // cols_out], 64, axis=0)

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.subtract.at(acc_t, ent % cols_out, _weighted(x0, rows_out))

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.add.at(acc_t, ent % cols_out, _weighted(y, rows_out))

        side = Side(64 * k * cols_out, rows_out)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side, deltas, on_send, lambda lo, hi: rbits[lo:hi], on_recv
        )
        cross = acc_t if transposed else acc_t.T  # (m, n) either way
        c = np.ascontiguousarray(cross) + ring_matmul(a, b)
        return [a_full, b_full, c.reshape(matmul_shape(ashape, bshape))]

    def _random_bits(self, bits: np.ndarray, arith: np.ndarray) -> Step[None]:
        """Turn private random bits (s at holder 0, t at holder 1; ``arith`` a copy) into the
        arithmetic shares of r = s XOR t = s + t - 2 s t, in place: one correlated OT per bit,
        holder 0 the sender (delta = s), holder 1 the receiver (choice t)."""
        count = bits.size
        if self.first:

            def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
                arith[lo:hi] += x0[:, 0] << U64(1)  # s - 2 (-x0)

            yield from _cot_pair(
                self.peer, self.snd, None, Side(count, 1), Side(0, 1),
                lambda lo, hi: bits[lo:hi], on_send, None, None,
            )
        else:
            flags = bits.astype(bool)

            def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
                arith[lo:hi] -= y[:, 0] << U64(1)  # t - 2 (x0 + t s)

            yield from _cot_pair(
                self.peer, None, self.rcv, Side(0, 1), Side(count, 1),
                None, None, lambda lo, hi: flags[lo:hi], on_recv,
            )

    def bit_pair(self, shape: tuple[int, ...]) -> Made:
        """A random bit with a boolean (early) and an arithmetic sharing (B2A)."""
        n = int(np.prod(shape, dtype=np.int64))
        bits = self.ctx.prg().random_bits(n)

        def step() -> Step[list[np.ndarray]]:
            arith = bits.copy()
            yield from self._random_bits(bits, arith)
            return [bits.reshape(shape), arith.reshape(shape)]

        return [bits.reshape(shape), None], step()

    def trunc_tuple(self, shape: tuple[int, ...], bits: int) -> Made:
        """(r, r_mid, r_msb) of ``_trunc.py`` from 64 random shared bits per element (none early)."""
        n = int(np.prod(shape, dtype=np.int64))
        rbits = self.ctx.prg().random_bits(64 * n)

        def step() -> Step[list[np.ndarray]]:
            arith = rbits.copy()
            yield from self._random_bits(rbits, arith)
            w = arith.reshape(n, 64)
            r = w @ _POW2  # sum_k 2^k r_k, mod 2^64
            r_mid = w[:, bits:63] @ _POW2[: 63 - bits]  # bits d..62 of r
            r_msb = np.ascontiguousarray(w[:, 63])
            return [r.reshape(shape), r_mid.reshape(shape), r_msb.reshape(shape)]

        return [None, None, None], step()
