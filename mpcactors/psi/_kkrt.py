"""KKRT16 PSI: cuckoo hashing + the 512-wide OT-extension OPRF, as sans-IO steps in chunks.

Theory of operation
-------------------
Kolesnikov, Kumaresan, Rosulek and Trieu, CCS 2016 (KKRT16), semi-honest. The *receiver* R
(the matcher, who learns the intersection) holds items ``X``, the *sender* S items ``Y``; items
are 128-bit hashes of the distinct keys. Both know three hash functions
``h_k(x) = AES_hk(x ^ e_k) mod m`` (``hk`` a fresh key R picks; ``m`` bins, public from ``|X|``).

1. R places every ``x`` by cuckoo hashing (3 functions, no stash) into one bin ``j = h_k(x)``
   and gives that bin the OPRF input ``x ^ k`` (``k`` in the last word, so ``(x, k)`` pairs
   differ); an empty bin gets a random input. ``m = 1.27 |X|`` for large sets: Pinkas,
   Schneider, Tkachenko and Yanai (EUROCRYPT 2019) measure that 3-way cuckoo hashing without a
   stash needs ~1.27n bins for failure probability 2^-40; small sets get more slack. If
   insertion still fails, R draws a new ``hk`` and retries locally before sending anything, so
   a failure costs time, never a wrong result; what the retry can tell S is bounded by the
   failure probability.
2. One KKRT OPRF row per bin (:mod:`mpcactors.ot._kkrt`): R learns ``F_j(input_j)``; S can
   evaluate every ``F_j``. The bins stream in chunks of ``B`` rows: R sends the ``U`` rows of
   chunk ``c``; S answers with ``F_{h_k(y)}(y ^ k)`` for every item ``y`` and every ``k`` whose
   bin ``h_k(y)`` falls in chunk ``c``.
3. Each of S's values is ``tag || pad ^ pos(y)``: the first ``ell`` bytes of the PRF output are
   the tag, the next 4 bytes mask the position of ``y`` in S's input (so R learns S's position
   of a common item -- exactly what the ECDH matcher learns -- and nothing for the others). S
   pads every chunk to a public count with random values and sends it sorted by tag, so neither
   the count nor the order depends on its items. R compares the tags of the chunk with its own
   values of the same bins; an equal tag is a common item, and its pad unmasks S's position.

Output length: a tag is compared with the ``B`` values of its chunk, so ``ell`` bytes with
``8 ell >= 40 + log2(#values x B)`` keep the probability of any false match below 2^-40 (~10
bytes for 2^20 items). Chunk counts: S's values for chunk ``c`` are padded to ``cap(c)``, the
mean plus a Bernstein bound that a chunk overflows with probability < 2^-40 over all chunks; an
overflow (that improbable) fails the job rather than leak a count.

Leakage (semi-honest): S learns ``|X|`` (through ``m``); R learns ``|Y|``, the intersection,
and S's (secretly shuffled) input position of each common item. Memory: per chunk, ``O(B)``
rows at both parties plus the sender's pair index (4 bytes per item and hash function) and each
side's items; buffers are reused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._errors import PsiError
from ..ops._comm import Exchange, Step, gather
from ..ops._prg import Prg
from ..ot._kernels import _into, aes_ecb
from ..ot._kkrt import KkrtBase, kkrt_receiver_setup, kkrt_sender_setup

__all__ = [
    "DEFAULT_CHUNK_BINS",
    "KkrtParams",
    "KkrtReceiverResult",
    "KkrtSenderResult",
    "cuckoo_insert",
    "hash_bins",
    "item_hashes",
    "params",
    "psi_receive",
    "psi_send",
]

DEFAULT_CHUNK_BINS = 1 << 16
MAX_CHUNK_BINS = 1 << 16
STAT_BITS = 40
HASH_SLICE = 1 << 16  # items hashed to bins at a time
_POS_BYTES = 4
MAX_ITEMS = (1 << 32) - 1


def bins_for(n: int) -> int:
    """Cuckoo table size for ``n`` items (3 hash functions, no stash)."""
    factor = 1.27 if n >= 1 << 14 else 1.5 if n >= 1 << 8 else 2.0
    return max(8, math.ceil(factor * n))


@dataclasses.dataclass(frozen=True, slots=True)
class KkrtParams:
    """Public sizes both parties derive from ``(|X|, |Y|, B)``."""

    n_recv: int
    n_send: int
    bins: int
    chunk: int
    caps: tuple[int, ...]  # padded number of sender values per chunk
    tag_bytes: int

    @property
    def chunks(self) -> int:
        return len(self.caps)

    def chunk_range(self, c: int) -> tuple[int, int]:
        return c * self.chunk, min(self.bins, (c + 1) * self.chunk)


def params(n_recv: int, n_send: int, chunk: int = DEFAULT_CHUNK_BINS) -> KkrtParams:
    """The public parameters (see the module doc for the bounds behind ``caps``/``tag_bytes``)."""
    m = bins_for(n_recv)
    chunks = -(-m // chunk)
    pairs = 3 * n_send
    log_fail = STAT_BITS * math.log(2) + math.log(chunks)
    caps = []
    for c in range(chunks):
        size = min(m, (c + 1) * chunk) - c * chunk
        mu = pairs * size / m
        # Bernstein: a sum of independent per-item counts in [0, 3] with variance <= 3 mu exceeds
        # mu + t with probability <= exp(-t^2 / (2 (3 mu + t))) <= 2^-40 / chunks.
        t = log_fail + math.sqrt(log_fail * log_fail + 6 * mu * log_fail)
        caps.append(min(pairs, math.ceil(mu + t)))
    compares = max(2, sum(caps) * min(chunk, m))
    tag_bits = STAT_BITS + math.log2(compares)
    tag_bytes = max(8, math.ceil(tag_bits / 8))
    if tag_bytes + _POS_BYTES > 16:
        raise PsiError(f"KKRT PSI of {n_recv} x {n_send} items is beyond one hash block: shard it")
    return KkrtParams(n_recv, n_send, m, chunk, tuple(caps), tag_bytes)


def item_hashes(ids: Iterable[str | bytes]) -> np.ndarray:
    """``(n, 16)`` uint8: SHA-256 of each id's UTF-8 bytes (domain-separated), cut to 128 bits."""
    import hashlib

    base = hashlib.sha256(b"mpcactors/psi/kkrt/item\0")
    out = bytearray()
    for x in ids:
        h = base.copy()
        h.update(x.encode("utf-8") if isinstance(x, str) else bytes(x))
        out += h.digest()[:16]
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, 16)


