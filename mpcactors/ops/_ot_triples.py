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
* **AND triples** from random OT, with no correction at all (GMW multiplication triples from
  two random OTs, as in Asharov, Lindell, Schneider, Zohner, CCS 2013): a random OT gives the sender
  ``x^0, x^1`` and the receiver ``r, x^r``, and ``x^0 XOR x^r = r AND (x^0 XOR x^1)``. So holder
  i's ``a_i`` is defined by its OTs as sender (bit ``lsb(x^0 XOR x^1)``), the other holder
  chooses with the bits of its ``b_j``, and the cross term ``a_i AND b_j`` is shared as
  ``lsb(x^0)`` and ``lsb(x^r)``. ``a_i`` is known only after the OT (``b_i`` is early), and
  only ``U`` travels: 16 bytes per bit instead of 24 (:func:`_rot_pair`, ``c`` rounds).
* **Random bits with both sharings** (B2A, bit injection): ``r = s XOR t`` with ``s`` at the
  sender and ``t`` at the receiver; arithmetically ``r = s + t - 2 s t`` and ``s t`` is one
  correlated OT with ``delta = s`` and choice ``t``. Holder 0 is the sender of the first half of
  the bits and holder 1 of the rest, so both directions share the rounds and the traffic.
* **Truncation tuples** (r, bits d..62 of r, msb r) for ``_trunc.py`` (Damgard et al. 2019): r is
  built from 64 random bits with both sharings, ``r = sum_k 2^k r_k``; then ``r_mid`` and
  ``r_msb`` are linear in the arithmetic shares of the bits.

Short corrections. When every use of an OT's output is multiplied by ``2^e`` (mod 2^64), only
its low ``64 - e`` bits matter, and only those of ``tau`` travel (``Side.keep``: kept bytes per
row position ``l = row mod 64``; :func:`_pack_tau` puts two short corrections in one word).
Gilboa's OT of bit ``l`` is weighted by ``2^l``: ``ceil((64 - l) / 8)`` bytes, 288 bytes per 64
OTs instead of 512 (:data:`GILBOA_KEEP`; triples and matrix triples). A truncation bit enters as
``2 x`` with weights ``2^k`` in r, ``2^(k-d)`` in r_mid and 1 in r_msb (:func:`trunc_keep`). The
receiver adds the short ``tau`` as if its high bytes were zero: its output is then
``x^0 + r delta`` modulo ``2^(8 keep)``, which is all the weighted sums read. Security is
unchanged: the short ``tau`` is a function (the low bytes) of the full one, which is already
pseudorandom to the receiver, so its view only shrinks; the sender's view (``U``) is as before.

Who sees what: a holder sees the other's ``U`` rows (pseudorandom: masked by a PRG of a base-OT
key it does not hold) and ``tau`` corrections (each masked by the hash of a row the receiver
cannot compute: ``H(Q ^ s)`` for the message it did not choose). Neither depends on the other
holder's shares; the test suite checks both with a distinguisher that catches an unmasked
variant. Semi-honest only, as IKNP without the KOS15 check.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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
# a round of random OTs carries only U: 30 MiB of it, so its buffer (like every other array of
# a round) stays under glibc's largest mmap threshold (32 MiB) and is reused, not page-faulted
ROT_ROUND_BYTES = 30 << 20
BLOCK = 1 << 18  # rows one kernel pass takes (4 MiB of rows: few calls, reused heap memory)
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


Runs = tuple[tuple[int, int, slice], ...]


def _runs(idx: Sequence[int]) -> Runs:
    """``idx`` as runs ``(o0, o1, sl)``: ``idx[o0:o1]`` is the range ``sl`` (step 1 or -1), so
    gathers are strided views instead of fancy indexing (~3x faster)."""
    out: list[tuple[int, int, slice]] = []
    o0 = 0
    for o in range(1, len(idx) + 1):
        if o < len(idx) and idx[o] - idx[o - 1] in (1, -1) and (o - o0 < 2 or idx[o] - idx[o - 1] == idx[o0 + 1] - idx[o0]):
            continue
        first, last = idx[o0], idx[o - 1]
        step = 1 if last >= first else -1
        out.append((o0, o, slice(first, last + step if last + step >= 0 else None, step)))
        o0 = o
    return tuple(out)


