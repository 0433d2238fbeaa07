"""Off a terminal, a long PSI or the demo prints progress lines every few seconds instead of
nothing (issue 13 point 8). Real processes with their stderr in a pipe (not a TTY)."""

from __future__ import annotations

import pytest

from .helpers import finish, make_cluster, start

pytestmark = pytest.mark.timeout(240)


def test_psi_prints_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    cfg = make_cluster(tmp_path, parties=("alice", "bob"), protocol="semi2k")
    for party, step in (("alice", 2), ("bob", 3)):
        rows = "\n".join(f"id{i},{i}" for i in range(0, 6000, step))
        (tmp_path / f"{party}.csv").write_text("id,v\n" + rows + "\n")
    def args(p: str) -> list[str]:
        return ["psi", "--config", str(cfg), "--party", p, "--input", str(tmp_path / f"{p}.csv"), "--key", "id",
                "--output", str(tmp_path / f"{p}_out.csv"), "--job", "big", "--progress-every", "0.2",
                "--protocol", "ecdh", "--workers", "0"]  # fmt: skip

    procs = {p: start(args(p)) for p in ("alice", "bob")}
    results = finish(procs, timeout=200)
    for p, (rc, _, err) in results.items():
        assert rc == 0, (p, err)
        lines = [ln for ln in err.splitlines() if ln.startswith("mpcactors psi: ") and " s: big " in ln]
        assert lines, (p, err[-2000:])


def test_demo_prints_progress_lines_when_not_on_a_terminal():
    procs = {"demo": start(["demo", "--progress-every", "0.5", "--timeout", "200"])}
    (rc, out, err), = finish(procs, timeout=220).values()
    assert rc == 0, (out[-2000:], err[-2000:])
    assert "mpcactors demo: " in err and "parties still running: " in err, err[-2000:]