def hash_bins(key: bytes, items: np.ndarray, m: int) -> np.ndarray:
    """``(n, 3)`` int64: ``h_k(x) = AES_key(x ^ e) mod m`` (4 words from 2 blocks, 3 used).

    Computed ``HASH_SLICE`` items at a time through two buffers allocated once (the AES input
    and output of a slice), so the only allocation that grows with ``n`` is the result.
    """
    n = items.shape[0]
    out3 = np.empty((n, 3), dtype=np.int64)
    enc = aes_ecb(key)
    step = max(1, min(n, HASH_SLICE))
    blocks = np.empty((step, 2, 16), dtype=np.uint8)
    out = np.empty(32 * step + 16, dtype=np.uint8)
    mod = np.uint64(m)
    for s in range(0, n, step):
        k = min(step, n - s)
        blocks[:k, 0] = items[s : s + k]
        blocks[:k, 1] = items[s : s + k]
        blocks[:k, 1, 15] ^= 0x80
        _into(enc, blocks[:k].reshape(-1), out[: 32 * k + 16])
        words = out[: 32 * k].view(np.uint64).reshape(k, 4)
        for j in range(3):  # (one long loop per column: a (k, 3) view loops 3 words at a time)
            np.remainder(words[:, j], mod, out=out3[s : s + k, j], casting="unsafe")
    return out3