@dataclasses.dataclass(frozen=True, slots=True)
class _Pairing:
    """How :func:`_pack_tau` packs 64 row positions into words (:func:`_pairing`)."""

    pairs: int  # words that hold two positions
    words: int  # words per 64 rows (pairs + singles)
    lo: Runs  # position of the low part of pair word i
    hi: Runs  # position of the high part
    single: Runs  # positions with a word each (word pairs + i)
    shift: np.ndarray  # (pairs,) uint64: 8 x the low part's kept bytes
    mask: np.ndarray  # (pairs,) uint64: 2^shift - 1


@functools.lru_cache(maxsize=64)
def _pairing(keep: tuple[int, ...]) -> _Pairing:
    """Position ``lo[i]`` keeps its low ``shift[i] / 8`` bytes and ``hi[i]`` at least its kept
    ones, in one word (largest kept widths matched with the smallest, two pointers); the
    other positions take a word each."""
    order = sorted(range(64), key=lambda pos: -keep[pos])
    i, j = 0, 63
    pairs: list[tuple[int, int]] = []
    single: list[int] = []
    while i <= j:
        if i < j and keep[order[i]] + keep[order[j]] <= 8:
            pairs.append((order[i], order[j]))
            j -= 1
        else:
            single.append(order[i])
        i += 1
    shift = np.array([8 * keep[p] for p, _ in pairs], dtype=U64)  # < 64: keep[q] >= 1
    return _Pairing(
        len(pairs), len(pairs) + len(single), _runs([p for p, _ in pairs]), _runs([q for _, q in pairs]),
        _runs(sorted(single)), shift, (U64(1) << shift) - U64(1),
    )


