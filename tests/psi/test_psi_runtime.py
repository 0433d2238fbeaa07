"""PSI jobs on the runtime: many at once, progress, checkpoints, dropped connections, workers."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest

from mpcactors._errors import JobAborted
from mpcactors.psi import PsiProgress, PsiResult, run_psi
from mpcactors.psi._progress import PHASES

from .._waiting import until
from ._ref import read_csv, run_pair, write_csv
from .conftest import memory_nodes


def make_sets(seed: int, n_a: int, n_b: int, common: int) -> tuple[list[str], list[str], set[str]]:
    rng = random.Random(seed)
    shared = [f"c{seed}-{i}" for i in range(common)]
    a = shared + [f"a{seed}-{i}" for i in range(n_a - common)]
    b = shared + [f"b{seed}-{i}" for i in range(n_b - common)]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b, set(shared)


@pytest.mark.anyio
async def test_sixteen_concurrent_jobs_on_one_link(anyio_backend: str, protocol: str) -> None:
    """secretflow#1818: concurrent jobs over one link each get their own, correct result."""
    sets = [make_sets(j, 150 + 7 * j, 120 + 5 * j, 40 + j) for j in range(16)]
    results: dict[tuple[str, int], Any] = {}
    async with memory_nodes("alice", "bob") as nodes:

        async def one(party: str, peer: str, j: int) -> None:
            ids = sets[j][0] if party == "alice" else sets[j][1]
            results[party, j] = await run_psi(nodes[party], peer=peer, job=f"many-{j}", ids=ids,
                                              workers=0, chunk_size=32, protocol=protocol)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for j in range(16):
                    tg.start_soon(one, "alice", "bob", j)
                    tg.start_soon(one, "bob", "alice", j)
    for j in range(16):
        for party in ("alice", "bob"):
            r = results[party, j]
            assert set(r.ids) == sets[j][2] and len(r.ids) == len(sets[j][2]), (party, j)


@pytest.mark.trio
async def test_progress_events_cover_the_phases(protocol: str) -> None:
    a, b, _common = make_sets(1, 600, 500, 100)
    events: list[PsiProgress] = []
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(nodes, "prog", {"ids": a, "workers": 0, "chunk_size": 100, "progress": events.append,
                                             "protocol": protocol},
                             {"ids": b, "workers": 0, "protocol": protocol})
    assert isinstance(res["alice"], PsiResult)
    phases = [e.phase for e in events]
    order = [PHASES.index(p) for p in phases]
    assert order == sorted(order) and phases[0] == "handshake" and phases[-1] == "done"
    ex = [e for e in events if e.phase == "exchange"]
    assert ex[-1].done == ex[-1].total == 1100  # own 600 + peer 500 ids (EC operations for ECDH)
    assert [e.done for e in ex] == sorted(e.done for e in ex)
    assert all(e.job == "prog" and e.party == "alice" for e in events)


class Crash(Exception):
    pass


def crash_at(fraction: float) -> Any:
    def callback(ev: PsiProgress) -> None:
        if ev.phase == "exchange" and ev.done >= fraction * ev.total:
            raise Crash(f"simulated crash at {ev.done}/{ev.total}")

    return callback


