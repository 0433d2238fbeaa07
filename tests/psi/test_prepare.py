"""Input reading and preparation: CSV rules and errors, dedupe, shuffle, row indexes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mpcactors._errors import PsiError
from mpcactors.psi._ecdh import encode_key, hash_encoded, open_digests
from mpcactors.psi._prepare import _REC, PreparedFiles, _dedupe, prepare
from mpcactors.psi._source import CsvSpec, IdsSpec, open_source, parse_keys


def write(path: Path, text: str) -> str:
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def check_index(spec, files: PreparedFiles, keys_of_row: list[tuple]) -> None:
    """Every row's position holds its key's digest (sealed: no plain digest is stored);
    positions cover the distinct keys once."""
    prep = files.prepared
    assert prep.n_rows == len(keys_of_row)
    assert prep.n_unique == len(set(keys_of_row))
    hashes = {files.hashes(p, p + 1) for p in range(prep.n_unique)}
    assert len(hashes) == prep.n_unique
    for r, key in enumerate(keys_of_row):
        p = int(files.row_pos[r])
        digest = hash_encoded([encode_key(key)])
        assert files.hashes(p, p + 1) != digest
        assert open_digests(prep.seal_key, files.hashes(p, p + 1)) == digest
    rows, counts = files.rows_of(np.arange(prep.n_unique))
    assert sorted(rows.tolist()) == list(range(prep.n_rows))
    assert counts.sum() == prep.n_rows
    start = 0
    for p, c in enumerate(counts):
        group = rows[start : start + c]
        assert list(group) == sorted(group)  # input order inside a key
        assert all(int(files.row_pos[r]) == p for r in group)
        start += c


def test_prepare_ids_dedupes_and_indexes(tmp_path: Path) -> None:
    ids = ["a", "b", "a", "c", "b", "a", "ü" * 3000, b"bytes-id"]
    spec = IdsSpec(ids)
    seed = os.urandom(32)
    prep = prepare(spec, str(tmp_path / "p1"), seed)
    files = PreparedFiles(tmp_path / "p1", prep)
    check_index(spec, files, [(x,) for x in [i if isinstance(i, str) else i.decode() for i in ids]])
    # the same seed rebuilds the same stream (resume); another seed shuffles differently
    prep2 = prepare(spec, str(tmp_path / "p2"), seed)
    assert PreparedFiles(tmp_path / "p2", prep2).hashes(0, prep.n_unique) == files.hashes(0, prep.n_unique)


def test_prepare_shuffles_large_input(tmp_path: Path) -> None:
    ids = [f"{i:06d}" for i in range(5000)]
    prep = prepare(IdsSpec(ids), str(tmp_path), os.urandom(32))
    files = PreparedFiles(tmp_path, prep)
    order = [int(files.row_pos[r]) for r in range(50)]
    assert order != sorted(order)  # the stream is not in input order
    sorted_hashes = sorted(hash_encoded([encode_key([x])]) for x in ids)
    opened = [open_digests(prep.seal_key, files.hashes(p, p + 1)) for p in range(50)]
    assert opened != sorted_hashes[:50]  # nor digest order


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_dedupe_orders_by_digest_and_groups_rows(shared_prefix: bool) -> None:
    """A bucket comes out in digest order (bytes order), each digest once with its rows in input
    order; digests that share their first 8 bytes (the sort's fast key) still group exactly."""
    rng = np.random.default_rng(7)
    distinct = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    if shared_prefix:
        distinct[1::2, :8] = distinct[0::2, :8]  # pairs of different digests, one prefix
    pick = rng.integers(0, 40, 300)
    rec = np.empty(300, dtype=_REC)
    rec["h"] = np.ascontiguousarray(distinct[pick]).view("V32").reshape(-1)
    rec["row"] = np.arange(300) * 3  # rows in input order, not dense
    rows, uniq, counts = _dedupe(rec)
    got = [bytes(u) for u in uniq]
    want = sorted({bytes(distinct[i]) for i in pick})
    assert got == want
    assert counts.sum() == 300
    start = 0
    for u, c in zip(got, counts):
        expect = [r for r, d in zip(rec["row"], rec["h"]) if bytes(d) == u]
        assert rows[start : start + c].tolist() == expect
        start += c


def test_prepare_empty_inputs(tmp_path: Path) -> None:
    prep = prepare(IdsSpec([]), str(tmp_path / "a"), os.urandom(32))
    assert (prep.n_rows, prep.n_unique) == (0, 0)
    csv_path = write(tmp_path / "e.csv", "id,x\n")
    prep = prepare(CsvSpec(csv_path, ("id",)), str(tmp_path / "b"), os.urandom(32))
    assert (prep.n_rows, prep.n_unique, prep.header) == (0, 0, ("id", "x"))


def test_csv_multi_key_quoted_newlines_and_fetch(tmp_path: Path) -> None:
    text = (
        "\ufeffk1,k2,v\n"
        'a,1,"line\nbreak"\n'
        "\n"  # blank lines are skipped
        'b,"2,x",plain\r\n'
        "a,1,dup\n"
        "ö,é,unicode\n"
        "a,2,last"  # no final newline
    )
    spec = CsvSpec(write(tmp_path / "in.csv", text), ("k1", "k2"))
    prep = prepare(spec, str(tmp_path / "w"), os.urandom(32))
    files = PreparedFiles(tmp_path / "w", prep)
    assert prep.header == ("k1", "k2", "v")
    keys = [("a", "1"), ("b", "2,x"), ("a", "1"), ("ö", "é"), ("a", "2")]
    check_index(spec, files, keys)
    got = spec.fetch(np.arange(5), files.offsets)
    assert got[0] == ["a", "1", "line\nbreak"]
    assert got[1] == ["b", "2,x", "plain"]
    assert got[3] == ["ö", "é", "unicode"]
    assert got[4] == ["a", "2", "last"]


@pytest.mark.parametrize(
    ("text", "keys", "match"),
    [
        ("id,x\n1,2\n", ("nope",), "key column 'nope' is not in the header"),
        ("id,id\n1,2\n", ("id",), "appears 2 times"),
        ("", ("id",), "is empty"),
        ("id,x\n1,2\n3\n", ("id",), "line 3: record has 1 fields, the header has 2"),
        ('id\n"unterminated\n', ("id",), "bad CSV"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, keys: tuple, match: str) -> None:
    spec = CsvSpec(write(tmp_path / "bad.csv", text), keys)
    with pytest.raises(PsiError, match=match):
        prepare(spec, str(tmp_path / "w"), os.urandom(32))


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(PsiError, match="does not exist"):
        CsvSpec(str(tmp_path / "missing.csv"), ("id",)).check()
    with pytest.raises(PsiError, match="is a directory"):
        CsvSpec(str(tmp_path), ("id",)).check()
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"id\n\xe9t\xe9\n")
    with pytest.raises(PsiError, match="line 2: not UTF-8"):
        prepare(CsvSpec(str(p), ("id",)), str(tmp_path / "w"), os.urandom(32))
    if os.geteuid() != 0:  # root reads anything
        q = tmp_path / "secret.csv"
        q.write_text("id\n1\n")
        q.chmod(0)
        with pytest.raises(PsiError, match="cannot read"):
            CsvSpec(str(q), ("id",)).check()


def test_argument_errors() -> None:
    with pytest.raises(PsiError, match="exactly one"):
        open_source(None, None, None)
    with pytest.raises(PsiError, match="exactly one"):
        open_source(["a"], "x.csv", "id")
    with pytest.raises(PsiError, match="needs key column"):
        open_source(None, "x.csv", None)
    with pytest.raises(PsiError, match="not a single"):
        open_source("abc", None, None)
    with pytest.raises(PsiError, match="must be str or bytes"):
        IdsSpec(["a", 3]).check()  # type: ignore[list-item]
    assert parse_keys("a, b") == ("a", "b")
    with pytest.raises(PsiError, match="repeat"):
        parse_keys(["a", "a"])
    with pytest.raises(PsiError, match="non-empty"):
        parse_keys("a,,b")


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("span", [64, 4 << 20])
def test_fetch_lines_is_what_csv_writer_writes(tmp_path: Path, monkeypatch, seed: int, span: int) -> None:
    """The output text of any rows, in any order with repeats, equals csv.writer's text of the
    fields csv.reader parses: whether a span of the file is copied raw (no quote, no CR) or
    parsed, with blank lines between records and with or without a final newline."""
    import csv
    import io
    import random

    from mpcactors.psi import _source

    monkeypatch.setattr(_source, "_FETCH_SPAN", span)
    rnd = random.Random(seed)
    plain = seed % 3 != 0  # a third of the files hold quotes, commas in fields and CRs
    alphabet = ["a", "b", "7", "é", " ", "x y"] + ([] if plain else [",", '"', "\n", "\r\n", ""])
    width = rnd.randint(1, 3)
    records = [[f"h{c}" for c in range(width)]]
    records += [["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 4))) for _ in range(width)]
                for _ in range(rnd.randint(1, 60))]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if seed % 4 == 1 else "\n")
    lines = []
    for r in records:
        out.seek(0)
        out.truncate()
        writer.writerow(r)
        lines.append(out.getvalue() + ("\n" if rnd.random() < 0.15 else ""))  # blank lines
    text = "".join(lines)
    if seed % 2:
        text = text.rstrip("\r\n")  # no final newline
    path = write(tmp_path / "in.csv", text)
    spec = CsvSpec(path, ("h0",))
    prep = prepare(spec, str(tmp_path / "w"), os.urandom(32))
    files = PreparedFiles(tmp_path / "w", prep)
    with open(path, newline="", encoding="utf-8") as f:
        parsed = [r for r in csv.reader(f) if r][1:]
    assert prep.n_rows == len(parsed)
    rows = np.array([rnd.randrange(len(parsed)) for _ in range(3 * len(parsed))], dtype=np.int64)
    want = io.StringIO()
    csv.writer(want, lineterminator="\n").writerows(parsed[r] for r in rows.tolist())
    assert spec.fetch_lines(rows, files.offsets) == want.getvalue().encode("utf-8")
    assert spec.fetch_lines(np.empty(0, dtype=np.int64), files.offsets) == b""


def _all_rows(spec: CsvSpec) -> tuple[list[bytes], list[int]]:
    """Every row's encoded key and the offsets (record starts, then the file's end)."""
    keys: list[bytes] = []
    offsets: list[int] = []
    for batch in spec.batches(7):
        keys += batch.keys if batch.encoded else [encode_key([k]) for k in batch.keys]
        offsets += batch.offsets.tolist()
    return keys, offsets


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("row_bytes", [2, 1 << 16])
def test_batches_split_by_numpy_as_csv_reads_them(tmp_path: Path, monkeypatch, seed: int, row_bytes: int) -> None:
    """Keys and offsets from the numpy split of plain blocks equal those of csv.reader (the
    line-by-line path) on random files: one or two key columns, blank lines, empty fields,
    unicode, no final newline, lines longer than a block, quotes or CRs from some line on."""
    import csv
    import io
    import random

    from mpcactors.psi import _source

    rnd = random.Random(seed)
    width = rnd.randint(1, 4)
    header = [f"c{i}" for i in range(width)]
    keys = tuple(rnd.sample(header, rnd.randint(1, min(2, width))))
    alphabet = ["a", "Z", "9", "é", "ö", " ", "x y", "", "-"]
    lines = [",".join(header) + "\n"]
    for r in range(rnd.randint(0, 80)):
        if seed % 4 == 3 and r == 40:
            lines.append('"q,1"' + ",v" * (width - 1) + "\r\n")  # the csv module takes over here
        lines.append(",".join("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 5)))
                              for _ in range(width)) + "\n")
        if rnd.random() < 0.1:
            lines.append("\n")
    text = "".join(lines)
    if seed % 2:
        text = text.rstrip("\n")
    spec = CsvSpec(write(tmp_path / "in.csv", text), keys)
    monkeypatch.setattr(_source, "_PARSE_ROW_BYTES", row_bytes)  # blocks of 14 bytes or all of it
    got = _all_rows(spec)
    monkeypatch.setattr(_source, "_split_block", lambda *a: None)  # csv.reader for everything
    want = _all_rows(spec)
    assert got == want
    with open(spec.path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r]
    cols = [rows[0].index(k) for k in keys]
    assert want[0] == [encode_key([r[i] for i in cols]) for r in rows[1:]]
    assert want[1][-1] == len(text.encode("utf-8"))
    raw = text.encode("utf-8")
    for off, r in zip(want[1], rows[1:]):
        assert next(csv.reader(io.StringIO(raw[off:].decode("utf-8"), newline=""))) == r


def test_hash_values_is_hash_of_encoded_key() -> None:
    from mpcactors.psi._ecdh import hash_values

    values = [b"", b"a", "é".encode(), b"x" * 100, b"a"]
    assert hash_values(values) == hash_encoded([encode_key([v]) for v in values])


def test_batches_errors_name_the_line_after_plain_blocks(tmp_path: Path, monkeypatch) -> None:
    from mpcactors.psi import _source

    monkeypatch.setattr(_source, "_PARSE_ROW_BYTES", 4)
    text = "id,x\n" + "".join(f"{i},v\n" for i in range(40)) + "7\n"
    spec = CsvSpec(write(tmp_path / "in.csv", text), ("id",))
    with pytest.raises(PsiError, match="line 42: record has 1 fields"):
        _all_rows(spec)
    (tmp_path / "bad.csv").write_bytes(b"id\n" + b"a\n" * 30 + b"\xff\n")
    with pytest.raises(PsiError, match="line 32: not UTF-8"):
        _all_rows(CsvSpec(str(tmp_path / "bad.csv"), ("id",)))
