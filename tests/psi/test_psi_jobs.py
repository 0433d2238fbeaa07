"""PSI jobs between two in-process nodes: results equal Python sets and SQL joins."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mpcactors._errors import JobAborted, PsiError
from mpcactors.psi import JOINS, PsiResult

from ._ref import read_csv, run_pair, sql_join, write_csv, zipped
from .conftest import memory_nodes

LONG = "x" * 20000


def norm(x: Any) -> Any:
    return x.decode() if isinstance(x, bytes) else x


CASES = {
    "duplicates": (["a", "b", "a", "c", "a"], ["a", "a", "c", "d", "c"]),
    "both_empty": ([], []),
    "alice_empty": ([], ["a", "b"]),
    "bob_empty": (["a", "b"], []),
    "disjoint": ([f"a{i}" for i in range(300)], [f"b{i}" for i in range(200)]),
    "identical": ([f"id{i}" for i in range(700)], [f"id{i}" for i in range(700)]),
    "unicode_long": (["ü", "日本語", LONG, LONG + "y", "", "e\u0301"], ["日本語", LONG, "é", "", "z"]),
    "str_vs_bytes": (["abc", "déf", "g"], [b"abc", "déf".encode(), b"h"]),
    "one_id_common": (["solo"], ["solo"]),
    "one_id_each_disjoint": (["solo"], ["other"]),
    "one_common_among_many": ([f"a{i}" for i in range(500)] + ["both"], ["both"] + [f"b{i}" for i in range(400)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.trio
async def test_ids_intersection_equals_python(case: str, protocol: str) -> None:
    a, b = CASES[case]
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(nodes, f"job-{case}", {"ids": a, "workers": 0, "protocol": protocol, "chunk_size": 64}, {"ids": b, "workers": 0, "protocol": protocol, "chunk_size": 50})
    ra, rb = res["alice"], res["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), res
    common = {norm(x) for x in a} & {norm(x) for x in b}
    ca, cb = Counter(norm(x) for x in a), Counter(norm(x) for x in b)
    expected = Counter({k: ca[k] * cb[k] for k in common})  # inner join: a*b rows per key
    for r in (ra, rb):
        assert r.intersection == len(common)
        assert Counter(norm(x) for x in r.ids) == expected
        assert r.rows == sum(expected.values())
    assert [norm(x) for x in ra.ids] == [norm(x) for x in rb.ids]  # aligned row by row
    assert (ra.own_keys, ra.peer_keys) == (len(ca), len(cb))
    assert (rb.own_keys, rb.peer_keys) == (len(cb), len(ca))


def tables(tmp: Path) -> tuple[str, str, list, list]:
    left = [  # key columns (country, id) at positions 1 and 0, other columns around them
        ["1", "de", "alpha", "10"], ["2", "de", "beta", "20"], ["1", "de", "alpha-dup", "11"],
        ["3", "fr", "gamma", "30"], ["4", "ü", "delta", "40"], ["5", "it", "only-left", "50"],
        ["1", "fr", "other-country", "60"],
    ]
    right = [  # keys (cc, uid) at positions 0 and 2
        ["de", "x", "1", "r1"], ["de", "y", "1", "r1-dup"], ["fr", "z", "3", "r3"],
        ["ü", "w", "4", "r4"], ["es", "v", "9", "only-right"], ["de", "u", "2", "r2"],
        ["de", "u", "2", "r2-dup"], ["de", "t", "2", "r2-dup2"], ["xx", "s", "8", "only-right2"],
    ]
    lp = write_csv(tmp / "left.csv", ["id", "country", "name", "amount"], left)
    rp = write_csv(tmp / "right.csv", ["cc", "note", "uid", "tag"], right)
    return lp, rp, left, right


@pytest.mark.parametrize("join", JOINS)
@pytest.mark.trio
async def test_csv_joins_equal_sql(tmp_path: Path, join: str, protocol: str) -> None:
    lp, rp, left, right = tables(tmp_path)
    la, ob = tmp_path / "out_alice.csv", tmp_path / "out_bob.csv"
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, f"csv-{join}",
            {"input": lp, "keys": "country,id", "output": la, "join": join, "workers": 0, "protocol": protocol, "chunk_size": 3},
            {"input": rp, "keys": ["cc", "uid"], "output": ob, "join": join, "workers": 0, "protocol": protocol},
        )
    assert all(isinstance(r, PsiResult) for r in res.values()), res
    ha, rows_a = read_csv(la)
    hb, rows_b = read_csv(ob)
    assert ha == ["id", "country", "name", "amount"] and hb == ["cc", "note", "uid", "tag"]
    assert res["alice"].rows == len(rows_a) and res["bob"].rows == len(rows_b)
    assert res["alice"].intersection == res["bob"].intersection == 4
    if join == "difference":
        lk = {(r[1], r[0]) for r in left}
        rk = {(r[0], r[2]) for r in right}
        assert Counter(map(tuple, rows_a)) == Counter(tuple(r) for r in left if (r[1], r[0]) not in rk)
        assert Counter(map(tuple, rows_b)) == Counter(tuple(r) for r in right if (r[0], r[2]) not in lk)
        return
    expected = sql_join(left, [1, 0], right, [0, 2], join)
    assert zipped(rows_a, rows_b) == expected
    # block order: the intersection block first, then one-sided rows
    both = [i for i, (x, y) in enumerate(zip(rows_a, rows_b)) if any(x) and any(y)]
    assert both == list(range(len(both)))


@pytest.mark.trio
async def test_left_names_the_left_table(tmp_path: Path, protocol: str) -> None:
    lp, rp, left, right = tables(tmp_path)
    la, ob = tmp_path / "a.csv", tmp_path / "b.csv"
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, "left-bob",
            {"input": lp, "keys": "country,id", "output": la, "join": "left", "left": "bob", "workers": 0, "protocol": protocol},
            {"input": rp, "keys": "cc,uid", "output": ob, "join": "left", "left": "bob", "workers": 0, "protocol": protocol},
        )
    assert all(isinstance(r, PsiResult) for r in res.values()), res
    # bob's table is the left one: every bob row appears, alice pads
    expected = sql_join(right, [0, 2], left, [1, 0], "left")
    assert zipped(read_csv(ob)[1], read_csv(la)[1]) == expected


@pytest.mark.parametrize("join", ["inner", "difference"])
@pytest.mark.trio
async def test_receiver_only_semi_join(tmp_path: Path, join: str, protocol: str) -> None:
    lp, rp, left, right = tables(tmp_path)
    la, ob = tmp_path / "a.csv", tmp_path / "b.csv"
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, "recv",
            {"input": lp, "keys": "country,id", "output": la, "receiver": "bob", "join": join, "workers": 0, "protocol": protocol},
            {"input": rp, "keys": "cc,uid", "output": ob, "receiver": "bob", "join": join, "workers": 0, "protocol": protocol},
        )
    ra, rb = res["alice"], res["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), res
    assert ra.intersection is None and ra.rows is None and ra.output is None
    assert not la.exists()  # the non-receiver writes nothing
    lk = {(r[1], r[0]) for r in left}
    want = [r for r in right if ((r[0], r[2]) in lk) == (join == "inner")]
    assert read_csv(ob)[1] == want  # the receiver's own rows, in input order
    assert rb.intersection == 4


@pytest.mark.trio
async def test_settings_mismatch_names_both_sides(tmp_path: Path) -> None:
    lp, rp, _, _ = tables(tmp_path)
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, "mismatch",
            {"input": lp, "keys": "country,id", "join": "inner", "workers": 0},
            {"input": rp, "keys": "cc", "join": "full", "workers": 0},
        )
    for party in ("alice", "bob"):
        err = res[party]
        assert isinstance(err, (PsiError, JobAborted)), err
        text = str(err)
        assert "number of key columns: " in text and "alice has 2" in text and "bob has 1" in text
        assert "join: " in text and "'inner'" in text and "'full'" in text


@pytest.mark.trio
async def test_protocol_mismatch_is_a_psi_error_naming_both() -> None:
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(nodes, "proto", {"ids": ["a"], "workers": 0, "protocol": "kkrt"},
                             {"ids": ["a"], "workers": 0, "protocol": "ecdh"})
    for party in ("alice", "bob"):
        err = res[party]
        assert isinstance(err, (PsiError, JobAborted)), err
        assert "protocol: " in str(err) and "has 'kkrt'" in str(err) and "has 'ecdh'" in str(err), err


@pytest.mark.trio
async def test_missing_key_column_aborts_both_without_output(tmp_path: Path, protocol: str) -> None:
    lp, rp, _, _ = tables(tmp_path)
    la, ob = tmp_path / "a.csv", tmp_path / "b.csv"
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, "badkey",
            {"input": lp, "keys": "country,nope", "output": la, "workers": 0, "protocol": protocol},
            {"input": rp, "keys": "cc,uid", "output": ob, "workers": 0, "protocol": protocol},
        )
    assert isinstance(res["alice"], PsiError) and "'nope' is not in the header" in str(res["alice"])
    assert isinstance(res["bob"], JobAborted) and "input at 'alice' is not usable" in str(res["bob"])
    assert "nope" not in str(res["bob"]) and "country" not in str(res["bob"]) and "left" not in str(res["bob"])  # issue 13.7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["left.csv", "right.csv"]  # no partial files


@pytest.mark.trio
async def test_unreadable_file_and_peer_that_never_starts(tmp_path: Path) -> None:
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, "nofile",
            {"input": tmp_path / "missing.csv", "keys": "id", "workers": 0},
            {"ids": ["a"], "workers": 0},
        )
        assert isinstance(res["alice"], PsiError) and "does not exist" in str(res["alice"])
        assert isinstance(res["bob"], JobAborted)
        from mpcactors.psi import run_psi

        with pytest.raises(PsiError, match="'bob' did not start PSI job 'lonely' within 0.3 s"):
            await run_psi(nodes["alice"], peer="bob", job="lonely", ids=["a"], workers=0, start_timeout=0.3)


@pytest.mark.trio
async def test_bad_arguments_fail_before_any_message(tmp_path: Path) -> None:
    from mpcactors.psi import run_psi

    async with memory_nodes("alice", "bob") as nodes:
        node = nodes["alice"]
        cases = [
            ({"peer": "carol"}, "peer 'carol' is not another party"),
            ({"peer": "alice"}, "is not another party"),
            ({"join": "outer"}, "join must be one of"),
            ({"receiver": "carol"}, "receiver must be"),
            ({"receiver": "bob", "join": "full"}, "needs receiver=None"),
            ({"chunk_size": 0}, "chunk_size must be"),
            ({"workers": -1}, "workers must be"),
            ({"output": tmp_path / "nodir" / "o.csv"}, "does not exist"),
            ({"left": "carol"}, "left must be"),
            ({"protocol": "rr22"}, "protocol must be one of"),
        ]
        for kw, match in cases:
            args: dict[str, Any] = {"peer": "bob", "job": "args", "ids": ["a"]}
            args.update(kw)
            with pytest.raises(PsiError, match=match):
                await run_psi(node, **args)
        src = tmp_path / "in.csv"
        src.write_text("id\n1\n")
        with pytest.raises(PsiError, match="overwrite the input"):
            await run_psi(node, peer="bob", job="args", input=src, keys="id", output=src)


@pytest.mark.trio
async def test_a_job_id_is_used_once_per_node() -> None:
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "once", {"ids": ["a", "b"], "workers": 0}, {"ids": ["b"], "workers": 0})
        assert first["alice"].ids == ["b"]
        again = await run_pair(nodes, "once", {"ids": ["a"], "workers": 0}, {"ids": ["a"], "workers": 0})
    for party in ("alice", "bob"):
        assert isinstance(again[party], PsiError), again
        assert "job id 'once' was already used on this node" in str(again[party])


@pytest.mark.parametrize("join", ["inner", "full"])
@pytest.mark.trio
async def test_output_written_in_many_small_batches_is_the_same(
    tmp_path: Path, join: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output rows are fetched from the input a batch at a time (sized by the input's bytes per
    row); with batches of two rows the joined output is exactly the SQL join."""
    from mpcactors.psi import _csvjoin

    monkeypatch.setattr(_csvjoin, "_WRITE_BATCH", 2)
    monkeypatch.setattr(_csvjoin, "_WRITE_BATCH_BYTES", 1)
    lp, rp, left, right = tables(tmp_path)
    la, ob = tmp_path / "out_alice.csv", tmp_path / "out_bob.csv"
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(
            nodes, f"batches-{join}",
            {"input": lp, "keys": "country,id", "output": la, "join": join, "workers": 0},
            {"input": rp, "keys": ["cc", "uid"], "output": ob, "join": join, "workers": 0},
        )
    assert all(isinstance(r, PsiResult) for r in res.values()), res
    _, rows_a = read_csv(la)
    _, rows_b = read_csv(ob)
    assert len(rows_a) > 2  # more than one batch
    assert zipped(rows_a, rows_b) == sql_join(left, [1, 0], right, [0, 2], join)