# Bytes of a Gilboa correction that matter: the OT of bit l is weighted by 2^l, so only its low
# 64 - l bits count (module doc), i.e. ceil((64 - l) / 8) bytes: 288 bytes per 64 OTs, not 512.
GILBOA_KEEP = tuple(-(-(64 - pos) // 8) for pos in range(64))


@dataclasses.dataclass(frozen=True, slots=True)
class Side:
    """One direction of :func:`_cot_pair` as this holder sees it."""

    rows: int  # number of correlated OTs
    width: int  # words per OT message (L)
    # keep[l]: low bytes of each correction word that matter for rows 64 j + l (None: all 8;
    # rows then come in whole groups of 64)
    keep: tuple[int, ...] | None = None

    def row_bytes(self) -> float:
        """Bytes on the wire per row: 16 of ``U`` and the kept bytes of ``tau``."""
        if self.keep is None:
            return _WIDTH // 8 + 8 * self.width
        return _WIDTH // 8 + self.width * 8 * _pairing(self.keep).words / 64

    def tau_words(self, rows: int) -> int:
        """Packed correction words of ``rows`` rows (``keep`` given): :func:`_pack_tau`."""
        return rows // 64 * self.width * _pairing(self.keep or GILBOA_KEEP).words


def _rows_per_round(row_bytes: float) -> int:
    rows = int(ROUND_BYTES // row_bytes)
    return max(64, rows // 64 * 64)


def _chunks(n: int, row_bytes: float) -> list[tuple[int, int]]:
    step = _rows_per_round(row_bytes)
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _pack_tau(tau: np.ndarray, side: Side) -> np.ndarray:
    """The wire form of corrections ``(rows, L)`` uint64: as they are, or (``side.keep``) only
    their kept low bytes, two row positions per word where they fit (:func:`_pairing`): for
    Gilboa's 64 positions 36 words instead of 64 (288 bytes, exactly the kept ones)."""
    if side.keep is None:
        return tau
    pl = _pairing(side.keep)
    src = tau.reshape(-1, 64, side.width)
    out = np.empty((src.shape[0], pl.words, side.width), dtype=U64)
    pairs = out[:, : pl.pairs]
    for o0, o1, sl in pl.lo:
        np.bitwise_and(src[:, sl], pl.mask[o0:o1, None], out=pairs[:, o0:o1])
    for o0, o1, sl in pl.hi:
        pairs[:, o0:o1] |= src[:, sl] << pl.shift[o0:o1, None]
    for o0, o1, sl in pl.single:
        np.copyto(out[:, pl.pairs + o0 : pl.pairs + o1], src[:, sl])
    return out.reshape(-1)


def _unpack_tau(buf: np.ndarray, rows: int, side: Side) -> np.ndarray:
    """Inverse of :func:`_pack_tau` on the kept bytes (dropped ones come back as zeros or as
    bytes that did fit)."""
    if side.keep is None:
        return buf
    pl = _pairing(side.keep)
    words = buf.reshape(rows // 64, pl.words, side.width)
    out = np.empty((rows // 64, 64, side.width), dtype=U64)
    pairs = words[:, : pl.pairs]
    for o0, o1, sl in pl.lo:
        np.bitwise_and(pairs[:, o0:o1], pl.mask[o0:o1, None], out=out[:, sl])
    for o0, o1, sl in pl.hi:
        np.right_shift(pairs[:, o0:o1], pl.shift[o0:o1, None], out=out[:, sl])
    for o0, o1, sl in pl.single:
        np.copyto(out[:, sl], words[:, pl.pairs + o0 : pl.pairs + o1])
    return out.reshape(rows, side.width)


def _tau_ok(tau: np.ndarray, rows: int, side: Side) -> bool:
    if side.keep is None:
        return tau.shape == (rows, side.width) and tau.dtype == U64
    return tau.shape == (side.tau_words(rows),) and tau.dtype == U64


def _hash_words(h: Callable[..., np.ndarray], rows: np.ndarray, first: int, words: int) -> np.ndarray:
    idx = np.arange(first, first + rows.shape[0], dtype=np.uint64)
    out = h(rows, idx, -(-words // 2))
    return out.view(U64)[:, :words]


def _flip(q: np.ndarray, delta: np.ndarray) -> None:
    """``q ^= delta`` on every row of a C-contiguous ``q``, in place, as words against a tile of
    ``delta`` (a broadcast of a 2-word row runs 2 words per inner loop: ~10x slower)."""
    flat = q.view(U64).reshape(-1)
    d = delta.view(U64)
    tile = np.tile(d, min(q.shape[0], 4096))
    whole = flat.size // tile.size * tile.size
    body = flat[:whole].reshape(-1, tile.size)
    np.bitwise_xor(body, tile, out=body)
    np.bitwise_xor(flat[whole:], tile[: flat.size - whole], out=flat[whole:])


def _u_columns(peer: str, body: Any, width: int, rows: int, t: int) -> np.ndarray:
    u_in = body.get("u") if isinstance(body, dict) else None
    cols = (width, -(-rows // 8))
    if not isinstance(u_in, np.ndarray) or u_in.shape != cols or u_in.dtype != np.uint8:
        raise OtError(
            f"correlated OT: expected IKNP columns {cols} uint8 from {peer!r} in round {t}, "
            f"got {getattr(u_in, 'shape', type(u_in).__name__)}"
        )
    return u_in


def _receive_rows(rcv: ExtReceiver, r: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Receiver rows for choice bits ``r``: ``U`` columns ``(128, ceil(B/8))`` uint8 to send
    and ``H(T)`` of every row, ``(B, width)`` uint64, in blocks of :data:`BLOCK` rows."""
    b = r.size
    u = np.empty((rcv.width, -(-b // 8)), dtype=np.uint8)
    ht = np.empty((b, width), dtype=U64)
    for lo in range(0, b, BLOCK):
        hi = min(b, lo + BLOCK)
        first = rcv.rows_done
        u_blk, t_blk = rcv.choice_columns(r[lo:hi])
        u[:, lo // 8 : lo // 8 + u_blk.shape[1]] = u_blk
        ht[lo:hi] = _hash_words(rcv.hash, t_blk, first, width)
    return u, ht


def _send_rows(snd: ExtSender, u_in: np.ndarray, b: int, width: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Sender rows from the receiver's ``U`` columns, :data:`BLOCK` rows at a time:
    ``(lo, hi, H(Q), H(Q ^ s))`` for rows ``lo..hi-1``, each ``(hi - lo, width)`` uint64."""
    for lo in range(0, b, BLOCK):
        hi = min(b, lo + BLOCK)
        first = snd.rows_done
        q = snd.rows_from_columns(u_in[:, lo // 8 : -(-hi // 8)], hi - lo)
        x0 = _hash_words(snd.hash, q, first, width)
        _flip(q, snd.delta)
        yield lo, hi, x0, _hash_words(snd.hash, q, first, width)


# Callbacks of _cot_pair: deltas(a, b) -> the sender's correlations of rows a..b, (b - a, L)
# uint64, or (b - a) / 64 rows of L words when all 64 rows of a group share one (Gilboa);
# on_send(a, b, x) with the sender's (b - a, L) outputs; choices(a, b) -> (b - a,) bool for the
# receiver's rows; on_recv(a, b, y) with the receiver's outputs x + r delta (modulo 2^(8 keep)).
Deltas = Callable[[int, int], np.ndarray]
Chosen = Callable[[int, int], np.ndarray]
Sink = Callable[[int, int, np.ndarray], None]


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
    sc = _chunks(send.rows, send.row_bytes())
    rc = _chunks(recv.rows, recv.row_bytes())
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
            new_r = np.asarray(choices(a, b), dtype=bool)
            msg["u"], new_kept = _receive_rows(rcv, new_r, recv.width)
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
            u_in = _u_columns(peer, body, snd.width, b - a, t)
            packed = []
            for lo, hi, x0, x1 in _send_rows(snd, u_in, b - a, send.width):
                d = deltas(a + lo, a + hi)
                if d.shape[0] == hi - lo:
                    tau = np.add(x0, d.reshape(hi - lo, send.width))
                else:  # one correlation per group of 64 rows
                    tau = np.add(x0.reshape(-1, 64, send.width), d.reshape(-1, 1, send.width))
                    tau = tau.reshape(hi - lo, send.width)
                tau -= x1
                packed.append(_pack_tau(tau, send))
                on_send(a + lo, a + hi, x0)
            tau_out = packed[0] if len(packed) == 1 else np.concatenate(packed)
        if 0 < t <= len(rc):
            a, b = rc[t - 1]
            tau_in = body.get("tau") if body else None
            if not isinstance(tau_in, np.ndarray) or not _tau_ok(tau_in, b - a, recv):
                raise OtError(
                    f"correlated OT: expected the corrections of {b - a} x {recv.width} OTs from "
                    f"{peer!r} in round {t}, got {getattr(tau_in, 'shape', type(tau_in).__name__)}"
                )
            y = kept
            if y is None or kept_r is None:  # set in round t - 1 < len(rc)
                raise OtError("correlated OT: corrections before rows (internal)")
            y += np.multiply(_unpack_tau(tau_in, b - a, recv), kept_r[:, None])  # 3x a masked add
            if on_recv is not None:
                on_recv(a, b, y)
        kept, kept_r = new_kept, new_r


# Callbacks of _rot_pair: on_send(a, b, x0, x1) with the sender's two random messages of rows
# a..b, (b - a, 1) uint64 each; on_recv(a, b, x) with the receiver's chosen ones.
RotSink = Callable[[int, int, np.ndarray, np.ndarray], None]


def _rot_pair(
    peer: str,
    snd: ExtSender,
    rcv: ExtReceiver,
    rows: int,
    on_send: RotSink,
    choices: Chosen,
    on_recv: Sink,
) -> Step[None]:
    """Random OT with ``peer``, ``rows`` each way at once, without corrections: round t carries
    ``U`` of chunk t both ways (``max(1, chunks)`` rounds; module doc, AND triples)."""
    ch = _chunks(rows, _WIDTH // 8 * ROUND_BYTES / ROT_ROUND_BYTES)
    if not ch:
        yield Exchange(send={peer: {}}, recv=frozenset({peer}))
        return
    for t, (a, b) in enumerate(ch):
        u, xr = _receive_rows(rcv, np.asarray(choices(a, b), dtype=bool), 1)
        got = yield Exchange(send={peer: {"u": u}}, recv=frozenset({peer}))
        u_in = _u_columns(peer, got.get(peer), snd.width, b - a, t)
        for lo, hi, x0, x1 in _send_rows(snd, u_in, b - a, 1):
            on_send(a + lo, a + hi, x0, x1)
        on_recv(a, b, xr)


def ot_rounds(width: int, rows: int, keep: tuple[int, ...] | None = None) -> int:
    """Rounds of :func:`_cot_pair` for ``rows`` correlated OTs of ``width`` words each way."""
    return max(len(_chunks(rows, Side(rows, width, keep).row_bytes())), 1) + 1


def matmul_ot_rounds(ashape: tuple[int, ...], bshape: tuple[int, ...]) -> int:
    """Rounds of a 2-d matrix triple by OT (:meth:`OtSource.matrix_triple`)."""
    m = 1 if len(ashape) == 1 else ashape[-2]
    k = ashape[-1]
    n = 1 if len(bshape) == 1 else bshape[-1]
    if k * n > m * k:
        m, n = n, m
    return ot_rounds(m, 64 * k * n, GILBOA_KEEP)


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

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] -= _weighted(x0, 1)[:, 0]

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            acc[lo // 64 : hi // 64] += _weighted(y, 1)[:, 0]

        side = Side(64 * n, 1, GILBOA_KEEP)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side,
            lambda lo, hi: xs[lo // 64 : hi // 64], on_send, lambda lo, hi: ybits[lo:hi], on_recv,
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

        def deltas(lo: int, hi: int) -> np.ndarray:  # one column per group of 64 rows
            return cols[np.arange(lo // 64, hi // 64) // cols_out]

        def on_send(lo: int, hi: int, x0: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.subtract.at(acc_t, ent % cols_out, _weighted(x0, rows_out))

        def on_recv(lo: int, hi: int, y: np.ndarray) -> None:
            ent = np.arange(lo // 64, hi // 64)
            np.add.at(acc_t, ent % cols_out, _weighted(y, rows_out))

        side = Side(64 * k * cols_out, rows_out, GILBOA_KEEP)
        yield from _cot_pair(
            self.peer, self.snd, self.rcv, side, side, deltas, on_send, lambda lo, hi: rbits[lo:hi], on_recv
        )
        cross = acc_t if transposed else acc_t.T  # (m, n) either way
        c = np.ascontiguousarray(cross) + ring_matmul(a, b)
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
            Side(mine[1] - mine[0], 1, keep), Side(theirs[1] - theirs[0], 1, keep),
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

    def trunc_tuple(self, shape: tuple[int, ...], bits: int) -> Made:
        """(r, r_mid, r_msb) of ``_trunc.py`` from 64 random shared bits per element (none early).

        The bits are those of a private random word w per element, so the bits' own parts of the
        three sums are w, bits d..62 of w and bit 63 of w; the OT parts are added per block of
        whole elements (no 64-word array per element)."""
        n = int(np.prod(shape, dtype=np.int64))
        word = self.ctx.prg().random_u64(n)

        def step() -> Step[list[np.ndarray]]:
            r = word.copy()  # sum_k 2^k r_k, mod 2^64
            r_mid = (word << U64(1)) >> U64(bits + 1)  # bits d..62 of r
            r_msb = word >> U64(63)

            def add(lo: int, hi: int, c: np.ndarray) -> None:
                c64 = c.reshape(-1, 64)
                e = slice(lo // 64, hi // 64)
                r[e] += np.einsum("nl,l->n", c64, _POW2)
                r_mid[e] += np.einsum("nl,l->n", c64[:, bits:63], _POW2[: 63 - bits])
                r_msb[e] += c64[:, 63]

            yield from self._random_bits(_bits_of(word), 64, trunc_keep(bits), add)
            return [r.reshape(shape), r_mid.reshape(shape), r_msb.reshape(shape)]

        return [None, None, None], step()


def trunc_keep(bits: int) -> tuple[int, ...]:
    """Bytes of the corrections of a truncation tuple's 64 bits that matter (module doc).

    The OT output x of bit k enters as 2 x; bit k < d only in r (weight 2^k), bit d <= k <= 62
    also in r_mid (weight 2^(k-d)), bit 63 in r_msb (weight 1, kept exact): 63 - k, 63 - (k - d)
    and 63 low bits of x matter."""
    need = [63 - k if k < bits else 63 - (k - bits) for k in range(63)] + [63]
    return tuple(-(-b // 8) for b in need)
