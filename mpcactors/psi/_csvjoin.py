"""What each party's output holds: join semantics, row alignment, and the output writer.

Join semantics
--------------
Each party's output has *its own* columns only (its input header and rows, verbatim field
values); no party ever receives the other's non-key columns. With the result at both parties
(``receiver=None``) the two outputs are *aligned*: row i of one party's output and row i of the
other's, side by side, form row i of the SQL join of the two tables on the key columns. Rows
that exist on one side only are matched by a row of empty fields on the other side. So for keys
with duplicates (key k in a rows here and b rows there) the inner join has a*b rows for k, as a
database gives. ``left`` is the table of the party named by ``left`` (default: the party name
that sorts first). Block order of the outputs::

    inner       intersection block
    left        intersection block, then left-only rows   (right party: empty rows there)
    right       intersection block, then right-only rows  (left party: empty rows there)
    full        intersection block, left-only rows, right-only rows
    difference  each party: its own rows whose key is not in the other table (not aligned)

Intersection block: keys in the order both parties agree on (sorted by double-blinded value, a
pseudo-random order unrelated to either input's order). For a key with rows ``r_1..r_a`` at the
matcher and ``s_1..s_b`` at the other party (each in input order), the block holds the a*b pairs
``(r_i, s_j)``, i-major, j-minor. One-sided rows keep input order.

With the result at the receiver only (``receiver=NAME``) the other party learns nothing and
outputs nothing; the receiver's output is a *semi-join*: ``inner`` is its rows whose key is in
the peer's table, ``difference`` its rows whose key is not (both in input order). ``left``,
``right`` and ``full`` need aligned outputs at both parties, so they require ``receiver=None``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
import numpy as np

from .._errors import PsiError
from ._prepare import PreparedFiles
from ._protocol import Wire
from ._source import CsvSpec, IdsSpec, SourceSpec, csv_lines

__all__ = [
    "OutputSink",
    "expand_inner",
    "expand_outer",
    "matcher_result",
    "other_result",
    "sends_own_only",
]

_WRITE_BATCH = 65536  # rows fetched and written at a time, at least
# Input bytes of the rows one batch fetches, on average. Output rows come in the agreed
# pseudo-random key order, so one batch's rows lie all over the input file and fetching them
# reads most of it: batches of a fixed 65536 rows re-read a 560 MB input 128 times for the
# 2^23 matched rows of 2^24 ids.
_WRITE_BATCH_BYTES = 16 << 20  # ~480k rows of 35 bytes: ~60 MB of records in memory at once
_WRITE_BUFFER = 1 << 20


class OutputSink:
    """Receives output rows in order; writes a CSV through a temp file and/or collects ids.

    Nothing is visible at ``path`` until :meth:`commit` renames the finished temp file there.
    """

    def __init__(
        self,
        spec: SourceSpec,
        files: PreparedFiles,
        path: Path | None,
        header: tuple[str, ...],
    ) -> None:
        self.spec = spec
        self.files = files
        self.path = path
        self.width = len(header)
        self.rows = 0
        self.ids: list[Any] | None = [] if isinstance(spec, IdsSpec) else None
        self._tmp: str | None = None
        self._f: IO[bytes] | None = None
        self._empty = csv_lines([[""] * self.width])  # a row of empty fields, as csv.writer has it
        if path is not None:
            fd, self._tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            self._f = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
            self._f.write(csv_lines([header]))

    def _batch_rows(self) -> int:
        """Rows fetched at a time: as many as average ``_WRITE_BATCH_BYTES`` of input."""
        offsets = self.files.offsets
        if not isinstance(self.spec, CsvSpec) or len(offsets) < 2:
            return _WRITE_BATCH
        per_row = max(1, int(offsets[-1] - offsets[0]) // (len(offsets) - 1))
        return max(_WRITE_BATCH, _WRITE_BATCH_BYTES // per_row)

    def write_rows(self, rows: np.ndarray) -> None:
        """Append the given input rows (indices), in this order."""
        batch = self._batch_rows()
        for s in range(0, len(rows), batch):
            part = rows[s : s + batch]
            if self.ids is not None:
                ids = self.spec.ids  # type: ignore[union-attr]
                self.ids.extend(ids[int(r)] for r in part)
            if self._f is not None:
                self._f.write(self.spec.fetch_lines(part, self.files.offsets))
            self.rows += len(part)

    def write_nulls(self, k: int) -> None:
        """Append ``k`` rows of empty fields (the other side's one-sided rows)."""
        if self.ids is not None:
            self.ids.extend([None] * k)
        if self._f is not None:
            for s in range(0, k, _WRITE_BATCH):
                self._f.write(self._empty * min(_WRITE_BATCH, k - s))
        self.rows += k

    def commit(self) -> Path | None:
        """Close the temp file and rename it to ``path``; returns ``path``."""
        if self._f is not None and self._tmp is not None and self.path is not None:
            self._f.close()
            os.replace(self._tmp, self.path)
            self._tmp = None
        return self.path

    def discard(self) -> None:
        """Remove the temp file (a failed job shows no output)."""
        if self._f is not None:
            self._f.close()
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None


def expand_outer(files: PreparedFiles, pos: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Matcher's rows of the intersection block: each own row of pair i, ``other[i]`` times."""
    rows, counts = files.rows_of(pos)
    return np.repeat(rows, np.repeat(other, counts))


def expand_inner(files: PreparedFiles, pos: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Other party's rows of the block: own rows of pair i, the whole group ``other[i]`` times."""
    rows, counts = files.rows_of(pos)
    lengths = counts * other
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    pair = np.repeat(np.arange(len(pos)), lengths)
    local = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    group_start = np.cumsum(counts) - counts
    return rows[group_start[pair] + local % counts[pair]]


def _rows_where(files: PreparedFiles, matched: np.ndarray, want: bool) -> Iterator[np.ndarray]:
    """Input-order row indices whose key is (``want=True``) or is not in the intersection."""
    n = files.prepared.n_rows
    step = 1 << 20
    for s in range(0, n, step):
        rp = np.asarray(files.row_pos[s : s + step], dtype=np.int64)
        yield s + np.nonzero(matched[rp] == want)[0]


async def _write(sink: OutputSink, rows: np.ndarray) -> None:
    if len(rows):
        await anyio.to_thread.run_sync(sink.write_rows, rows)


async def _write_tail(
    sink: OutputSink, files: PreparedFiles, matched: np.ndarray, join: str, left: bool, peer_only: int
) -> None:
    """The one-sided blocks after the intersection (see the module doc's table)."""

    async def own_only() -> None:
        for rows in _rows_where(files, matched, False):
            await _write(sink, rows)

    if join == "difference":
        await own_only()
    elif join == "full":
        if left:
            await own_only()
            sink.write_nulls(peer_only)
        else:
            sink.write_nulls(peer_only)
            await own_only()
    elif join in ("left", "right"):
        if left == (join == "left"):
            await own_only()
        else:
            sink.write_nulls(peer_only)


def _ints(wire: Wire, raw: Any, n: int | None, what: str) -> np.ndarray:
    if not isinstance(raw, bytes) or len(raw) % 8 or (n is not None and len(raw) != 8 * n):
        raise wire.bad(f"{what} must be {n if n is not None else 'some'} little-endian int64s")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def sends_own_only(join: str, left: bool) -> bool:
    """Whether this party's ``align_end`` carries its count of one-sided rows.

    Only a party that writes the other's one-sided rows as padding needs that count: the right
    table's party in a ``left`` join, the left's in a ``right`` join, both in ``full``. In
    ``inner`` and ``difference`` joins nobody pads, so nobody learns the other's row count.
    """
    return join == "full" or (join == "left" and left) or (join == "right" and not left)


def _needs_multiplicities(join: str) -> bool:
    """Aligned blocks repeat rows by the other side's multiplicity; ``difference`` has no block."""
    return join != "difference"


def _peer_only(wire: Wire, msg: Any, join: str, left: bool) -> int:
    """The peer's one-sided row count from its ``align_end`` (0 when this join sends none)."""
    only = msg.get("only") if isinstance(msg, dict) else None
    if not sends_own_only(join, not left):
        if only is not None:
            raise wire.bad(f"align_end carries a row count a {join!r} join does not send")
        return 0
    if not isinstance(only, int) or isinstance(only, bool) or only < 0:
        raise wire.bad(f"align_end.only must be a count, not {only!r}")
    return only


def _align_end(files: PreparedFiles, matched_rows: int, join: str, left: bool) -> dict[str, Any]:
    if sends_own_only(join, left):
        return {"only": files.prepared.n_rows - matched_rows}
    return {}


async def matcher_result(
    wire: Wire,
    files: PreparedFiles,
    sink: OutputSink | None,
    groups: Any,
    *,
    both: bool,
    join: str,
    left: bool,
) -> int:
    """The matcher's result phase: match group by group, align with O, write. Returns |I|.

    ``groups`` is an async iterator of ``(own_pos, peer_pos, last)`` per group (``_match``).
    With the result to both, the last group's ``align`` and ``align_end`` leave together, so the
    phase costs one round trip per group, not one more.
    """
    matched = np.zeros(files.prepared.n_unique, dtype=bool)
    inter = matched_rows = 0
    async for own_pos, peer_pos, last in groups:
        matched[own_pos] = True
        inter += len(own_pos)
        m_own = files.counts(own_pos)
        matched_rows += int(m_own.sum())
        if not both:
            continue
        multiplicities = _needs_multiplicities(join)
        await wire.send("align", j=peer_pos.astype("<i8").tobytes(),
                        **({"m": m_own.astype("<i8").tobytes()} if multiplicities else {}))
        if last:
            await wire.send("align_end", **_align_end(files, matched_rows, join, left))
        reply = await wire.recv("align")
        if not multiplicities:
            if reply.get("m") is not None:
                raise wire.bad("align carries multiplicities a 'difference' join does not send")
            continue
        m_peer = _ints(wire, reply.get("m"), len(own_pos), "align.m")
        if np.any(m_peer < 1):
            raise wire.bad("align.m has a multiplicity below 1")
        if sink is not None:
            await _write(sink, expand_outer(files, own_pos, m_peer))
    if sink is None:
        return inter
    if not both:
        for rows in _rows_where(files, matched, join == "inner"):
            await _write(sink, rows)
        return inter
    peer_only = _peer_only(wire, await wire.recv("align_end"), join, left)
    await _write_tail(sink, files, matched, join, left, peer_only)
    return inter


async def other_result(wire: Wire, files: PreparedFiles, sink: OutputSink, *, join: str, left: bool) -> int:
    """O's result phase (result to both): answer M's aligns, write the same blocks. Returns |I|."""
    n_unique = files.prepared.n_unique
    matched = np.zeros(n_unique, dtype=bool)
    inter = matched_rows = 0
    while True:
        msg = await wire.ctl.receive()
        t = msg.get("t") if isinstance(msg, dict) else None
        if t == "align_end":
            peer_only = _peer_only(wire, msg, join, left)
            break
        if t != "align":
            raise wire.bad(f"expected align or align_end, got {msg!r:.80}")
        j = _ints(wire, msg.get("j"), None, "align.j")
        if len(j) and (j.min() < 0 or j.max() >= n_unique or np.any(matched[j])):
            raise PsiError(f"PSI job {wire.job!r}: {wire.peer!r} sent invalid or repeated positions")
        matched[j] = True
        inter += len(j)
        m_own = files.counts(j)
        matched_rows += int(m_own.sum())
        if not _needs_multiplicities(join):
            if msg.get("m") is not None:
                raise wire.bad("align carries multiplicities a 'difference' join does not send")
            await wire.send("align")
            continue
        m_peer = _ints(wire, msg.get("m"), len(j), "align.m")
        if np.any(m_peer < 1):
            raise wire.bad("align.m has a multiplicity below 1")
        await wire.send("align", m=m_own.astype("<i8").tobytes())
        await _write(sink, expand_inner(files, j, m_peer))
    await wire.send("align_end", **_align_end(files, matched_rows, join, left))
    await _write_tail(sink, files, matched, join, left, peer_only)
    return inter
