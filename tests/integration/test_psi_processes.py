"""PSI between real party processes over one TCP+TLS link on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.integration.helpers import finish
from tests.psi._procs import json_lines, make_cluster, start
from tests.psi._ref import read_csv, sql_join, write_csv, zipped

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(params=["kkrt", "ecdh"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def job_sets(j: int, n: int) -> tuple[list[str], list[str], set[str]]:
    rng = random.Random(j)
    common = [f"c{j}-{i}" for i in range(n // 3 + j)]
    a = common + [f"a{j}-{i}" for i in range(n - len(common))]
    b = common + [f"b{j}-{i}" for i in range(n - len(common) - j)]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b, set(common)


def test_sixteen_concurrent_jobs_over_one_tls_link(tmp_path: Path, protocol: str) -> None:
    """secretflow#1818 fixed: 16 PSI jobs at once, from threads at alice and tasks at bob."""
    cfg = make_cluster(tmp_path)
    sets = [job_sets(j, 2000) for j in range(16)]
    for party, side in (("alice", 0), ("bob", 1)):
        (tmp_path / f"{party}.json").write_text(
            json.dumps([{"job": f"j{j}", "ids": sets[j][side]} for j in range(16)])
        )
    procs = {
        "alice": start(["api", "--config", str(cfg), "--party", "alice", "--jobs-file",
                        str(tmp_path / "alice.json"), "--mode", "threads", "--protocol", protocol]),
        "bob": start(["api", "--config", str(cfg), "--party", "bob", "--jobs-file",
                      str(tmp_path / "bob.json"), "--mode", "tasks", "--protocol", protocol]),
    }
    out = finish(procs, timeout=150)
    for party, (rc, stdout, stderr) in out.items():
        assert rc == 0, (party, stderr[-3000:])
        lines = json_lines(stdout)
        results = {d["job"]: d for d in lines if "job" in d}
        assert sorted(results) == sorted(f"j{j}" for j in range(16))  # every job returned
        for j in range(16):
            assert set(results[f"j{j}"]["ids"]) == sets[j][2], (party, j)
            assert results[f"j{j}"]["intersection"] == len(sets[j][2])
        stats = next(d for d in lines if d.get("stats"))
        assert stats["jobs"] >= 16  # all of them on the one link with the peer


def test_connection_cut_mid_psi_changes_nothing(tmp_path: Path, protocol: str) -> None:
    cfg = make_cluster(tmp_path, peer_timeout_s=3)
    sets = [job_sets(100 + j, 1500) for j in range(3)]
    for party, side in (("alice", 0), ("bob", 1)):
        (tmp_path / f"{party}.json").write_text(
            json.dumps([{"job": f"d{j}", "ids": sets[j][side]} for j in range(3)])
        )
    procs = {
        "alice": start(["api", "--config", str(cfg), "--party", "alice", "--jobs-file",
                        str(tmp_path / "alice.json"), "--protocol", protocol]),
        "bob": start(["api", "--config", str(cfg), "--party", "bob", "--jobs-file",
                      str(tmp_path / "bob.json"), "--drop-every", "0.1", "--protocol", protocol]),
    }
    out = finish(procs, timeout=150)
    for party, (rc, stdout, stderr) in out.items():
        assert rc == 0, (party, stderr[-3000:])
        lines = json_lines(stdout)
        for j in range(3):
            d = next(x for x in lines if x.get("job") == f"d{j}")
            assert set(d["ids"]) == sets[j][2]
    bob_stats = next(d for d in json_lines(out["bob"][1]) if d.get("stats"))
    assert bob_stats["drops"] >= 1 and bob_stats["reconnects"] >= 1


def csv_pair(tmp: Path, n: int, seed: int) -> tuple[str, str, list, list]:
    a, b, _ = job_sets(seed, n)
    left = [[x, str(i % 7), f"a-{i}"] for i, x in enumerate(a)]
    right = [[f"r-{i}", x, str(i % 7)] for i, x in enumerate(b)]
    left += left[:5]  # duplicate keys
    pa = write_csv(tmp / f"alice_{seed}.csv", ["id", "grp", "payload"], left)
    pb = write_csv(tmp / f"bob_{seed}.csv", ["note", "uid", "g"], right)
    return pa, pb, left, right


def test_cli_concurrent_pairs_full_join(tmp_path: Path, protocol: str) -> None:
    cfg = make_cluster(tmp_path)
    pairs = [csv_pair(tmp_path, 600, s) for s in (1, 2, 3)]
    args = {"alice": [], "bob": []}
    for i, (pa, pb, _, _) in enumerate(pairs):
        args["alice"] += ["--input", pa, "--output", str(tmp_path / f"out_alice_{i}.csv")]
        args["bob"] += ["--input", pb, "--output", str(tmp_path / f"out_bob_{i}.csv")]
    common = ["--config", str(cfg), "--join", "full", "--job", "cli", "--no-progress", "--summary-json",
              "--protocol", protocol]
    procs = {
        "alice": start(["cli", *common, "--party", "alice", "--key", "id,grp", *args["alice"]]),
        "bob": start(["cli", *common, "--party", "bob", "--key", "uid,g", *args["bob"]]),
    }
    out = finish(procs, timeout=150)
    for party, (rc, stdout, stderr) in out.items():
        assert rc == 0, (party, stderr[-3000:])
        assert [d["job"] for d in json_lines(stdout)] == ["cli.0", "cli.1", "cli.2"]
        assert {d["protocol"] for d in json_lines(stdout)} == {protocol}
    for i, (_, _, left, right) in enumerate(pairs):
        ra = read_csv(tmp_path / f"out_alice_{i}.csv")[1]
        rb = read_csv(tmp_path / f"out_bob_{i}.csv")[1]
        assert zipped(ra, rb) == sql_join(left, [0, 1], right, [1, 2], "full")