@pytest.mark.parametrize("crashing", ["alice", "bob"])  # the matcher, and the other party
@pytest.mark.trio
async def test_checkpoint_resume_gives_the_same_result(tmp_path: Path, crashing: str) -> None:
    a, b, common = make_sets(2, 2000, 1500, 600)
    ck_a, ck_b = tmp_path / "ck_a", tmp_path / "ck_b"
    kw_a: dict[str, Any] = {"ids": a, "checkpoint_dir": ck_a, "chunk_size": 100, "workers": 0,
                            "protocol": "ecdh"}
    kw_b: dict[str, Any] = {"ids": b, "checkpoint_dir": ck_b, "chunk_size": 100, "workers": 0,
                            "protocol": "ecdh"}
    crash = {"progress": crash_at(0.4)}
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "resumable", {**kw_a, **(crash if crashing == "alice" else {})},
                               {**kw_b, **(crash if crashing == "bob" else {})})
    other = "bob" if crashing == "alice" else "alice"
    assert isinstance(first[crashing], Crash), first
    assert isinstance(first[other], JobAborted) and "simulated crash" in str(first[other])
    held = list(ck_a.glob("resumable-*.alice/chunks/*/*.bin"))
    assert held, "the matcher kept the chunks it had"
    # restart both (new nodes, as after a process restart) with the same job id
    async with memory_nodes("alice", "bob") as nodes:
        second = await run_pair(nodes, "resumable", kw_a, kw_b)
    ra, rb = second["alice"], second["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), second
    assert ra.resumed and rb.resumed
    assert set(ra.ids) == set(rb.ids) == common
    assert ra.ec_ops < 3500 and rb.ec_ops < 3500  # work done before the crash is not redone
    assert list(ck_a.iterdir()) == [] and list(ck_b.iterdir()) == []  # removed after success


def crash_in(phase: str) -> Any:
    def callback(ev: PsiProgress) -> None:
        if ev.phase == phase:
            raise Crash(f"simulated crash in {phase}")

    return callback


@pytest.mark.parametrize("crashing", ["alice", "bob"])
@pytest.mark.parametrize("phase", ["exchange", "output"])
@pytest.mark.trio
async def test_kkrt_checkpoint_resume(tmp_path: Path, crashing: str, phase: str) -> None:
    """KKRT resumes at exchange granularity: a crash during the exchange redoes it (the prepared
    streams are reused); after it, the matcher's stored pairs are reused and no OT is redone."""
    a, b, common = make_sets(12, 2000, 1500, 600)
    ck_a, ck_b = tmp_path / "ck_a", tmp_path / "ck_b"
    kw_a: dict[str, Any] = {"ids": a, "checkpoint_dir": ck_a, "workers": 0, "protocol": "kkrt"}
    kw_b: dict[str, Any] = {"ids": b, "checkpoint_dir": ck_b, "workers": 0, "protocol": "kkrt"}
    crash = {"progress": crash_in(phase)}
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "kresume", {**kw_a, **(crash if crashing == "alice" else {})},
                               {**kw_b, **(crash if crashing == "bob" else {})})
    other = "bob" if crashing == "alice" else "alice"
    assert isinstance(first[crashing], Crash), first
    assert isinstance(first[other], (JobAborted, PsiResult)), first
    pairs = list(ck_a.glob("kresume-*.alice/chunks/kkrt/*.bin"))
    assert len(pairs) == (2 if phase == "output" else 0), pairs
    async with memory_nodes("alice", "bob") as nodes:
        second = await run_pair(nodes, "kresume", kw_a, kw_b)
    ra, rb = second["alice"], second["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), second
    assert ra.resumed and rb.resumed
    assert set(ra.ids) == set(rb.ids) == common and len(ra.ids) == len(common)
    assert ra.ids == rb.ids
    if phase == "output":
        assert ra.oprf_rows == rb.oprf_rows == 0  # the exchange is not redone
    else:
        assert ra.oprf_rows > 0 and rb.oprf_rows > 0
    assert list(ck_a.iterdir()) == [] and list(ck_b.iterdir()) == []


@pytest.mark.trio
async def test_one_sided_checkpoint_restarts_fresh(tmp_path: Path, protocol: str) -> None:
    a, b, common = make_sets(3, 800, 900, 300)
    ck_a, ck_b = tmp_path / "ck_a", tmp_path / "ck_b"
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "onesided", {"ids": a, "checkpoint_dir": ck_a, "chunk_size": 50,
                                                       "workers": 0, "progress": crash_at(0.5),
                                                       "protocol": protocol},
                               {"ids": b, "checkpoint_dir": ck_b, "workers": 0, "protocol": protocol})
    assert isinstance(first["alice"], Crash)
    import shutil

    shutil.rmtree(ck_b)  # bob lost his state: both must start over, and still agree
    async with memory_nodes("alice", "bob") as nodes:
        second = await run_pair(nodes, "onesided", {"ids": a, "checkpoint_dir": ck_a, "workers": 0,
                                                    "protocol": protocol},
                                {"ids": b, "checkpoint_dir": ck_b, "workers": 0, "protocol": protocol})
    ra, rb = second["alice"], second["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), second
    assert not ra.resumed and not rb.resumed
    assert set(ra.ids) == common
    assert ra.ec_ops == (1700 if protocol == "ecdh" else 0)


@pytest.mark.trio
async def test_changed_input_is_not_resumed(tmp_path: Path, protocol: str) -> None:
    a, b, common = make_sets(4, 500, 500, 100)
    ck = tmp_path / "ck"
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "changed", {"ids": a, "checkpoint_dir": ck, "chunk_size": 50,
                                                      "workers": 0, "progress": crash_at(0.5),
                                                      "protocol": protocol},
                               {"ids": b, "checkpoint_dir": ck, "workers": 0, "protocol": protocol})
    assert isinstance(first["alice"], Crash)
    a2 = a + ["c4-extra"]
    async with memory_nodes("alice", "bob") as nodes:
        second = await run_pair(nodes, "changed", {"ids": a2, "checkpoint_dir": ck, "workers": 0,
                                                   "protocol": protocol},
                                {"ids": b, "checkpoint_dir": ck, "workers": 0, "protocol": protocol})
    assert not second["alice"].resumed
    assert set(second["alice"].ids) == common