def cuckoo_insert(bins3: np.ndarray, m: int, *, max_rounds: int = 4000) -> tuple[np.ndarray, np.ndarray] | None:
    """Place each item in one of its 3 bins (parallel random-walk cuckoo insertion).

    Every round, each homeless item writes itself into the bin of its current hash function;
    one writer per bin wins (whichever numpy stores last), the others and the evicted
    occupants move on to one of their two other hash functions, chosen at random (AES-CTR).
    Each round costs O(homeless items); no sorting.

    Returns:
        ``(table, which)``: ``table[j]`` the item in bin ``j`` or -1, ``which[i]`` the hash
        function (0..2) item ``i`` sits under; or None when insertion did not finish.
    """
    n = bins3.shape[0]
    prg = Prg(os.urandom(32))
    table = np.full(m, -1, dtype=np.int64)
    which = np.zeros(n, dtype=np.int64)
    pending = np.arange(n, dtype=np.int64)
    for _ in range(max_rounds):
        if pending.size == 0:
            return table, which
        b = bins3[pending, which[pending]]
        prev = table[b]
        table[b] = pending
        won = table[b] == pending
        moved = np.concatenate([pending[~won], prev[won & (prev >= 0)]])
        step = (prg.random_u64(moved.size) & np.uint64(1)).astype(np.int64) + 1
        which[moved] = (which[moved] + step) % 3
        pending = moved
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class KkrtReceiverResult:
    """The receiver's result: matched items, in tag order (pseudo-random, the same S would see).

    Attributes:
        own: int64 indices into the receiver's items that are common.
        peer: int64 positions in the sender's items of the same common keys.
        n_peer: the sender's number of items.
        seconds: local compute time per phase.
        bytes_sent: payload bytes this party sent.
        base: the OT base this run set up (for later runs with the same peer), or None.
    """

    own: np.ndarray
    peer: np.ndarray
    n_peer: int
    seconds: dict[str, float]
    bytes_sent: int
    base: KkrtBase | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class KkrtSenderResult:
    """The sender's result: it learns the receiver's size only (``base``: as the receiver's)."""

    n_peer: int
    seconds: dict[str, float]
    bytes_sent: int
    base: KkrtBase | None = None


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._t
        self._t = now

    def skip(self) -> None:
        self._t = time.perf_counter()


def _nbytes(payload: Any) -> int:
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    if isinstance(payload, bytes):
        return len(payload)
    if isinstance(payload, dict):
        return sum(_nbytes(v) for v in payload.values())
    return 8


def _hello(peer: str, mine: dict[str, Any]) -> Step[dict[str, Any]]:
    got = yield Exchange(send={peer: mine}, recv=frozenset({peer}))
    msg = got[peer]
    if not isinstance(msg, dict):
        raise PsiError(f"KKRT PSI: malformed hello from {peer!r}")
    return msg


def _check_items(items: np.ndarray) -> np.ndarray:
    items = np.ascontiguousarray(items, dtype=np.uint8)
    if items.ndim != 2 or items.shape[1] != 16:
        raise ValueError(f"items must be (n, 16) uint8 hashes, not {items.shape}")
    if items.shape[0] > MAX_ITEMS:
        raise PsiError(f"KKRT PSI takes at most {MAX_ITEMS} items per side, not {items.shape[0]}")
    return items


def _inputs(items: np.ndarray, k: np.ndarray) -> np.ndarray:
    """OPRF inputs ``x ^ k`` (k in the last 64-bit word)."""
    x = items.copy()
    x.view(np.uint64).reshape(-1, 2)[:, 1] ^= k.astype(np.uint64)
    return x


