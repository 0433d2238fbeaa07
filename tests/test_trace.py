"""Job traces (issue 14): the trace-event schema, tracks, frames against job statistics, frames
shared by concurrent jobs, the summary's critical path against ``x.rounds``, and tracing off.

Deterministic: every wait is for an event (barriers, job ends), results are checked against
numpy, and no assert depends on how long anything took.
"""

from __future__ import annotations

import json
from collections import defaultdict
from numbers import Real

import numpy as np
import pytest
import trio

import mpcactors as mpc
from mpcactors import _trace
from mpcactors._config import ClusterConfig
from mpcactors._trace_cli import trace_command
from mpcactors._trace_tools import FRAMES, WALL_OK, merge_traces, summarize
from mpcactors.cli import build_parser
from mpcactors.link import MemoryNetwork

pytestmark = pytest.mark.timeout(120)

PARTIES = ["alice", "bob", "carol"]

# Required keys and their types per event phase (Chrome/Perfetto trace-event format).
NUM = (int, float)
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "X": {"name": str, "cat": str, "ts": NUM, "dur": NUM, "pid": int, "tid": int, "args": dict},
    "C": {"name": str, "cat": str, "ts": NUM, "pid": int, "args": dict},
    "i": {"name": str, "cat": str, "ts": NUM, "pid": int, "tid": int, "s": str, "args": dict},
    "M": {"name": str, "pid": int, "tid": int, "args": dict},
}
ARGS = {  # required args per category
    "job": {"job": str, "party": str, "kind": str},
    "step": {"job": str, "op_id": int, "op": str, "round": int, "worker": bool},
    "frame": {"job": str, "peer": str, "seq": int, "bytes": int, "job_bytes": int, "messages": int, "ops": int, "jobs": dict},
    "frame_rx": {"job": str, "peer": str, "seq": int, "bytes": int, "job_bytes": int},
    "wait": {"job": str, "peer": str, "ops": int},
    "rounds": {"rounds": int},
    "phase": {"job": str},
    "flush": {"job": str, "peer": str, "message": int, "ops": int},
}


def typed(value: object, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is not a number."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def check_schema(doc: dict) -> None:
    """Fail unless ``doc`` is trace-event JSON of the shape docs/TRACE.md describes."""
    assert isinstance(doc["traceEvents"], list) and doc["traceEvents"]
    assert doc["displayTimeUnit"] in ("ms", "ns")
    json.loads(json.dumps(doc, allow_nan=False))  # plain JSON: no NaN or infinities
    for e in doc["traceEvents"]:
        required = SCHEMA[e["ph"]]
        for key, kind in required.items():
            assert typed(e.get(key), kind), (key, e)
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), e
            continue
        assert e["ts"] >= 0, e
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
        for key, kind in ARGS[e["cat"]].items():
            assert typed(e["args"].get(key), kind), (key, e)
        if e["ph"] == "C":
            assert all(isinstance(v, Real) for v in e["args"].values()), e
    check_nesting(doc)


def check_nesting(doc: dict) -> None:
    """Complete events on one track nest properly (Perfetto draws them as a stack)."""
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for track, spans in tracks.items():
        open_ends: list[float] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start + 1e-6:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1] + 1e-6, (track, start, end, open_ends[-1])
            open_ends.append(end)


def names(doc: dict) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    procs = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    return procs, threads


async def run_cluster(jobs, *, tick_budget_s: float = 0.005):
    """Run ``jobs(node, name)`` at every party of a 3-party in-memory cluster (one nursery)."""
    config = ClusterConfig.local(PARTIES, protocol="rep3")
    network = MemoryNetwork()

    async def node_main(name: str) -> None:
        async with mpc.open_node(config, name, network=network, tick_budget_s=tick_budget_s) as node:
            await jobs(node, name)

    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            for p in PARTIES:
                n.start_soon(node_main, p)