@pytest.mark.trio
async def test_dropped_connections_do_not_change_results(protocol: str) -> None:
    """Cuts at fixed points of one job's progress (ECDH: its 2nd, 5th and 9th progress events at
    bob; KKRT, which has fewer rounds: 2nd, 3rd, 5th), each on a live connection, while three
    PSI jobs stream: no result changes."""
    sets = [make_sets(10 + j, 1500, 1200, 400) for j in range(3)]
    results: dict[tuple[str, int], Any] = {}
    events: list[Any] = []
    progressed = anyio.Event()

    def on_progress(ev: Any) -> None:
        nonlocal progressed
        events.append(ev)
        progressed.set()
        progressed = anyio.Event()

    drops = 0
    async with memory_nodes("alice", "bob") as nodes:

        def connected() -> bool:
            return all(n.statistics().peers[p].connected for n, p in ((nodes["alice"], "bob"), (nodes["bob"], "alice")))

        async def one(party: str, peer: str, j: int) -> None:
            ids = sets[j][0] if party == "alice" else sets[j][1]
            extra = {"progress": on_progress} if (party, j) == ("bob", 0) else {}
            results[party, j] = await run_psi(nodes[party], peer=peer, job=f"drop-{j}", ids=ids,
                                              workers=0, chunk_size=64, protocol=protocol, **extra)

        async def cutter() -> None:
            nonlocal drops
            for at in (2, 5, 9) if protocol == "ecdh" else (2, 3, 5):
                while len(events) < at:
                    await progressed.wait()
                await until(connected, what="reconnected")
                drops += nodes["bob"].drop_connection("alice")

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cutter)
                for j in range(3):
                    tg.start_soon(one, "alice", "bob", j)
                    tg.start_soon(one, "bob", "alice", j)
    assert drops == 3, (drops, len(events))
    for j in range(3):
        for party in ("alice", "bob"):
            assert set(results[party, j].ids) == sets[j][2]