def test_party_killed_mid_psi_resumes_from_checkpoint(tmp_path: Path, protocol: str) -> None:
    """ECDH: killed once the matcher holds 4 chunks, which the resumed run does not redo. KKRT:
    killed during the exchange (the shard files exist), which the resumed run redoes over the
    prepared streams it kept."""
    cfg = make_cluster(tmp_path, peer_timeout_s=2)
    pa, pb, left, right = csv_pair(tmp_path, 3000 if protocol == "ecdh" else 30000, 7)
    outs = {p: tmp_path / f"out_{p}.csv" for p in ("alice", "bob")}
    ck = {p: tmp_path / f"ck_{p}" for p in ("alice", "bob")}

    def run(party: str, inp: str, key: str) -> object:
        return start(["cli", "--config", str(cfg), "--party", party, "--input", inp, "--key", key,
                      "--output", str(outs[party]), "--job", "resume-me", "--checkpoint-dir",
                      str(ck[party]), "--chunk-size", "128", "--no-progress", "--summary-json",
                      "--protocol", protocol])

    procs = {"alice": run("alice", pa, "id"), "bob": run("bob", pb, "uid")}
    deadline = time.monotonic() + 120

    def held_chunks() -> int:
        if protocol == "kkrt":  # mid-exchange: the shard files exist
            return 4 * len(list(ck["alice"].glob("resume-me-*.alice/kkrt-shards/0.pos")))
        return len(list(ck["alice"].glob("resume-me-*.alice/chunks/*/*.bin")))

    try:
        while held_chunks() < 4:  # the matcher holds some chunks: kill it
            assert time.monotonic() < deadline and procs["alice"].poll() is None, "too late"
            time.sleep(0.01)
        os.kill(procs["alice"].pid, signal.SIGKILL)
        held = held_chunks()
        first = finish(procs, timeout=60)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    assert first["alice"][0] == -signal.SIGKILL
    assert first["bob"][0] == 1 and "PeerLost" in first["bob"][1] + first["bob"][2]
    assert not outs["alice"].exists() and not outs["bob"].exists()  # nothing presented as done
    assert held >= 4

    procs = {"alice": run("alice", pa, "id"), "bob": run("bob", pb, "uid")}
    second = finish(procs, timeout=120)
    n_keys = len({r[0] for r in left}) + len({r[1] for r in right})
    for party, (rc, stdout, stderr) in second.items():
        assert rc == 0, (party, stderr[-3000:])
        summary = json_lines(stdout)[0]
        assert summary["resumed"] is True
        if protocol == "ecdh":
            assert summary["ec_ops"] < n_keys  # chunks held by the checkpoint were not redone
        else:
            assert summary["oprf_rows"] > 0  # the exchange was redone, the preparation kept
    ra, rb = read_csv(outs["alice"])[1], read_csv(outs["bob"])[1]
    assert zipped(ra, rb) == sql_join(left, [0], right, [1], "inner")
    assert list(ck["alice"].iterdir()) == [] and list(ck["bob"].iterdir()) == []


def test_peer_that_is_not_there(tmp_path: Path) -> None:
    cfg = make_cluster(tmp_path, retries=3, connect_timeout_s=3)
    pa, _, _, _ = csv_pair(tmp_path, 50, 9)
    out_path = tmp_path / "never.csv"
    p = start(["cli", "--config", str(cfg), "--party", "alice", "--input", pa, "--key", "id",
               "--output", str(out_path), "--no-progress"])
    rc, _stdout, stderr = finish({"alice": p}, timeout=60)["alice"]
    assert rc == 1
    assert "PeerUnavailable" in stderr and "'bob'" in stderr
    assert not out_path.exists()


def test_sigterm_mid_psi_aborts_the_job_at_the_peer(tmp_path: Path) -> None:
    """Orderly stop (issue 9): SIGTERM at alice during the KKRT exchange aborts the job at both
    parties with alice named and 'stopped by signal', long before the peer timeout would."""
    cfg = make_cluster(tmp_path, peer_timeout_s=60)
    pa, pb, _, _ = csv_pair(tmp_path, 30000, 11)
    ck = {p: tmp_path / f"ck_{p}" for p in ("alice", "bob")}

    def run(party: str, inp: str, key: str) -> object:
        return start(["cli", "--config", str(cfg), "--party", party, "--input", inp, "--key", key,
                      "--output", str(tmp_path / f"out_{party}.csv"), "--job", "stop-me",
                      "--checkpoint-dir", str(ck[party]), "--no-progress", "--summary-json"])

    procs = {"alice": run("alice", pa, "id"), "bob": run("bob", pb, "uid")}
    deadline = time.monotonic() + 120
    try:
        while not list(ck["alice"].glob("stop-me-*.alice/kkrt-shards/0.pos")):  # mid-exchange
            assert time.monotonic() < deadline and procs["alice"].poll() is None, "too late"
            time.sleep(0.01)
        procs["alice"].send_signal(signal.SIGTERM)
        out = finish(procs, timeout=30)  # PeerLost would take 60 s: only the abort is this fast
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    rc, _, err = out["alice"]
    assert rc == 128 + signal.SIGTERM, (rc, err[-3000:])
    assert "stopped by signal SIGTERM" in err, err[-3000:]
    rc, stdout, err = out["bob"]
    assert rc == 1, (rc, err[-3000:])
    said = stdout + err
    assert "JobAborted" in said and "'alice'" in said and "stopped by signal SIGTERM" in said, said[-3000:]
