"""``mpcactors run --trace`` at three real processes over TLS, then ``mpcactors trace merge``
and ``mpcactors trace summary`` on their files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mpcactors._trace_tools import FRAMES, WALL_OK

from ..test_trace import check_schema, names
from .helpers import ROOT, finish, make_cluster, start

pytestmark = pytest.mark.timeout(180)

PROGRAM = """
import numpy as np

async def main(job):
    x = job.input("alice", lambda: np.arange(6.0))
    y = job.input("bob", lambda: np.full(6, 0.5))
    z = x * y
    w = z * y + x
    await w
    return {"w": (await job.reveal(w)).tolist(), "rounds": w.rounds, "op": w.node.op_id}
"""


def test_three_processes_traced_then_merged_and_summarized(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    cfg = make_cluster(tmp_path)
    parties = ("alice", "bob", "carol")
    traces = {p: tmp_path / f"{p}.json" for p in parties}
    procs = {
        p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--job", "traced-1", "--timeout", "90", "--trace", str(traces[p])])
        for p in parties
    }
    results = finish(procs)
    want = np.arange(6.0) * 0.25 + np.arange(6.0)
    out = {}
    for p, (code, stdout, err) in results.items():
        assert code == 0, (p, err)
        out[p] = json.loads(stdout.strip().splitlines()[-1])
        np.testing.assert_allclose(out[p]["w"], want, atol=1e-3)
        check_schema(json.loads(traces[p].read_text()))

    merged_path = tmp_path / "all.json"
    cmd = [sys.executable, "-m", "mpcactors", "trace"]
    merge = subprocess.run([*cmd, "merge", *map(str, traces.values()), "-o", str(merged_path)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)  # fmt: skip
    assert merge.returncode == 0, merge.stderr
    merged = json.loads(merged_path.read_text())
    check_schema(merged)
    procs_by_pid, threads = names(merged)
    assert sorted(procs_by_pid.values()) == sorted(parties)
    for pid in procs_by_pid:
        assert "traced-1" in {t for (p, _), t in threads.items() if p == pid}
    # three processes: each file but the first is checked against (or aligned on) its frames
    methods = [a["method"] for a in merged["otherData"]["mpcactors"]["alignment"].values()]
    assert methods[0] == "reference" and set(methods[1:]) <= {WALL_OK, FRAMES}, methods
    # after alignment no frame between the reference (alice) and another party is received
    # before it was sent (the offset makes both directions' smallest delays equal, >= 0)
    sent = {}
    for e in merged["traceEvents"]:
        if e.get("cat") == "frame":
            sent[(procs_by_pid[e["pid"]], e["args"]["peer"], e["args"]["seq"])] = e["ts"]
    for e in merged["traceEvents"]:
        if e.get("cat") == "frame_rx":
            key = (e["args"]["peer"], procs_by_pid[e["pid"]], e["args"]["seq"])
            if key in sent and "alice" in key[:2]:
                assert e["ts"] >= sent[key] - 1.0, (key, sent[key], e["ts"])  # 1 µs: rounding

    summary = subprocess.run([*cmd, "summary", str(merged_path), "--json"], capture_output=True, text=True, timeout=60,
                             cwd=ROOT, check=False)  # fmt: skip
    assert summary.returncode == 0, summary.stderr
    rows = {r["party"]: r for r in map(json.loads, summary.stdout.splitlines())}
    assert rows.keys() == set(parties)
    for p, row in rows.items():
        depth = {o["op_id"]: o["depth"] for o in row["critical_path"]}
        assert depth[out[p]["op"]] == out[p]["rounds"], (p, row["critical_path"], out[p])
        assert {q for q in row["peers"]} == set(parties) - {p}
