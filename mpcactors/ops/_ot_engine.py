"""The OT engine of semi2k without a dealer: base OTs with the other holder, and correlated or
random OT both ways at once, chunked into rounds (the correlations built on it: ``_ot_triples.py``).

Theory of operation
-------------------
Once per job (op 0, :func:`ot_setup`) each holder runs 128 Chou-Orlandi base OTs in each direction
with the other holder (``ot/_base.py``) and turns them into a SoftSpoken set-up (``ot/_softspoken.py``,
k = 2: one more message, the GGM corrections), so each is an OT-extension sender towards the other
and a receiver from it. Every op then derives its own pair of extension instances from the
set-up and the op's address (:meth:`~mpcactors.ot._softspoken.SoftSender.derive`): instances of
different ops are independent, so concurrent ops may extend in any order.

Everything rests on one primitive, additive correlated OT over Z_2^64 (OT extension with the
Gilboa correction, as ``ot.cot_send``/``ot.cot_receive``): the sender inputs ``delta_j`` (a
vector of L words), the receiver a bit ``r_j``; the sender gets a random ``x_j`` and the receiver
``x_j + r_j delta_j``. SoftSpoken gives the IKNP correlation ``Q_j = T_j ^ r_j s`` for 8 bytes of
``U`` per OT (IKNP: 16). :func:`_cot_pair` runs this in both directions at once, chunked: in
round t each holder sends its matrix ``U`` (64 columns) for chunk t (as receiver) and its
correction ``tau = x^0 + delta - x^1`` for chunk t-1 (as sender), so ``c`` chunks cost ``c + 1``
rounds and no chunk is held whole.

Short corrections. When every use of an OT's output is multiplied by ``2^e`` (mod 2^64), only
its low ``64 - e`` bits matter, and only those of ``tau`` travel (``Side.keep``: kept bytes per
row position ``l = row mod 64``; :func:`_pack_tau` puts two short corrections in one word).
Gilboa's OT of bit ``l`` is weighted by ``2^l``: ``ceil((64 - l) / 8)`` bytes, 288 bytes per 64
OTs instead of 512 (:data:`GILBOA_KEEP`; triples and matrix triples, ``_ot_triples.py``). A truncation bit enters as
``2 x`` with weights ``2^k`` in r, ``2^(k-d)`` in r_mid and 1 in r_msb (``_ot_triples.trunc_keep``). The
receiver adds the short ``tau`` as if its high bytes were zero: its output is then
``x^0 + r delta`` modulo ``2^(8 keep)``, which is all the weighted sums read. Security is
unchanged: the short ``tau`` is a function (the low bytes) of the full one, which is already
pseudorandom to the receiver, so its view only shrinks; the sender's view (``U``) is as before.

Who sees what: a holder sees the other's ``U`` columns (pseudorandom: each masked by the PRG of
the one GGM leaf it does not hold) and ``tau`` corrections (each masked by the hash of a row the receiver
cannot compute: ``H(Q ^ s)`` for the message it did not choose). Neither depends on the other
holder's shares; the test suite checks both with a distinguisher that catches an unmasked
variant. Semi-honest only: SoftSpoken without its consistency check.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..ot._base import OtError
from ..ot._softspoken import (
    U_COLUMNS,
    K,
    SoftReceiver,
    SoftSender,
    soft_receiver_setup,
    soft_sender_setup,
)
from ._checks import U64
from ._comm import Ahead, Exchange, Step, gather, gather_peers

__all__ = ["GILBOA_KEEP", "OtPair", "Side", "idle_rounds", "matmul_ot_rounds", "ot_rounds", "ot_setup"]

# U + tau bytes per chunk (one round) and direction (random OTs: U only): 30 MiB, so a round's
# message, and the sender's buffer that encodes it, stay under glibc's largest mmap threshold
# (32 MiB) and reuse warm heap memory; at 32 MiB every encoded round was a fresh map, page-faulted
# (mul 10^6: encoding took 0.8 s of CPU instead of 0.45 s)
ROUND_BYTES = 30 << 20
BLOCK = 1 << 18  # rows one kernel pass takes (4 MiB of rows: few calls, reused heap memory)
# bytes of one block's hash outputs and corrections (rows x L words): wide correlations (a matrix
# triple's columns) are hashed, corrected and summed this much at a time, so no chunk-sized
# temporaries are made (each was fresh memory: matmul 256 spent half its CPU in page faults)
BLOCK_BYTES = 1 << 21
_U_BYTES = U_COLUMNS // 8  # bytes of U per OT at SoftSpoken's default k (2); k = 4: 4


@dataclasses.dataclass(slots=True)
class OtPair:
    """Base OTs with one peer: this holder as extension sender to it and as receiver from it."""

    peer: str
    sender: SoftSender
    receiver: SoftReceiver
    matrix: str = "ot"  # how matrix triples are made with this peer: "ot", "he" or "auto" (by cost)
    mul: str = "ot"  # how elementwise triples are made with this peer: "ot", "he" or "auto" (by cost)
    # runs a named self-contained step elsewhere and relays its rounds (mpcactors._offload), or None
    offload: Callable[[str, Mapping[str, Any]], Step[Any]] | None = None

    @property
    def u_bytes(self) -> int:
        """Bytes of ``U`` per OT (``128 / k / 8``; both directions use one k)."""
        return self.receiver.u_width // 8


def ot_setup(party: str, peers: Sequence[str], job: bytes, k: int = K) -> Step[dict[str, OtPair]]:
    """SoftSpoken set-ups with every peer, both directions at once (3 rounds: 128 base OTs
    each way, then the GGM corrections of :mod:`~mpcactors.ot._softspoken`), ``k`` bits per
    small VOLE (``U`` is ``16 / k`` bytes per OT; the PRG work grows as ``2^k / k``)."""
    label = b"mpcactors/semi2k-ot/v1/" + job

    def one(peer: str) -> Step[OtPair]:
        first, second = sorted((party, peer))
        me_first = party == first
        # direction (first -> second): first is the extension sender; labels name the direction
        lab_fs = label + b"/" + first.encode() + b">" + second.encode()
        lab_sf = label + b"/" + second.encode() + b">" + first.encode()
        # gather pairs sub-steps by index: index 0 is the direction first -> second at both
        s_step = soft_sender_setup(peer, label=lab_fs if me_first else lab_sf, k=k)
        r_step = soft_receiver_setup(peer, label=lab_sf if me_first else lab_fs, k=k)
        if me_first:
            snd, rcv = yield from gather([s_step, r_step])
        else:
            rcv, snd = yield from gather([r_step, s_step])
        return OtPair(peer, snd, rcv)

    return (yield from gather_peers({p: one(p) for p in peers}))


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
    u_bytes: int = _U_BYTES  # of U per row (SoftSpoken's 128 / k columns)

    def row_bytes(self) -> float:
        """Bytes on the wire per row: ``U`` (SoftSpoken's columns) and the kept bytes of ``tau``."""
        if self.keep is None:
            return self.u_bytes + 8 * self.width
        return self.u_bytes + self.width * 8 * _pairing(self.keep).words / 64

    def tau_words(self, rows: int) -> int:
        """Packed correction words of ``rows`` rows (``keep`` given): :func:`_pack_tau`."""
        return rows // 64 * self.width * _pairing(self.keep or GILBOA_KEEP).words


def _rows_per_round(row_bytes: float) -> int:
    rows = int(ROUND_BYTES // row_bytes)
    return max(64, rows // 64 * 64)


def _chunks(n: int, row_bytes: float) -> list[tuple[int, int]]:
    step = _rows_per_round(row_bytes)
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _pack_tau(tau: np.ndarray, side: Side, into: np.ndarray | None = None) -> np.ndarray:
    """The wire form of corrections ``(rows, L)`` uint64: as they are, or (``side.keep``) only
    their kept low bytes, two row positions per word where they fit (:func:`_pairing`): for
    Gilboa's 64 positions 36 words instead of 64 (288 bytes, exactly the kept ones). ``into``:
    a flat uint64 array of :meth:`Side.tau_words` words to write into (``side.keep`` given)."""
    if side.keep is None:
        return tau
    pl = _pairing(side.keep)
    src = tau.reshape(-1, 64, side.width)
    shape = (src.shape[0], pl.words, side.width)
    out = np.empty(shape, dtype=U64) if into is None else into.reshape(shape)
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


def _block_rows(width: int) -> int:
    """Rows of a block of ``width``-word outputs: :data:`BLOCK_BYTES` of them, a multiple of 64
    (a Gilboa group), at most :data:`BLOCK`."""
    return max(64, min(BLOCK, BLOCK_BYTES // (8 * width) // 64 * 64))


def _add_corrections(y: np.ndarray, tau: np.ndarray, r: np.ndarray, side: Side) -> None:
    """The receiver's ``y += r * tau`` (``tau`` in its wire form), a block of rows at a time."""
    rows = y.shape[0]
    step = _block_rows(side.width)
    groups = tau.reshape(rows // 64, -1) if side.keep is not None else tau
    for s in range(0, rows, step):
        e = min(rows, s + step)
        part = _unpack_tau(groups[s // 64 : e // 64].reshape(-1), e - s, side) if side.keep is not None else tau[s:e]
        y[s:e] += np.multiply(part, r[s:e, None])  # 3x a masked add


def _hash_words(
    h: Callable[..., np.ndarray], rows: np.ndarray, first: int, words: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``words`` uint64 of the row hash of each row; into ``out`` ((rows, words), contiguous)
    when given (straight, for an even ``words``)."""
    idx = np.arange(first, first + rows.shape[0], dtype=np.uint64)
    if words == 1:  # the hash writes only the first word
        out = np.empty((rows.shape[0], 1), dtype=U64) if out is None else out
        h(rows, idx, 1, out=out)
        return out
    if out is not None and words % 2 == 0:
        h(rows, idx, words // 2, out=out)
        return out
    res = h(rows, idx, -(-words // 2)).view(U64)[:, :words]
    if out is None:
        return res
    np.copyto(out, res)
    return out


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
            f"correlated OT: expected OT-extension columns {cols} uint8 from {peer!r} in round {t}, "
            f"got {getattr(u_in, 'shape', type(u_in).__name__)}"
        )
    return u_in


def _receive_rows(
    rcv: SoftReceiver, r: np.ndarray, width: int, ht: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Receiver rows for choice bits ``r``: ``U`` columns ``(64, ceil(B/8))`` uint8 to send
    and ``H(T)`` of every row, ``(B, width)`` uint64, in blocks of :data:`BLOCK` rows."""
    b = r.size
    u = np.empty((rcv.u_width, -(-b // 8)), dtype=np.uint8)
    ht = np.empty((b, width), dtype=U64) if ht is None else ht[:b]
    step = _block_rows(width)
    for lo in range(0, b, BLOCK):
        hi = min(b, lo + BLOCK)
        first = rcv.rows_done
        u_blk, t_blk = rcv.choice_columns(r[lo:hi])
        u[:, lo // 8 : lo // 8 + u_blk.shape[1]] = u_blk
        for s in range(0, hi - lo, step):
            e = min(hi - lo, s + step)
            _hash_words(rcv.hash, t_blk[s:e], first + s, width, out=ht[lo + s : lo + e])
    return u, ht


def _send_rows(snd: SoftSender, u_in: np.ndarray, b: int, width: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Sender rows from the receiver's ``U`` columns, :data:`BLOCK` rows at a time, hashed and
    yielded in blocks of :func:`_block_rows`: ``(lo, hi, H(Q), H(Q ^ s))`` for rows
    ``lo..hi-1``, each ``(hi - lo, width)`` uint64."""
    step = _block_rows(width)
    for lo in range(0, b, BLOCK):
        hi = min(b, lo + BLOCK)
        first = snd.rows_done
        q = snd.rows_from_columns(u_in[:, lo // 8 : -(-hi // 8)], hi - lo)
        for s in range(0, hi - lo, step):
            e = min(hi - lo, s + step)
            qs = q[s:e]
            x0 = _hash_words(snd.hash, qs, first + s, width)
            _flip(qs, snd.delta)
            yield lo + s, lo + e, x0, _hash_words(snd.hash, qs, first + s, width)


# Callbacks of _cot_pair: deltas(a, b) -> the sender's correlations of rows a..b, (b - a, L)
# uint64, or (b - a) / 64 rows of L words when all 64 rows of a group share one (Gilboa);
# on_send(a, b, x) with the sender's (b - a, L) outputs; choices(a, b) -> (b - a,) bool for the
# receiver's rows; on_recv(a, b, y) with the receiver's outputs x + r delta (modulo 2^(8 keep)).
Deltas = Callable[[int, int], np.ndarray]
Chosen = Callable[[int, int], np.ndarray]
Sink = Callable[[int, int, np.ndarray], None]


def _cot_pair(
    peer: str,
    snd: SoftSender | None,
    rcv: SoftReceiver | None,
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
    public: round t carries U of receiver chunk t and tau of sender chunk t - 1. Receiver chunk
    t + 1 needs no message, so round t hands it to the driver as ``meanwhile`` (it is computed
    while the round's messages travel, or on resuming if they are already here).
    """
    sc = _chunks(send.rows, send.row_bytes())
    rc = _chunks(recv.rows, recv.row_bytes())
    if not sc and not rc:  # empty arrays: keep the round structure of every other shape
        for _ in range(2):
            yield Exchange(send={peer: {}}, recv=frozenset({peer}))
        return
    rounds = max(len(sc), len(rc)) + 1
    if rc and (rcv is None or choices is None):
        raise OtError("correlated OT: receiver side without its state")
    tau_out: np.ndarray | None = None
    kept: np.ndarray | None = None  # receiver: H(T) of the chunk whose tau arrives next
    kept_r: np.ndarray | None = None
    # H(T) of chunk t lives in buffer t % 3 from round t - 1 (computed ahead, while round
    # t - 1's messages travel) until chunk t's corrections arrive in round t + 1 (every on_recv
    # consumes its rows at once): three buffers, not a fresh one per round
    bufs = [np.empty((max(b - a for a, b in rc), recv.width), dtype=U64) for _ in range(min(3, len(rc)))]

    def receiver_chunk(t: int) -> Ahead[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        def work() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            a, b = rc[t]
            r = np.asarray(choices(a, b), dtype=bool)  # type: ignore[misc]
            u, ht = _receive_rows(rcv, r, recv.width, bufs[t % len(bufs)])  # type: ignore[arg-type]
            return u, ht, r

        return Ahead(work)

    ahead = receiver_chunk(0) if rc else None
    for t in range(rounds):
        msg: dict[str, np.ndarray] = {}
        new_kept = new_r = None
        if ahead is not None:  # receiver chunk t (computed while round t - 1's messages travelled)
            msg["u"], new_kept, new_r = ahead.result()
            ahead = receiver_chunk(t + 1) if t + 1 < len(rc) else None
        if tau_out is not None:
            msg["tau"] = tau_out
            tau_out = None
        expect = t < len(sc) or 0 < t <= len(rc)
        got = yield Exchange(
            send={peer: msg} if msg else {}, recv=frozenset({peer}) if expect else frozenset(), meanwhile=ahead
        )
        body = got.get(peer) if expect else None
        if expect and not isinstance(body, dict):
            raise OtError(f"correlated OT: malformed message from {peer!r} in round {t}")
        if t < len(sc):
            if snd is None or deltas is None or on_send is None:
                raise OtError("correlated OT: sender side without its state")
            a, b = sc[t]
            u_in = _u_columns(peer, body, snd.u_width, b - a, t)
            # the round's message, filled a block at a time (no list of blocks to concatenate)
            if send.keep is None:
                tau_out = np.empty((b - a, send.width), dtype=U64)
            else:
                tau_out = np.empty(send.tau_words(b - a), dtype=U64)
                per_group = send.tau_words(64)
            for lo, hi, x0, x1 in _send_rows(snd, u_in, b - a, send.width):
                d = deltas(a + lo, a + hi)
                if d.shape[0] == hi - lo:
                    tau = np.add(x0, d.reshape(hi - lo, send.width))
                else:  # one correlation per group of 64 rows
                    tau = np.add(x0.reshape(-1, 64, send.width), d.reshape(-1, 1, send.width))
                    tau = tau.reshape(hi - lo, send.width)
                tau -= x1
                if send.keep is None:
                    tau_out[lo:hi] = tau
                else:
                    _pack_tau(tau, send, into=tau_out[lo // 64 * per_group : hi // 64 * per_group])
                on_send(a + lo, a + hi, x0)
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
            _add_corrections(y, tau_in, kept_r, recv)
            if on_recv is not None:
                on_recv(a, b, y)
        kept, kept_r = new_kept, new_r


# Callbacks of _rot_pair: on_send(a, b, x0, x1) with the sender's two random messages of rows
# a..b, (b - a, 1) uint64 each; on_recv(a, b, x) with the receiver's chosen ones.
RotSink = Callable[[int, int, np.ndarray, np.ndarray], None]


def _rot_pair(
    peer: str,
    snd: SoftSender,
    rcv: SoftReceiver,
    rows: int,
    on_send: RotSink,
    choices: Chosen,
    on_recv: Sink,
) -> Step[None]:
    """Random OT with ``peer``, ``rows`` each way at once, without corrections: round t carries
    ``U`` of chunk t both ways (``max(1, chunks)`` rounds; module doc, AND triples); the
    receiver's chunk t + 1 is round t's ``meanwhile``."""
    ch = _chunks(rows, rcv.u_width // 8)
    if not ch:
        yield Exchange(send={peer: {}}, recv=frozenset({peer}))
        return

    def receiver_chunk(t: int) -> Ahead[tuple[np.ndarray, np.ndarray]]:
        a, b = ch[t]
        return Ahead(lambda: _receive_rows(rcv, np.asarray(choices(a, b), dtype=bool), 1))

    ahead = receiver_chunk(0)
    for t, (a, b) in enumerate(ch):
        u, xr = ahead.result()
        nxt = receiver_chunk(t + 1) if t + 1 < len(ch) else None  # while this round travels
        got = yield Exchange(send={peer: {"u": u}}, recv=frozenset({peer}), meanwhile=nxt)
        if nxt is not None:
            ahead = nxt
        u_in = _u_columns(peer, got.get(peer), snd.u_width, b - a, t)
        for lo, hi, x0, x1 in _send_rows(snd, u_in, b - a, 1):
            on_send(a + lo, a + hi, x0, x1)
        on_recv(a, b, xr)


def ot_rounds(width: int, rows: int, keep: tuple[int, ...] | None = None, u_bytes: int = _U_BYTES) -> int:
    """Rounds of :func:`_cot_pair` for ``rows`` correlated OTs of ``width`` words each way."""
    return max(len(_chunks(rows, Side(rows, width, keep, u_bytes).row_bytes())), 1) + 1


def idle_rounds(peer: str, rounds: int) -> Step[tuple[np.ndarray, np.ndarray]]:
    """``rounds`` empty exchanges with ``peer``: a pair with no OTs in a stage where other pairs
    run :func:`_cot_pair` (``_ot_pairwise``) keeps their round count, so no holder runs ahead
    into the next stage. Returns no outputs either way, like an empty ``OtSource.products``."""
    for _ in range(rounds):
        yield Exchange(send={peer: {}}, recv=frozenset({peer}))
    return np.zeros(0, dtype=U64), np.zeros(0, dtype=U64)


def matmul_ot_rounds(ashape: tuple[int, ...], bshape: tuple[int, ...], u_bytes: int = _U_BYTES) -> int:
    """Rounds of a 2-d matrix triple by OT (:meth:`OtSource.matrix_triple`)."""
    m = 1 if len(ashape) == 1 else ashape[-2]
    k = ashape[-1]
    n = 1 if len(bshape) == 1 else bshape[-1]
    if k * n > m * k:
        m, n = n, m
    return ot_rounds(m, 64 * k * n, GILBOA_KEEP, u_bytes)