@pytest.mark.trio
async def test_csv_job_with_worker_processes(tmp_path: Path, protocol: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path: worker processes (preparation of a CSV runs there too; ECDH's curve
    work, KKRT's shards -- made small here so this small job runs 2 shards in processes)."""
    from mpcactors.psi import _api, _kkrt_job, _shards

    monkeypatch.setattr(_kkrt_job, "SHARD_MIN_ITEMS", 64)
    monkeypatch.setattr(_api, "SHARD_MIN_ITEMS", 64)
    monkeypatch.setattr(_shards, "MIN_ARRAY_BYTES", 0)  # every array through the shared-memory lanes
    a, b, common = make_sets(5, 400, 300, 120)
    pa = write_csv(tmp_path / "a.csv", ["id", "v"], [[x, i] for i, x in enumerate(a)])
    pb = write_csv(tmp_path / "b.csv", ["key"], [[x] for x in b])
    async with memory_nodes("alice", "bob") as nodes:
        res = await run_pair(nodes, "procs", {"input": pa, "keys": "id", "output": tmp_path / "oa.csv", "workers": 2,
                                              "protocol": protocol},
                             {"input": pb, "keys": "key", "output": tmp_path / "ob.csv", "protocol": protocol})
    assert all(isinstance(r, PsiResult) for r in res.values()), res
    if protocol == "kkrt":
        assert res["alice"].shards == 2 and res["alice"].oprf_rows > 0
    rows = read_csv(tmp_path / "oa.csv")[1]
    assert {r[0] for r in rows} == common and len(rows) == len(common)
    assert all(a[int(r[1])] == r[0] for r in rows)  # the other columns travel with the key


@pytest.mark.trio
async def test_cancelled_job_aborts_the_peer_and_leaves_no_output(tmp_path: Path, protocol: str) -> None:
    a, b, _ = make_sets(6, 3000, 3000, 100)
    caught: dict[str, BaseException] = {}
    scope = anyio.CancelScope()

    def give_up(ev: PsiProgress) -> None:  # the user gives up on the job mid-exchange
        if ev.phase == "exchange":
            scope.cancel()
    async with memory_nodes("alice", "bob") as nodes:

        async def bob() -> None:
            try:
                await run_psi(nodes["bob"], peer="alice", job="cancel", ids=b, workers=0,
                              output=tmp_path / "b.csv", protocol=protocol)
            except JobAborted as exc:
                caught["bob"] = exc

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(bob)
                with scope:
                    await run_psi(nodes["alice"], peer="bob", job="cancel", ids=a, workers=0,
                                  output=tmp_path / "a.csv", protocol=protocol, progress=give_up)
    assert scope.cancelled_caught
    assert "aborted by party 'alice'" in str(caught["bob"]) and "Cancelled" in str(caught["bob"])
    assert list(tmp_path.iterdir()) == []  # no output, no temp file at either party


@pytest.mark.trio
async def test_kkrt_jobs_reuse_the_base_ots_of_an_earlier_job() -> None:
    """The first KKRT job between two nodes leaves its base OTs with both; the next job sets up
    from them (no new base); a node that lost its bases (a restart) makes both set up afresh."""
    from mpcactors.psi._kkrt_job import node_bases

    sets = [make_sets(20 + j, 300, 250, 90) for j in range(3)]
    async with memory_nodes("alice", "bob") as nodes:
        kept = {p: node_bases(nodes[p]) for p in nodes}
        for j, (a, b, common) in enumerate(sets):
            if j == 2:
                kept["bob"].__init__()  # bob forgets his bases
            res = await run_pair(nodes, f"reuse{j}", {"ids": a, "workers": 0, "protocol": "kkrt"},
                                 {"ids": b, "workers": 0, "protocol": "kkrt"})
            assert set(res["alice"].ids) == common and set(res["bob"].ids) == common
            mine = [b.id for b in kept["alice"].get("bob", True)]  # alice matches: the OPRF receiver
            theirs = [b.id for b in kept["bob"].get("alice", False)]
            assert mine[0] == theirs[0]  # the newest base is common
            # job 1 made no new base; job 2 had to (alice keeps the old one too)
            assert (len(mine), len(theirs)) == {0: (1, 1), 1: (1, 1), 2: (2, 1)}[j]