def psi_receive(peer: str, items: np.ndarray, *, chunk: int = DEFAULT_CHUNK_BINS,
                peer_limit: int | None = None, bases: Sequence[KkrtBase] = ()) -> Step[KkrtReceiverResult]:
    """KKRT PSI, receiver side (learns the intersection); see the module doc.

    Args:
        peer: the sender's party name.
        items: ``(n, 16)`` uint8 hashes of this party's distinct keys.
        chunk: bins per streamed chunk (<= 2^16).
        peer_limit: the sender reports positions below this (default: its item count; a shard
            of a larger input reports positions in the whole input, see ``psi_send``).
        bases: OT bases kept from earlier runs with this peer (a shared one saves the base
            OTs, see :func:`~mpcactors.ot.kkrt_receiver_setup`).

    Returns:
        A :class:`KkrtReceiverResult`.

    Raises:
        PsiError: a malformed or inconsistent message from the sender.
    """
    clock = _Clock()
    items = _check_items(items)
    if not isinstance(chunk, int) or not 8 <= chunk <= MAX_CHUNK_BINS or chunk % 8:
        raise ValueError(f"chunk must be a multiple of 8 in [8, {MAX_CHUNK_BINS}], not {chunk!r}")
    n = items.shape[0]
    m = bins_for(n)
    while True:
        hkey = os.urandom(16)
        placed = cuckoo_insert(hash_bins(hkey, items, m), m)
        if placed is not None:
            break
    table, which = placed
    prg = Prg(os.urandom(32))  # inputs of the empty bins
    clock.lap("cuckoo")
    hello, rcv = yield from gather([_hello(peer, {"n": n, "cs": chunk, "hk": hkey}),
                                    kkrt_receiver_setup(peer, bases=bases)])
    clock.skip()
    n_peer = hello.get("n")
    if not isinstance(n_peer, int) or not 0 <= n_peer <= MAX_ITEMS:
        raise PsiError(f"KKRT PSI: bad item count {n_peer!r} from {peer!r}")
    p = params(n, n_peer, chunk)
    sent = 0
    own_parts: list[np.ndarray] = []
    peer_parts: list[np.ndarray] = []
    key_parts: list[np.ndarray] = []
    pending: tuple[np.ndarray, ...] | None = None
    for c in range(p.chunks + 1):
        send: dict[str, Any] = {}
        mine = None
        if c < p.chunks:
            lo, hi = p.chunk_range(c)
            occ = table[lo:hi]
            full = occ >= 0
            x = prg.random_u64(2 * (hi - lo)).view(np.uint8).reshape(-1, 16)
            x[full] = _inputs(items[occ[full]], which[occ[full]])
            clock.lap("encode")
            u, out = rcv.encode(x)
            clock.lap("oprf")
            mine = _own_values(out[full], occ[full], p.tag_bytes)
            clock.lap("hash")
            send = {peer: u}
            sent += u.nbytes
        got = yield Exchange(send=send, recv=frozenset({peer}) if c > 0 else frozenset())
        clock.skip()
        if c > 0 and pending is not None:
            v = got[peer]
            cap = p.caps[c - 1]
            if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.shape != (cap, p.tag_bytes + _POS_BYTES):
                raise PsiError(f"KKRT PSI: chunk {c - 1} from {peer!r} is not ({cap}, {p.tag_bytes + _POS_BYTES}) uint8")
            own, pos, key = _match(pending, v, p.tag_bytes)
            limit = n_peer if peer_limit is None else peer_limit
            if pos.size and int(pos.max()) >= limit:
                raise PsiError(f"KKRT PSI: {peer!r} sent a position beyond its {limit} items")
            own_parts.append(own)
            peer_parts.append(pos)
            key_parts.append(key)
            clock.lap("match")
        pending = mine
    own_all = np.concatenate(own_parts) if own_parts else np.empty(0, np.int64)
    peer_all = np.concatenate(peer_parts) if peer_parts else np.empty(0, np.int64)
    keys = np.concatenate(key_parts) if key_parts else np.empty((0, 2), np.uint64)
    order = np.lexsort((keys[:, 1], keys[:, 0])) if keys.size else np.empty(0, np.int64)
    clock.lap("match")
    return KkrtReceiverResult(own_all[order], peer_all[order], n_peer, clock.seconds, sent, rcv.new_base)


def _split(vals: np.ndarray, tag_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hi, lo, pad)`` of ``tag || pad`` rows: tag bytes 0..8 and 8..ell as uint64, pad uint32."""
    n = vals.shape[0]
    hi = np.ascontiguousarray(vals[:, :8]).view(np.uint64).reshape(n)
    lo8 = np.zeros((n, 8), dtype=np.uint8)
    lo8[:, : tag_bytes - 8] = vals[:, 8:tag_bytes]
    pad = np.ascontiguousarray(vals[:, tag_bytes : tag_bytes + _POS_BYTES]).view("<u4").reshape(n)
    return hi, lo8.view(np.uint64).reshape(n), pad


def _own_values(out: np.ndarray, item: np.ndarray, tag_bytes: int) -> tuple[np.ndarray, ...]:
    hi, lo, pad = _split(out, tag_bytes)
    order = np.argsort(hi)
    return hi[order], lo[order], pad[order], item[order], order


def _match(own: tuple[np.ndarray, ...], v: np.ndarray, tag_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tags of the sender's chunk equal to own tags: (own item, peer position, (hi, lo))."""
    hi_s, lo_s, pad_s, item_s, _ = own
    hi, lo, pad = _split(v, tag_bytes)
    if hi_s.size == 0 or hi.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 2), np.uint64)
    idx = np.searchsorted(hi_s, hi)
    idx[idx == hi_s.size] = 0
    hit = np.nonzero((hi_s[idx] == hi) & (lo_s[idx] == lo))[0]
    j = idx[hit]
    pos = (pad[hit] ^ pad_s[j]).astype(np.int64)
    return item_s[j].astype(np.int64), pos, np.stack([hi[hit], lo[hit]], axis=1)


