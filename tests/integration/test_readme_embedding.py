"""The README's "Embedding in a service" block runs as written, at two parties over TLS
(issue 13 point 10: it used undefined names and a config without a dealer)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .helpers import ROOT, finish, make_cluster

pytestmark = pytest.mark.timeout(180)


def readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert m, section
    return m.group(1)


def test_the_embedding_snippet_runs_at_two_parties(tmp_path):
    code = readme_block("Embedding in a service")
    service = tmp_path / "service.py"
    service.write_text(code)
    cfg = make_cluster(tmp_path, parties=("alice", "bob"), protocol="semi2k")
    procs = {
        p: subprocess.Popen([sys.executable, str(service), str(cfg), p], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for p in ("alice", "bob")
    }
    results = finish(procs, timeout=150)
    common = sorted(f"c{i}" for i in range(0, 60, 6))
    for p, (rc, out, err) in results.items():
        assert rc == 0, (p, err)
        line = out.strip().splitlines()[-1]
        assert line.startswith(p + " "), line
        assert str(common) in line, (line, common)
        assert "[3.75, 4.5, 5.25]" in line, line  # x.T @ y / 4


def test_a_service_without_the_main_guard_is_told_what_to_do(tmp_path):
    """PSI's worker processes import the main module; without the guard they die at start-up
    ("Error during worker process initialization"): the error now says what to do."""
    code = readme_block("Embedding in a service")
    code = code.replace("ids=customer_ids)", 'ids=customer_ids, protocol="ecdh")')  # ECDH: worker processes
    guard = 'if __name__ == "__main__":'
    assert guard in code
    service = tmp_path / "unguarded.py"
    service.write_text(code.replace(guard, "if True:"))
    cfg = make_cluster(tmp_path, parties=("alice", "bob"), protocol="semi2k")
    procs = {
        p: subprocess.Popen([sys.executable, str(service), str(cfg), p], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for p in ("alice", "bob")
    }
    results = finish(procs, timeout=150)
    assert any("worker process died" in err for _, _, err in results.values()), results
    for p, (rc, _, err) in results.items():
        assert rc != 0, p
        if "worker process died" in err:
            assert guard in err and "workers=0" in err, err
