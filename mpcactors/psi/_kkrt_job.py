"""The KKRT exchange of a PSI job: prepared stream -> shards -> KKRT per shard -> matched pairs.

Theory of operation
-------------------
Items are the first 16 bytes of the digests the preparation already computed (``d(x) =
SHA-256(DOMAIN || enc(x))``, kept sealed on disk, :mod:`._prepare`), one per stream position,
so everything after the exchange -- matching groups, alignment, joins, output -- is the ECDH
path's code, fed with ``(own position, peer position)`` pairs instead of compared ciphertexts.

1. Split (:func:`split_shards`): read the sealed stream a slice at a time (one buffer of
   ``SPLIT_ROWS`` positions, reused), open the digests, route each item with its stream position
   to shard ``AES_ks(item)[0:8] mod S``; ``ks`` is derived from the job's session (both
   parties' hello nonces), so both parties route a common item to the same shard and neither
   chose the key alone. Shard files live in the job's private folder.
2. Run every shard as a KKRT PSI (:mod:`._kkrt`) on channel ``kkrt<s>`` of the one link, all at
   once, through a :class:`~._shards.ShardRunner` (threads or worker processes). The matcher
   is the KKRT receiver. The sender reports the *stream* position of each common item, so the
   matcher needs no table of the other side's shards.
3. The matcher keeps the pairs as two checkpoint files (``chunks/kkrt/0`` own positions and
   ``1`` peer positions, little-endian int64), in shard order, each shard's pairs in tag order
   -- a pseudo-random order unrelated to either input, which the two outputs share. A resumed
   job whose matcher holds them skips the exchange; one that crashed during it redoes the whole
   exchange (fresh OT, fresh cuckoo key: a new, independent KKRT run over the same prepared
   streams).

Leakage beyond KKRT's (see docs/PSI.md): each party learns how many of the other's items fall
in each shard, a multinomial draw under a fresh key, independent of the ids.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from cryptography.hazmat.primitives import hashes

from .._errors import PsiError
from ..link._abc import JobLink
from ..ot._kernels import _into, aes_ecb
from ..ot._kkrt import KkrtBase
from ._checkpoint import Workspace, private_open
from ._ecdh import POINT_BYTES, open_digests
from ._kkrt import DEFAULT_CHUNK_BINS, KkrtReceiverResult, bins_for, params
from ._prepare import PreparedFiles
from ._progress import ProgressReporter
from ._shards import ShardRunner, ShardTask

__all__ = ["MAX_SHARDS", "SHARD_MIN_ITEMS", "KkrtBases", "KkrtOutcome", "has_pairs", "kkrt_exchange",
           "load_pairs", "node_bases", "shard_count", "split_shards"]

SPLIT_ROWS = 1 << 16  # stream positions opened and routed at a time
MAX_SHARDS = 64
SHARD_MIN_ITEMS = 1 << 16  # below this per shard, one shard (a process start is not worth it)
KIND = "kkrt"


def shard_count(n_own: int, workers: int) -> int:
    """This party's preferred shard count (the job takes the larger of the two preferences)."""
    return int(max(1, min(MAX_SHARDS, workers, n_own // SHARD_MIN_ITEMS)))


def shard_key(session: str) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(b"mpcactors/psi/kkrt/shard\0" + session.encode())
    return h.finalize()[:16]


def split_shards(files: PreparedFiles, out_dir: str, key: bytes, shards: int) -> list[int]:
    """Write ``<s>.items`` / ``<s>.pos`` per shard into ``out_dir``; returns the shard sizes.

    Memory: one slice of ``SPLIT_ROWS`` positions (its buffers allocated once, reused). The
    sealed stream is read with ``pread`` into one buffer, not through the memmap, so its pages
    do not stay mapped in this process (512 MB at 2^24 ids).
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    n = files.prepared.n_unique
    seal = files.prepared.seal_key
    enc = aes_ecb(key)
    block = np.empty(16 * SPLIT_ROWS + 16, dtype=np.uint8)
    pos = np.empty(SPLIT_ROWS, dtype="<u4")
    sizes = [0] * shards
    sealed = bytearray(POINT_BYTES * SPLIT_ROWS)
    items_f = [private_open(d / f"{s}.items", buffering=0) for s in range(shards)]
    pos_f = [private_open(d / f"{s}.pos", buffering=0) for s in range(shards)]
    stream = os.open(files.path("own_h.bin"), os.O_RDONLY)
    try:
        for start in range(0, n, SPLIT_ROWS):
            stop = min(n, start + SPLIT_ROWS)
            k = stop - start
            view = memoryview(sealed)[: POINT_BYTES * k]
            if os.preadv(stream, [view], POINT_BYTES * start) != len(view):
                raise PsiError(f"the prepared stream {files.path('own_h.bin')!r} is truncated")
            digests = np.frombuffer(open_digests(seal, bytes(view)), dtype=np.uint8)
            items = np.ascontiguousarray(digests.reshape(k, POINT_BYTES)[:, :16])
            pos[:k] = np.arange(start, stop, dtype=np.uint32)
            if shards == 1:
                items.tofile(items_f[0])
                pos[:k].tofile(pos_f[0])
                sizes[0] += k
                continue
            _into(enc, items.reshape(-1), block)
            s_of = block[: 16 * k].view("<u8")[::2] % np.uint64(shards)
            order = np.argsort(s_of, kind="stable")
            cuts = np.searchsorted(s_of[order], np.arange(shards + 1))
            for s in range(shards):
                sel = order[cuts[s] : cuts[s + 1]]
                if sel.size:
                    items[sel].tofile(items_f[s])
                    pos[:k][sel].tofile(pos_f[s])
                    sizes[s] += int(sel.size)
    finally:
        os.close(stream)
        for f in items_f + pos_f:
            f.close()
    return sizes


@dataclasses.dataclass(frozen=True, slots=True)
class KkrtOutcome:
    """What this party's KKRT exchange did: OPRF rows (bins) computed here, bytes it sent."""

    oprf_rows: int
    bytes_sent: int


async def kkrt_exchange(
    node: JobLink,
    ws: Workspace,
    files: PreparedFiles,
    runner: ShardRunner,
    *,
    peer: str,
    job: str,
    session: str,
    shards: int,
    matcher: bool,
    n_own: int,
    n_peer: int,
    reporter: ProgressReporter,
) -> KkrtOutcome:
    """Run the KKRT exchange (see the module doc); the matcher stores the pairs in ``ws``."""
    work = ws.root / "kkrt-shards"
    sizes = await anyio.to_thread.run_sync(split_shards, files, str(work), shard_key(session), shards)
    n_recv, n_send = (n_own, n_peer) if matcher else (n_peer, n_own)
    progress = _Progress(reporter, n_own + n_peer, shards, n_recv, n_send)
    results: list[Any] = [None] * shards
    bases = node_bases(node)
    kept = bases.get(peer, matcher)

    async def one(s: int) -> None:
        task = ShardTask(index=s, receiver=matcher, peer=peer, items_path=str(work / f"{s}.items"),
                         positions_path=str(work / f"{s}.pos"), peer_limit=n_peer, bases=kept)
        channel = node.channel(peer, job, f"{KIND}{s}")
        results[s] = await runner.run(task, channel, progress.round_of(s))
        if results[s].base is not None:
            bases.add(peer, results[s].base)
        progress.finish(s)

    async with anyio.create_task_group() as tg:
        for s in range(shards):
            tg.start_soon(one, s)
    rows = 0
    sent = 0
    for r in results:
        sent += int(r.bytes_sent)
    if matcher:
        own_parts, peer_parts = [], []
        for s, r in enumerate(results):
            if not isinstance(r, KkrtReceiverResult):
                raise TypeError(f"shard {s} returned {type(r).__name__}, not a receiver's result")
            own_pos = np.fromfile(work / f"{s}.pos", dtype="<u4").astype(np.int64)
            own_parts.append(own_pos[r.own])
            peer_parts.append(r.peer)
            rows += _bins(sizes[s])
        own_all = np.concatenate(own_parts) if own_parts else np.empty(0, np.int64)
        peer_all = np.concatenate(peer_parts) if peer_parts else np.empty(0, np.int64)
        await anyio.to_thread.run_sync(_store, ws, own_all, peer_all)
    else:
        rows = sum(_bins(int(getattr(r, "n_peer", 0))) for r in results)
    await anyio.to_thread.run_sync(_rmtree, work)
    return KkrtOutcome(rows, sent)


class KkrtBases:
    """The KKRT OT bases a node keeps per peer and role, newest first (a few each).

    A base is the 512 base OTs of one set-up (:class:`~mpcactors.ot.KkrtBase`); a later job
    with the same peer offers it and, if the peer still holds it too, sets up its sessions in
    one round without public-key work. Kept in memory only: a restarted node sets up afresh.
    """

    KEEP = 4

    def __init__(self) -> None:
        self._bases: dict[tuple[str, bool], list[KkrtBase]] = {}

    def get(self, peer: str, receiver: bool) -> tuple[KkrtBase, ...]:
        return tuple(self._bases.get((peer, receiver), ()))

    def add(self, peer: str, base: KkrtBase) -> None:
        kept = self._bases.setdefault((peer, base.receiver), [])
        kept[:] = [base] + [b for b in kept if b.id != base.id][: self.KEEP - 1]


_NODE_BASES: weakref.WeakKeyDictionary[Any, KkrtBases] = weakref.WeakKeyDictionary()


def node_bases(node: JobLink) -> KkrtBases:
    """The :class:`KkrtBases` of ``node`` (made on first use; gone with the node)."""
    try:
        return _NODE_BASES.setdefault(node, KkrtBases())
    except TypeError:  # a node that cannot be weakly referenced keeps none
        return KkrtBases()


def _bins(n: int) -> int:
    return bins_for(n)


def _store(ws: Workspace, own: np.ndarray, peer: np.ndarray) -> None:
    # the peer file first: "own" present means the pair is complete
    ws.write_chunk(KIND, 1, peer.astype("<i8").tobytes())
    ws.write_chunk(KIND, 0, own.astype("<i8").tobytes())


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def has_pairs(ws: Workspace) -> bool:
    """Whether the matcher's checkpoint holds a finished exchange."""
    return {0, 1} <= ws.chunks_present(KIND)


def load_pairs(ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """The matcher's stored ``(own positions, peer positions)``."""
    own = ws.read_chunk(KIND, 0).view("<i8").astype(np.int64)
    peer = ws.read_chunk(KIND, 1).view("<i8").astype(np.int64)
    return own, peer


class _Progress:
    """Spreads the exchange's progress total over the shards' rounds (an estimate per round,
    exact at the end of each shard)."""

    def __init__(self, reporter: ProgressReporter, total: int, shards: int, n_recv: int, n_send: int) -> None:
        self.reporter = reporter
        self.budget = [total // shards + (1 if s < total % shards else 0) for s in range(shards)]
        self.spent = [0] * shards
        p = params(max(0, n_recv // shards), max(0, n_send // shards), DEFAULT_CHUNK_BINS)
        # data rounds + the set-up (session 1 with the hello, then base OTs 2 and their IKNP
        # extension 1 unless a kept base serves)
        self.rounds = p.chunks + 5

    def round_of(self, s: int) -> Callable[[], None]:
        def on_round() -> None:
            step = min(self.budget[s] - self.spent[s], -(-self.budget[s] // self.rounds))
            if step > 0:
                self.spent[s] += step
                self.reporter.advance(step)

        return on_round

    def finish(self, s: int) -> None:
        rest = self.budget[s] - self.spent[s]
        if rest > 0:
            self.spent[s] += rest
            self.reporter.advance(rest)