def test_merged_trace_of_three_parties_is_valid_and_agrees_with_job_statistics(tmp_path):
    a, b = np.arange(12.0).reshape(3, 4), np.linspace(-1, 1, 12).reshape(4, 3)
    handles, results = {}, {}

    async def program(job):
        handles[job.party] = job
        x = job.input("alice", a)
        y = job.input("bob", b)
        z = x @ y
        w = z * z + x.sum()
        return await job.reveal([z, w])

    async def jobs(node, name):
        results[name] = await node.run(program, job="traced", trace=tmp_path / f"{name}.json", timeout=60)
        stats[name] = handles[name].statistics()  # the job ended: its frames are all counted

    stats = {}
    trio.run(run_cluster, jobs)
    for z, w in results.values():
        np.testing.assert_allclose(z, a @ b, atol=1e-3)
        np.testing.assert_allclose(w, (a @ b) ** 2 + a.sum(), atol=1e-2)

    docs = [json.loads((tmp_path / f"{p}.json").read_text()) for p in PARTIES]
    for doc in docs:
        check_schema(doc)
    merged = merge_traces(docs, names=PARTIES)
    check_schema(merged)
    procs, threads = names(merged)
    assert sorted(procs.values()) == PARTIES
    for pid, party in procs.items():  # a track per party and job
        assert "traced" in {t for (p, _), t in threads.items() if p == pid}, party
    # the files came from one process (one clock): no frame contradicts the wall clocks
    alignment = merged["otherData"]["mpcactors"]["alignment"]
    assert [alignment[p]["method"] for p in PARTIES] == ["reference", WALL_OK, WALL_OK], alignment

    frames: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in merged["traceEvents"]:
        if e.get("cat") == "frame" and e["args"]["job"] == "traced":
            f = frames[(procs[e["pid"]], e["args"]["peer"])]
            f[0] += 1
            f[1] += e["args"]["job_bytes"]
    for party, s in stats.items():
        assert s.frames == sum(frames[(party, q)][0] for q in s.peers), party
        assert s.bytes_sent == sum(frames[(party, q)][1] for q in s.peers), party
        for peer, ps in s.peers.items():
            assert (ps.frames, ps.payload_bytes) == tuple(frames[(party, peer)]), (party, peer)
    # every op of the job stepped and finished in the trace, and rounds match the statistics
    for summary in summarize(merged):
        assert summary.rounds == stats[summary.party].rounds
        assert summary.peers.keys() == stats[summary.party].peers.keys()

    # bob's clock 50 ms ahead (another machine): merge moves it back, within the frames' bounds
    docs[1]["otherData"]["mpcactors"]["parties"]["bob"]["epoch_us"] += 50_000.0
    shifted = merge_traces(docs, names=PARTIES)
    how = shifted["otherData"]["mpcactors"]["alignment"]["bob"]
    delays = shifted["otherData"]["mpcactors"]["min_delay_us"]
    assert how["method"] == FRAMES, how
    assert abs(how["offset_us"] - 50_000.0) <= (delays["0->1"] + delays["1->0"]) / 2, (how, delays)
    procs, _ = names(shifted)
    sent = {(procs[e["pid"]], e["args"]["peer"], e["args"]["seq"]): e["ts"] for e in shifted["traceEvents"] if e.get("cat") == "frame"}
    for e in shifted["traceEvents"]:
        if e.get("cat") == "frame_rx" and {procs[e["pid"]], e["args"]["peer"]} == {"alice", "bob"}:
            assert e["ts"] >= sent[(e["args"]["peer"], procs[e["pid"]], e["args"]["seq"])] - 0.01


def test_two_concurrent_traced_jobs_share_a_frame(tmp_path):
    """Both jobs' multiplications are built in the same scheduling batch at every party (the
    barrier opens only when every party's input reveals are done), so their messages leave in
    one frame (tests/scheduler/test_rounds.py::test_two_concurrent_jobs_share_frames); the
    trace shows that frame carrying both jobs' ops."""
    results: dict = {}

    class Barrier:
        def __init__(self, n: int) -> None:
            self.n, self.event = n, trio.Event()

        async def arrive(self) -> None:
            self.n -= 1
            if self.n == 0:
                self.event.set()
            await self.event.wait()

    inputs_done = Barrier(2 * len(PARTIES))

    async def jobs(node, name):
        async def job_main(tag):
            async def prog(job):
                x = job.input("alice", np.full(8, 3), dtype=int)
                y = job.input("bob", np.full(8, 5), dtype=int)
                await job.reveal([x, y])
                await inputs_done.arrive()
                return await job.reveal(x * y)

            results[(name, tag)] = await node.run(prog, job=f"job-{tag}", timeout=30, trace=tmp_path / f"{name}-{tag}.json")

        async with trio.open_nursery() as n:
            n.start_soon(job_main, "a")
            n.start_soon(job_main, "b")

    trio.run(lambda: run_cluster(jobs, tick_budget_s=3600.0))
    for got in results.values():
        np.testing.assert_array_equal(got, np.full(8, 15))
    shared = []
    for p in PARTIES:
        for tag in "ab":
            doc = json.loads((tmp_path / f"{p}-{tag}.json").read_text())
            check_schema(doc)
            for e in doc["traceEvents"]:
                if e.get("cat") == "frame" and {"job-a", "job-b"} <= e["args"]["jobs"].keys():
                    carried = e["args"]["jobs"]
                    if carried["job-a"]["ops"] and carried["job-b"]["ops"]:
                        shared.append((p, tag, e))
    assert shared, "no frame carried ops of both jobs"
    assert any(any(op.startswith("mul#") for op in e["args"]["job_ops"]) for _, _, e in shared)
    assert all(e["args"]["ops"] >= 2 for _, _, e in shared)