def psi_send(peer: str, items: np.ndarray, *, positions: np.ndarray | None = None,
             bases: Sequence[KkrtBase] = ()) -> Step[KkrtSenderResult]:
    """KKRT PSI, sender side (learns only the receiver's size); see the module doc.

    Args:
        peer: the receiver's party name.
        items: ``(n, 16)`` uint8 hashes of this party's distinct keys; a common key's index
            here is the position the receiver learns, unless:
        positions: ``(n,)`` uint32: the position to report for each item instead (a shard
            reports positions in the whole input).
        bases: OT bases kept from earlier runs with this peer (see ``psi_receive``).

    Raises:
        PsiError: a malformed message from the receiver, or a chunk overflow (< 2^-40).
    """
    clock = _Clock()
    items = _check_items(items)
    n = items.shape[0]
    if positions is not None and positions.shape != (n,):
        raise ValueError(f"positions must be ({n},), not {positions.shape}")
    hello, snd = yield from gather([_hello(peer, {"n": n}), kkrt_sender_setup(peer, bases=bases)])
    clock.skip()
    n_peer, cs, hkey = hello.get("n"), hello.get("cs"), hello.get("hk")
    if (not isinstance(n_peer, int) or not 0 <= n_peer <= MAX_ITEMS or not isinstance(cs, int)
            or not 8 <= cs <= MAX_CHUNK_BINS or cs % 8 or not isinstance(hkey, bytes) or len(hkey) != 16):
        raise PsiError(f"KKRT PSI: malformed hello from {peer!r}")
    p = params(n_peer, n, cs)
    # Simple hashing: pair 3i + k is item i under hash k; group the pairs by chunk (radix sort)
    # and keep, in that order, the pair (uint32) and its bin's row within the chunk (uint16).
    word = np.dtype(np.uint32 if p.bins <= 1 << 32 else np.uint64)  # (uint32: half of int64)
    bins: np.ndarray = hash_bins(hkey, items, p.bins).reshape(-1).astype(word)
    cs_w = np.array(cs, dtype=word)
    chunk_of = (bins // cs_w).astype(np.uint16 if p.chunks <= 1 << 16 else np.uint32)
    order = np.argsort(chunk_of, kind="stable")
    starts = np.searchsorted(chunk_of[order], np.arange(p.chunks + 1))
    del chunk_of
    row_of = (bins[order] % cs_w).astype(np.uint16)
    del bins
    order = order.astype(np.uint32)
    prg = Prg(os.urandom(32))  # the padding values
    clock.lap("hashing")
    width = p.tag_bytes + _POS_BYTES
    sent = 0
    prev: np.ndarray | None = None
    for c in range(p.chunks + 1):
        send = {peer: prev} if prev is not None else {}
        if prev is not None:
            sent += prev.nbytes
        got = yield Exchange(send=send, recv=frozenset({peer}) if c < p.chunks else frozenset())
        clock.skip()
        if c == p.chunks:
            break
        u = got[peer]
        lo, hi = p.chunk_range(c)
        if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.shape != (hi - lo, 64):
            raise PsiError(f"KKRT PSI: chunk {c} from {peer!r} is not ({hi - lo}, 64) uint8")
        first, q = snd.absorb(u)
        clock.lap("oprf")
        pairs = order[starts[c] : starts[c + 1]].astype(np.int64)
        cap = p.caps[c]
        if pairs.size > cap:
            raise PsiError(f"KKRT PSI: chunk {c} overflowed its padded size (probability < 2^-40); rerun the job")
        item, k = pairs // 3, pairs % 3
        rows = row_of[starts[c] : starts[c + 1]].astype(np.int64)
        vals = snd.evaluate(q, rows, first, _inputs(items[item], k))
        clock.lap("evaluate")
        msg = np.empty((cap, width), dtype=np.uint8)
        msg[: item.size, : p.tag_bytes] = vals[:, : p.tag_bytes]
        pad = np.ascontiguousarray(vals[:, p.tag_bytes : width]).view("<u4").reshape(-1)
        report = item.astype("<u4") if positions is None else positions[item].astype("<u4")
        msg[: item.size, p.tag_bytes :] = (pad ^ report).view(np.uint8).reshape(-1, _POS_BYTES)
        dummies = cap - item.size
        if dummies:
            rnd = prg.random_u64(-(-dummies * width // 8)).view(np.uint8)
            msg[item.size :] = rnd[: dummies * width].reshape(dummies, width)
        key = np.ascontiguousarray(msg[:, :8]).view(np.uint64).reshape(-1)
        # (a void view gathers whole rows; fancy indexing a uint8 matrix copies byte by byte)
        prev = msg.view(f"V{width}").reshape(cap)[np.argsort(key)].view(np.uint8).reshape(cap, width)
        clock.lap("send")
    return KkrtSenderResult(n_peer, clock.seconds, sent, snd.new_base)
