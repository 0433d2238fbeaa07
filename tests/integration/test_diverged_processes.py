"""Diverged programs as three real `mpcactors run` processes over TLS (issue 13 point 1).

Each party runs its own program file (an extra reveal at one party is covered in-process by
tests/scheduler/test_diverged.py) (every file defines ``main``, so the set-up round's
program check passes). Every party must exit 1 with JobAborted naming the op and what each
side ran, print no value, and fail within 10 s of its job's start (its own log lines' times);
the idle watchdog stays at its 600 s default.
"""

from __future__ import annotations

import datetime
import re

import pytest

from .helpers import finish, make_cluster, start

pytestmark = pytest.mark.timeout(180)

DIVERGED_WITHIN_S = 10.0

HEAD = "import numpy as np\nasync def main(job):\n    x = job.input('alice', lambda: np.array([1.0, 2.0, 3.0]))\n"
PROGRAMS = {
    "a different op": (HEAD + "    return (await job.reveal(x * 2)).tolist()\n", HEAD + "    return (await job.reveal(x + 1)).tolist()\n"),
    "different files": (
        HEAD + "    y = job.input('bob', lambda: np.ones(3))\n    return (await job.reveal(x * y, to='alice')).tolist()\n",
        HEAD + "    z = x.sum()\n    return (await job.reveal(z > 1, to='bob')).tolist()\n",
    ),
}


def _time_of(event: str, err: str) -> datetime.datetime:
    line = next(ln for ln in err.splitlines() if event in ln)
    stamp = re.match(r"(\S+)Z", line)
    assert stamp, line
    return datetime.datetime.fromisoformat(stamp.group(1))


@pytest.mark.parametrize("case", list(PROGRAMS))
def test_diverged_program_files_fail_at_every_party_within_seconds(tmp_path, case):
    first, other = PROGRAMS[case]
    (tmp_path / "first.py").write_text(first)
    (tmp_path / "other.py").write_text(other)
    cfg = make_cluster(tmp_path)
    files = {"alice": "first.py", "bob": "other.py", "carol": "other.py"}
    procs = {
        p: start(["run", str(tmp_path / f), "--config", str(cfg), "--party", p, "--job", "d1", "--timeout", "120", "--log-level", "info"])
        for p, f in files.items()
    }
    results = finish(procs)
    for p, (code, out, err) in results.items():
        assert code == 1, (p, code, out, err)
        assert out.strip() == "", (p, out)  # no party prints a value
        assert "JobAborted" in err and "the programs diverged" in err, (p, err)
        assert re.search(r"'(alice|bob|carol)' ran .*'(alice|bob|carol)' ran ", err), (p, err)
        took = (_time_of("job failed", err) - _time_of("job started", err)).total_seconds()
        assert took < DIVERGED_WITHIN_S, (p, took)
