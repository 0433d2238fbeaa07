"""Local preparation of one party's input: hash, deduplicate, shuffle, index; spilled to disk.

Theory of operation
-------------------
PSI runs on *distinct* keys (sending a key twice would show the peer which blinded values
repeat). Preparation turns the input rows into a stream of distinct key hashes in a secret random
order, plus the indexes that map stream positions back to rows, in bounded memory:

1. Stream the rows in batches; digest each key (``d(x)``, :mod:`._ecdh`), seal the digest
   under the job's at-rest key (AES, :func:`~._ecdh.seal_digests`: a keyed hash, so no file
   holds a plain hash a reader could test guessed ids against), and route ``(sealed, row)`` to
   one of ``L`` local bucket files by a secret PRF of it (AES under a job-local key). Equal keys
   land in the same bucket.
2. For each bucket (``~n/L`` records in memory): sort the sealed digests (a secret pseudo-random
   order: they are AES outputs under a key only this party has), which also deduplicates them,
   and append them to ``own_h.bin`` -- the *stream*: position ``p``
   of the stream is the ``p``-th distinct key we send (the exchange opens, hashes to the group
   and blinds a chunk at a time, in worker processes). Rows are grouped by position (``pos_rows.bin``
   with per-position counts) and every row learns its position (``row_pos.bin``).

The stream order is (PRF bucket, sealed digest): independent of the ids as far as the peer can
tell, so the order in which it receives our blinded values tells it nothing. Everything written
here is a flat little-endian array read back through ``np.memmap``, so later phases touch only
the slices they need. Memory: one batch (65536 rows) plus one bucket (``n/L`` records of 40 B,
``L`` chosen so a bucket is ~2^18 records, at most 256 buckets).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..ops._prg import stream_key
from ._checkpoint import private_open
from ._ecdh import POINT_BYTES, bucket_of, hash_encoded, hash_values, seal_digests
from ._source import SourceSpec

__all__ = ["Prepared", "PreparedFiles", "prepare"]

_REC = np.dtype([("h", "V32"), ("row", "<i8")])
BATCH_ROWS = 65536  # rows hashed and routed at a time
BUCKET_TARGET = 1 << 18  # records per local bucket (the prep's memory bound)
MAX_BUCKETS = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """What preparation found: row and distinct-key counts and the input's header, and the key
    that seals ``own_h.bin`` (derived from the job's seed; kept only in the 0600 manifest)."""

    n_rows: int
    n_unique: int
    header: tuple[str, ...]
    seal_key: bytes = dataclasses.field(repr=False, default=b"")

    def to_json(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "n_unique": self.n_unique, "header": list(self.header),
                "seal_key": self.seal_key.hex()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prepared:
        return cls(int(d["n_rows"]), int(d["n_unique"]), tuple(d["header"]),
                   bytes.fromhex(d["seal_key"]))


def prepare(spec: SourceSpec, workdir: str, seed: bytes) -> Prepared:
    """Hash, deduplicate, shuffle and index ``spec`` into ``workdir`` (see the module doc).

    Runs in a worker process for CSV inputs (``spec`` and the result are picklable).

    Args:
        spec: the input.
        workdir: an empty folder for the output files.
        seed: 32 secret bytes of this job; fixes the bucket PRF and the at-rest key, hence the order (so a resumed
            job rebuilds the same stream).

    Returns:
        The :class:`Prepared` summary.

    Raises:
        PsiError: the input cannot be read or is malformed.
    """
    header = spec.check()
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    n_buckets = int(min(MAX_BUCKETS, max(1, -(-spec.estimate_rows() // BUCKET_TARGET))))
    bucket_key = stream_key(seed, b"psi/bucket")
    seal_key = stream_key(seed, b"psi/at-rest")
    # unbuffered: each write is a whole batch's slice anyway, and L buffers would cost L x 8 KB
    files = [private_open(d / f"bucket{i:03d}.bin", buffering=0) for i in range(n_buckets)]
    n_rows = 0
    try:
        with private_open(d / "offsets.bin") as offs_f:
            for batch in spec.batches(BATCH_ROWS):
                n = len(batch.keys)
                if batch.offsets is not None:
                    batch.offsets.astype("<i8").tofile(offs_f)
                if n == 0:
                    continue
                digests = hash_encoded(batch.keys) if batch.encoded else hash_values(batch.keys)
                hs = seal_digests(seal_key, digests)
                rec = np.empty(n, dtype=_REC)
                rec["h"] = np.frombuffer(hs, dtype="V32")
                rec["row"] = np.arange(batch.first_row, batch.first_row + n, dtype=np.int64)
                b = bucket_of(bucket_key, hs, n_buckets)
                order = np.argsort(b, kind="stable")
                cuts = np.searchsorted(b[order], np.arange(n_buckets + 1))
                for i in range(n_buckets):
                    if cuts[i + 1] > cuts[i]:
                        rec[order[cuts[i] : cuts[i + 1]]].tofile(files[i])
                n_rows = batch.first_row + n
    finally:
        for f in files:
            f.close()

    row_pos = _create(d / "row_pos.bin", n_rows)
    base = 0
    with (
        private_open(d / "own_h.bin") as h_f,
        private_open(d / "pos_rows.bin") as rows_f,
        private_open(d / "pos_count.bin") as cnt_f,
    ):
        for i in range(n_buckets):
            path = d / f"bucket{i:03d}.bin"
            rec = np.fromfile(path, dtype=_REC)
            path.unlink()
            if rec.size == 0:
                continue
            rows, uniq, counts = _dedupe(rec)
            pos = base + np.repeat(np.arange(len(uniq), dtype=np.int64), counts)
            row_pos[rows] = pos
            uniq.tofile(h_f)
            rows.astype("<i8").tofile(rows_f)
            counts.astype("<i8").tofile(cnt_f)
            base += len(uniq)
    if isinstance(row_pos, np.memmap):
        row_pos.flush()
    del row_pos
    _cumsum_file(d / "pos_count.bin", d / "pos_start.bin", base, step=BUCKET_TARGET)
    return Prepared(n_rows=n_rows, n_unique=base, header=header, seal_key=seal_key)


def _dedupe(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bucket's records in stream order: ``(rows, distinct sealed digests, counts)``.

    The stream order is the order of the sealed digests (big-endian, as bytes compare): they
    are AES outputs under the job's secret at-rest key, so the order is a secret pseudo-random
    one that the peer cannot relate to the ids, and sorting them also puts equal keys side by
    side. One stable sort by the first 64-bit word does it (rows stay in input order within a
    key); only if two different digests share that word (probability ~n^2 / 2^65) do all four
    words decide.
    """
    words = np.ascontiguousarray(rec["h"]).view(">u8").reshape(-1, 4)
    order = np.argsort(words[:, 0], kind="stable")
    sw = words[order]
    same_first = sw[1:, 0] == sw[:-1, 0]
    same = same_first & (sw[1:, 1:] == sw[:-1, 1:]).all(axis=1)
    if not np.array_equal(same, same_first):  # a 64-bit prefix shared by different digests
        order = np.lexsort((rec["row"], words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
        sw = words[order]
        same = (sw[1:] == sw[:-1]).all(axis=1)
    first = np.flatnonzero(np.concatenate([[True], ~same]))
    counts = np.diff(np.append(first, len(order)))
    return rec["row"][order], rec["h"][order[first]], counts


def _create(path: Path, n: int) -> np.ndarray:
    with private_open(path):  # created 0600 (memmap's "w+" keeps the file's mode)
        pass
    if n == 0:
        return np.empty(0, dtype="<i8")
    return np.memmap(path, dtype="<i8", mode="w+", shape=(n,))


def _cumsum_file(src: Path, dst: Path, n: int, step: int) -> None:
    """dst = [0, c0, c0+c1, ...] (n+1 int64) from the n counts in src, a slice at a time."""
    counts = _map(src)
    carry = 0
    with private_open(dst) as f:
        np.zeros(1, dtype="<i8").tofile(f)
        for s in range(0, n, step):
            part = np.cumsum(counts[s : s + step], dtype=np.int64) + carry
            part.astype("<i8").tofile(f)
            carry = int(part[-1])


def _map(path: Path, dtype: str = "<i8") -> np.ndarray:
    """A read-only memmap of a flat array file (an empty array for an empty file)."""
    if os.path.getsize(path) == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class PreparedFiles:
    """Read access to :func:`prepare`'s files through memmaps (slices are loaded on demand)."""

    def __init__(self, workdir: str | Path, prepared: Prepared) -> None:
        d = Path(workdir)
        self.dir = d
        self.prepared = prepared
        self.own_h = _map(d / "own_h.bin", "u1")
        self.pos_rows = _map(d / "pos_rows.bin")
        self.pos_start = _map(d / "pos_start.bin")
        self.row_pos = _map(d / "row_pos.bin")
        self.offsets = _map(d / "offsets.bin")

    def path(self, name: str) -> str:
        """The path of one of the prepared files (e.g. ``own_h.bin``)."""
        return str(self.dir / name)

    def hashes(self, start: int, stop: int) -> bytes:
        """The stream's sealed digests at positions ``[start, stop)``."""
        return bytes(self.own_h[start * POINT_BYTES : stop * POINT_BYTES])

    def counts(self, pos: np.ndarray) -> np.ndarray:
        """How many input rows have the key at each stream position."""
        pos = np.asarray(pos, dtype=np.int64)
        return (self.pos_start[pos + 1] - self.pos_start[pos]).astype(np.int64)

    def rows_of(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of each position (concatenated, each group in input order) and counts."""
        pos = np.asarray(pos, dtype=np.int64)
        starts = np.asarray(self.pos_start[pos], dtype=np.int64)
        counts = np.asarray(self.pos_start[pos + 1], dtype=np.int64) - starts
        if len(pos) == 0:
            return np.empty(0, dtype=np.int64), counts
        # gather the slices [start, start+count) for each position, vectorised
        idx = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return np.asarray(self.pos_rows[idx], dtype=np.int64), counts
