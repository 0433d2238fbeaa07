"""PSI inputs: a CSV file with a header and key columns, or an in-memory sequence of ids.

Theory of operation
-------------------
A source is read twice, both times streaming: once by :mod:`._prepare` (keys in batches, with
the byte offset where each CSV record starts) and once, at the end, by the output writer, which
fetches the records it needs by offset. So no phase holds the whole input in memory. CSV records
may span lines (quoted newlines): :class:`_Lines` feeds ``csv.reader`` one line at a time and
counts bytes, and since ``csv.reader`` never reads ahead, the count after a record is the offset
of the next one.
Plain CSV (no quotes, no CRs: most inputs) skips both per-row steps: keys are split out of
whole blocks by numpy and ``bytes.split``, and matched rows are copied as their raw bytes, which
are what ``csv.writer`` would write for them (``CsvSpec.batches``, ``CsvSpec.fetch_lines``).

Rules, checked with errors that name the file and the line:
- UTF-8 (a BOM is ignored); the first record is the header; every key column must be in it
  exactly once; every data record has as many fields as the header; blank lines are skipped.
- Keys compare byte for byte after UTF-8 encoding (see :func:`~._ecdh.encode_key`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from cryptography.hazmat.primitives import hashes

from .._errors import PsiInputError as PsiError  # every error here is about our own input
from ._ecdh import encode_key

_FETCH_SPAN = 4 << 20  # bytes of a CSV input read at once when fetching matched rows

__all__ = ["Batch", "CsvSpec", "IdsSpec", "SourceSpec", "open_source", "parse_keys"]

BATCH_ROWS = 65536
_PARSE_ROW_BYTES = 32  # the fast path splits blocks of this many bytes per batch row


def parse_keys(keys: str | Sequence[str] | None) -> tuple[str, ...]:
    """Key column names from ``"a,b"`` or ``["a", "b"]``; raises PsiError when empty."""
    if keys is None:
        raise PsiError("a CSV input needs key column names (keys=...)")
    names = keys.split(",") if isinstance(keys, str) else list(keys)
    names = [k.strip() if isinstance(k, str) else k for k in names]
    if not names or any(not isinstance(k, str) or not k for k in names):
        raise PsiError(f"key column names must be non-empty strings, not {keys!r}")
    if len(set(names)) != len(names):
        raise PsiError(f"key columns repeat a name: {names!r}")
    return tuple(names)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive data rows: their keys and (CSV only) record start offsets.

    ``keys`` are encoded keys (:func:`~._ecdh.encode_key`), or with ``encoded=False`` the
    UTF-8 bytes of a single key column's values (``encode_key([v])`` is their encoding).
    """

    first_row: int
    keys: list[bytes]
    offsets: np.ndarray | None  # int64 byte offset of each record, CSV only
    encoded: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class CsvSpec:
    """A CSV input (picklable, so a worker process can open it)."""

    path: str
    keys: tuple[str, ...]

    @property
    def n_keys(self) -> int:
        return len(self.keys)

    def check(self) -> tuple[str, ...]:
        """Open the file and check the header; returns the header. Raises PsiError."""
        with self._open() as f:
            header, _ = self._header(f)
        return header

    def fingerprint(self) -> str:
        """SHA-256 of the file's bytes and the key names: a checkpoint is valid only for these."""
        h = hashes.Hash(hashes.SHA256())
        h.update(repr(self.keys).encode())
        with self._open() as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.finalize().hex()

    def estimate_rows(self) -> int:
        try:
            return max(1, os.path.getsize(self.path) // 24)
        except OSError:
            return 1

    def batches(self, size: int = BATCH_ROWS) -> Iterator[Batch]:
        """Data rows in order, at most ``size`` at a time; the last offset yielded is the file's end.

        Blocks of ``_PARSE_ROW_BYTES * size`` bytes (whole lines; 2 MiB for 65536 rows) that
        hold no quote and no ``\\r``, are valid UTF-8 and have ``width - 1`` commas on every
        non-blank line are split by numpy and ``bytes.split`` (a record is a line, a field is
        what lies between commas); from the first block that is not, the ``csv`` module reads
        the rest line by line, which also raises the errors.
        """
        with self._open() as f:
            header, lines = self._header(f)
            idx = [header.index(k) for k in self.keys]
            width = len(header)
            base, lineno, row = lines.pos, lines.lineno, 0
            tail = b""
            while True:
                chunk = f.read(_PARSE_ROW_BYTES * size)
                data = tail + chunk
                if not data:
                    break
                if chunk:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:  # a line longer than a block: read on
                        tail = data
                        continue
                    block, tail = data[:cut], data[cut:]
                else:  # the last line has no line end
                    block, tail = data + b"\n", b""
                split = _split_block(block, idx, width)
                if split is None:
                    f.seek(base)
                    yield from self._read_rows(_Lines(f, self.path, lineno), idx, width, row, size)
                    return
                keys, starts, n_lines = split
                offsets = base + starts
                for s in range(0, len(keys), size):
                    part = keys[s : s + size]
                    yield Batch(row, part, offsets[s : s + size], encoded=len(idx) > 1)
                    row += len(part)
                base += len(data) - len(tail)
                lineno += n_lines
            yield Batch(row, [], np.array([base], dtype=np.int64))

    def _read_rows(self, lines: _Lines, idx: list[int], width: int, row: int, size: int) -> Iterator[Batch]:
        """Batches of the rows from ``lines`` on (row numbers from ``row``) by ``csv.reader``."""
        reader = csv.reader(lines, strict=True)
        keys: list[bytes] = []
        offs: list[int] = []
        first = row
        start = lines.pos
        try:
            for fields in reader:
                end = lines.pos
                if fields:
                    if len(fields) != width:
                        raise PsiError(
                            f"{self.path}: line {lines.lineno}: record has {len(fields)} "
                            f"fields, the header has {width}"
                        )
                    keys.append(encode_key([fields[i] for i in idx]))
                    offs.append(start)
                    row += 1
                    if len(keys) >= size:
                        yield Batch(first, keys, np.asarray(offs, dtype=np.int64))
                        keys, offs, first = [], [], row
                start = end
        except csv.Error as exc:
            raise PsiError(f"{self.path}: line {lines.lineno}: bad CSV: {exc}") from None
        offs_end = np.asarray(offs + [start], dtype=np.int64)
        yield Batch(first, keys, offs_end)

    def fetch(self, rows: np.ndarray, offsets: np.ndarray) -> dict[int, list[str]]:
        """The fields of each row index in ``rows`` (read by offset, in file order)."""
        out: dict[int, list[str]] = {}
        wanted = np.unique(np.asarray(rows, dtype=np.int64))
        for part, _, buf, starts, ends in self._spans(wanted, offsets):
            out.update(zip(part.tolist(), self._parse(buf, starts, ends)))
        return out

    def fetch_lines(self, rows: np.ndarray, offsets: np.ndarray) -> bytes:
        """The CSV text (UTF-8, ``\\n`` line ends, as ``csv.writer`` writes them) of the rows in
        ``rows``, in that order (a row may repeat).

        A record is copied as its raw bytes when its span of the file holds no quote and no
        ``\\r``: such a record is one line whose fields hold no delimiter, quote or line break,
        so ``csv.writer`` would write exactly those bytes again. Other spans are parsed and
        written by the ``csv`` module. Each distinct row becomes one ``bytes`` slice of its
        span and one ``join`` puts them in ``rows`` order: cheaper than numpy's byte gathers
        (int64 indices per byte) and than parsing and re-writing every row, which was ~40% of
        a 2^20-id KKRT job's CPU time.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return b""
        wanted, inverse = np.unique(rows, return_inverse=True)
        records: list[bytes] = []
        file_end = int(offsets[-1])
        for _, span_end, buf, starts, ends in self._spans(wanted, offsets):
            if b'"' not in buf and b"\r" not in buf:
                if span_end == file_end and not buf.endswith(b"\n"):
                    buf += b"\n"  # the last record has no line end: csv.writer writes one
                    ends = ends.copy()
                    ends[-1] += 1
                a = np.frombuffer(buf, dtype=np.uint8)
                stops = ends.copy()
                while True:  # drop the blank lines after a record (rarely more than none)
                    blank = np.flatnonzero((stops - starts >= 2) & (a[np.maximum(stops - 2, 0)] == 10))
                    if blank.size == 0:
                        break
                    stops[blank] -= 1
                if np.any(a[stops - 1] != 10):
                    raise PsiError(f"{self.path}: changed while the PSI job ran (re-run the job)")
                records += [buf[s:e] for s, e in zip(starts.tolist(), stops.tolist())]
            else:
                records += [_csv_line(r) for r in self._parse(buf, starts, ends)]
        return b"".join(map(records.__getitem__, inverse.reshape(-1).tolist()))

    def _spans(self, wanted: np.ndarray, offsets: np.ndarray) -> Iterator[tuple[np.ndarray, int, bytes, np.ndarray, np.ndarray]]:
        """Read the records of the rows ``wanted`` (sorted, distinct), spans of the file at a time.

        Yields ``(rows of the span, file offset of its end, its bytes, record starts, record
        ends)``, starts and ends relative to the span. Rows whose bytes lie within
        ``_FETCH_SPAN`` of each other are read with one ``read``; a record's bytes end where the
        next record starts (blank lines after it included).
        """
        starts = offsets[wanted].astype(np.int64)
        ends = offsets[wanted + 1].astype(np.int64)
        n = wanted.size
        with self._open() as f:
            i = 0
            while i < n:
                base = int(starts[i])
                j = i + int(np.searchsorted(ends[i:], base + _FETCH_SPAN, side="right"))
                j = max(j, i + 1)  # a single row longer than the span is read alone
                f.seek(base)
                end = int(ends[j - 1])
                buf = f.read(end - base)
                if len(buf) != end - base:
                    raise PsiError(f"{self.path}: changed while the PSI job ran (re-run the job)")
                yield wanted[i:j], end, buf, starts[i:j] - base, ends[i:j] - base
                i = j

    def _parse(self, buf: bytes, starts: np.ndarray, ends: np.ndarray) -> list[list[str]]:
        """The fields of the records at ``[starts, ends)`` of ``buf``, by one CSV reader (the
        selected records joined are valid CSV; blank lines between them parse as nothing)."""
        text = b"".join(buf[s:e] for s, e in zip(starts.tolist(), ends.tolist())).decode("utf-8")
        records = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
        if len(records) != len(starts):
            raise PsiError(f"{self.path}: changed while the PSI job ran (re-run the job)")
        return records

    def _open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise PsiError(f"input file {self.path!r} does not exist") from None
        except IsADirectoryError:
            raise PsiError(f"input {self.path!r} is a directory, not a CSV file") from None
        except OSError as exc:
            raise PsiError(f"cannot read input file {self.path!r}: {exc.strerror or exc}") from None

    def _header(self, f: IO[bytes]) -> tuple[tuple[str, ...], _Lines]:
        lines = _Lines(f, self.path)
        try:
            header = next(csv.reader(lines, strict=True), None)
        except csv.Error as exc:
            raise PsiError(f"{self.path}: line {lines.lineno}: bad CSV header: {exc}") from None
        if not header:
            raise PsiError(f"input file {self.path!r} is empty: a CSV header is required")
        header[0] = header[0].removeprefix("\ufeff")
        for k in self.keys:
            n = header.count(k)
            if n == 0:
                raise PsiError(
                    f"key column {k!r} is not in the header of {self.path!r}: {header!r}"
                )
            if n > 1:
                raise PsiError(f"key column {k!r} appears {n} times in the header of {self.path!r}")
        return tuple(header), lines


def _split_block(block: bytes, idx: list[int], width: int) -> tuple[list[bytes], np.ndarray, int] | None:
    """Split whole lines of plain CSV (no quote, no CR) by numpy; None if ``block`` is not that.

    Returns the key of each non-blank line (the UTF-8 value of the one key column, or the
    encoded key of several), each such line's start in ``block`` and the number of lines.
    """
    if b'"' in block or b"\r" in block:
        return None
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    n_lines = ends.size
    record = ends > starts
    starts, ends = starts[record], ends[record]
    commas = np.flatnonzero(a == 44)
    first = np.searchsorted(commas, starts)
    if np.any(np.searchsorted(commas, ends) - first != width - 1):
        return None
    if record.all():  # no blank line: every line has ``width`` fields, one split cuts them all
        fields = block.replace(b",", b"\n").split(b"\n")
        columns = [fields[i:-1:width] for i in idx]
    else:
        columns = []
        for i in idx:
            lo = starts if i == 0 else commas[first + i - 1] + 1
            hi = ends if i == width - 1 else commas[first + i]
            n = hi - lo
            # each value followed by a line end (values hold none), so one split cuts them apart
            out = np.full(int(n.sum()) + n.size, 10, dtype=np.uint8)
            out[_ranges(np.cumsum(n + 1) - (n + 1), n)] = a[_ranges(lo, n)]
            columns.append(out.tobytes().split(b"\n")[:-1])
    if len(columns) == 1:
        return columns[0], starts, n_lines
    return [encode_key(values) for values in zip(*columns)], starts, n_lines


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[0] .. starts[0]+lengths[0]-1, starts[1] ..``, concatenated."""
    total = int(lengths.sum())
    shift = starts - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def _csv_line(fields: Sequence[str]) -> bytes:
    """One record as ``csv.writer`` writes it (minimal quoting, ``\\n``), UTF-8."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue().encode("utf-8")


def csv_lines(records: Iterable[Sequence[str]]) -> bytes:
    """Records as ``csv.writer`` writes them (minimal quoting, ``\\n`` line ends), UTF-8."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue().encode("utf-8")


class _Lines:
    """Iterates a binary file's lines as text, counting bytes and lines (for offsets, errors)."""

    def __init__(self, f: IO[bytes], path: str, lineno: int = 0) -> None:
        self.f = f
        self.path = path
        self.pos = f.tell()
        self.lineno = lineno

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        b = self.f.readline()
        if not b:
            raise StopIteration
        self.pos += len(b)
        self.lineno += 1
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PsiError(f"{self.path}: line {self.lineno}: not UTF-8: {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class IdsSpec:
    """An in-memory sequence of ids (``str`` or ``bytes``), one key column named ``id``."""

    ids: Sequence[str | bytes]

    n_keys = 1

    def check(self) -> tuple[str, ...]:
        for i, x in enumerate(self.ids):
            if not isinstance(x, (str, bytes)):
                raise PsiError(f"ids[{i}] is a {type(x).__name__}; ids must be str or bytes")
        return ("id",)

    def fingerprint(self) -> str:
        h = hashes.Hash(hashes.SHA256())
        for x in self.ids:
            h.update(encode_key([x]))
        return h.finalize().hex()

    def estimate_rows(self) -> int:
        return max(1, len(self.ids))

    def batches(self, size: int = BATCH_ROWS) -> Iterator[Batch]:
        n = len(self.ids)
        for first in range(0, n, size):
            keys = [encode_key([x]) for x in self.ids[first : first + size]]
            yield Batch(first, keys, None)
        if n == 0:
            yield Batch(0, [], None)

    def fetch(self, rows: np.ndarray, offsets: Any = None) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for r in np.unique(rows):
            x = self.ids[int(r)]
            out[int(r)] = [x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x]
        return out

    def fetch_lines(self, rows: np.ndarray, offsets: Any = None) -> bytes:
        """The CSV text of the rows in ``rows``, in that order (column ``id``)."""
        fetched = self.fetch(rows)
        return csv_lines(fetched[int(r)] for r in rows)


SourceSpec = CsvSpec | IdsSpec


def open_source(ids: Sequence[str | bytes] | None, input: str | os.PathLike[str] | None,
                keys: str | Sequence[str] | None) -> SourceSpec:
    """The source for run_psi's ``ids`` / ``input`` + ``keys`` arguments (exactly one of them)."""
    if (ids is None) == (input is None):
        raise PsiError("give exactly one of ids=... (a sequence of ids) or input=... (a CSV path)")
    if ids is not None:
        if isinstance(ids, (str, bytes)):
            raise PsiError("ids must be a sequence of ids, not a single str/bytes")
        if keys is not None:
            raise PsiError("keys=... names CSV columns; it is not used with ids=...")
        return IdsSpec(ids if isinstance(ids, Sequence) else list(ids))
    return CsvSpec(str(Path(input)), parse_keys(keys))  # type: ignore[arg-type]