def summary_cli(*argv: str) -> int:
    """``mpcactors trace summary ...`` in this process (cli.main would configure structlog for
    the whole session, onto a stream pytest closes after the test)."""
    return trace_command(build_parser().parse_args(["trace", "summary", *argv]))


def test_summary_reports_the_rounds_of_x_rounds(tmp_path, capsys):
    path = tmp_path / "chain.json"
    a, b = np.full(5, 1.5), np.full(5, 0.5)
    handles = {}

    async def program(job):
        handles[job.party] = job
        x = job.input("alice", a)
        y = job.input("bob", b)
        chain = [x * y]
        for _ in range(3):
            chain.append(chain[-1] * y)
        for t in chain:
            await t
        return await job.reveal(chain[-1]), [(t.node.op_id, t.rounds) for t in chain]

    out = mpc.simulate(program, trace=path, timeout=60)
    for value, _ in out.values():
        np.testing.assert_allclose(value, a * b**4, atol=1e-3)

    assert summary_cli(str(path), "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["party"] for r in rows) == PARTIES
    for row in rows:
        _, chain = out[row["party"]]
        depth = {o["op_id"]: o["depth"] for o in row["critical_path"]}
        for op_id, rounds in chain:  # every product of the chain is on the critical path
            assert depth[op_id] == rounds, (row["party"], op_id, depth, chain)
        assert row["rounds"] == handles[row["party"]].statistics().rounds
        assert sum(o["rounds"] for o in row["critical_path"]) == max(depth.values())
    assert summary_cli(str(path)) == 0
    text = capsys.readouterr().out
    assert "critical path" in text and "ops per frame" in text


def test_tracing_off_records_nothing(monkeypatch):
    """Without ``trace=`` no tracer exists and no hook runs: every recording entry point fails
    the test if called (inline steps and worker-thread steps both run: a 256x256 matmul is
    above the thread threshold)."""
    calls: list[str] = []

    def forbid(name):
        def hook(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"trace hook {name} ran with tracing off")

        return hook

    for cls in (_trace.JobTrace, _trace.Tracer, _trace.NodeTracing):
        for attr in [a for a, v in vars(cls).items() if callable(v) and not a.startswith("__")] + ["__init__"]:
            if cls is _trace.NodeTracing and attr == "__init__":
                continue  # the node's (empty) registry of traced jobs
            monkeypatch.setattr(cls, attr, forbid(f"{cls.__name__}.{attr}"))
    a = np.random.default_rng(1).normal(size=(256, 256))
    tracers = []

    async def program(job):
        tracers.extend(link.tracer for link in job.link._links.values())
        x = job.input("alice", a)
        y = job.input("bob", a.T)
        z = x @ y
        return await job.reveal([z, (x * 2.0).sum()])

    out = mpc.simulate(program, timeout=120)
    for z, s in out.values():
        np.testing.assert_allclose(z, a @ a.T, atol=0.05)
        np.testing.assert_allclose(s, 2 * a.sum(), atol=0.05)
    assert calls == []
    assert tracers and all(t is None for t in tracers)


def test_psi_trace_has_its_phases_and_frames(tmp_path):
    config = ClusterConfig.local(["alice", "bob"], protocol="semi2k")
    network = MemoryNetwork()
    ids = {"alice": [f"u{i}" for i in range(60)], "bob": [f"u{i}" for i in range(30, 100)]}
    sizes = {}

    async def node_main(name: str) -> None:
        async with mpc.open_node(config, name, network=network) as node:
            peer = "bob" if name == "alice" else "alice"
            result = await node.psi(peer=peer, job="p1", ids=ids[name], protocol="ecdh", workers=0,
                                    trace=tmp_path / f"{name}.json")  # fmt: skip
            sizes[name] = result.intersection

    async def main() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for p in ("alice", "bob"):
                    n.start_soon(node_main, p)

    trio.run(main)
    assert sizes == {"alice": 30, "bob": 30}
    merged = merge_traces([json.loads((tmp_path / f"{p}.json").read_text()) for p in ("alice", "bob")])
    check_schema(merged)
    for s in summarize(merged):
        assert s.kind == "psi" and "exchange" in s.phases, s
        peer = "bob" if s.party == "alice" else "alice"
        assert s.peers[peer].frames_sent > 0 and s.peers[peer].bytes_sent > 0, s
