"""Plain-Python references for PSI results: set intersections and SQL joins."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from mpcactors.psi import run_psi


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def sql_join(left: list[list[str]], lk: list[int], right: list[list[str]], rk: list[int], how: str) -> Counter:
    """Multiset of (left row or None, right row or None) of ``left JOIN right`` on the keys."""
    out: Counter = Counter()
    key = lambda row, idx: tuple(row[i] for i in idx)
    rkeys = Counter(key(r, rk) for r in right)
    lkeys = Counter(key(r, lk) for r in left)
    by_key: dict = {}
    for rrow in right:
        by_key.setdefault(key(rrow, rk), []).append(rrow)
    for lrow in left:
        for rrow in by_key.get(key(lrow, lk), []):
            out[(tuple(lrow), tuple(rrow))] += 1
    if how in ("left", "full"):
        for lrow in left:
            if key(lrow, lk) not in rkeys:
                out[(tuple(lrow), None)] += 1
    if how in ("right", "full"):
        for rrow in right:
            if key(rrow, rk) not in lkeys:
                out[(None, tuple(rrow))] += 1
    return out


def zipped(left_rows: list[list[str]], right_rows: list[list[str]]) -> Counter:
    """Pair aligned outputs row by row; an all-empty row is the other side's padding (None)."""
    assert len(left_rows) == len(right_rows), (len(left_rows), len(right_rows))
    none = lambda r: None if all(f == "" for f in r) else tuple(r)
    return Counter((none(a), none(b)) for a, b in zip(left_rows, right_rows))


async def run_pair(nodes: dict[str, Any], job: str, a: dict[str, Any], b: dict[str, Any],
                   timeout: float = 60) -> dict[str, Any]:
    """Run one job at alice (kwargs a) and bob (kwargs b) concurrently; returns results/errors."""
    out: dict[str, Any] = {}

    async def one(party: str, peer: str, kw: dict[str, Any]) -> None:
        try:
            out[party] = await run_psi(nodes[party], peer=peer, job=job, **kw)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[party] = exc

    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "alice", "bob", a)
            tg.start_soon(one, "bob", "alice", b)
    return out
