"""The host's event loop stays responsive while a big job runs on it (issue 9 point 1).

An asyncio service embeds ``simulate_async``: its own 10 ms ticker must not be held up while
three 1024x1024 rep3 matmuls and 10^6 comparisons run on the same loop (op steps whose work grows
with the data run in worker threads; the executor yields between steps). Results are checked
against numpy. The job runs in a fresh interpreter (tests/scheduler/_lateness_job.py), so no
other test's threads or garbage share its GIL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]


def test_asyncio_host_ticker_stays_on_time_during_a_big_job() -> None:
    run = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_lateness_job.py"))],
        capture_output=True, text=True, timeout=280, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["z_err"] < 2e-3 and got["count_ok"] and got["bits_ok"], got
    assert got["ticks"] > 10, got  # the ticker ran all along
    # The target is 50 ms (issue 9): a quiet 2-core host measures 8-30 ms of wall time for the
    # ticker's worst lateness, and 4-16 ms of loop-thread CPU time in the longest callback (also
    # beside two CI runs). Wall time on a busy host is whatever the OS and the GIL give the loop
    # thread, so the assertion is on CPU time: the work library code did in one turn of the
    # loop, which is what the invariant bounds. It fails the regressions this guards against:
    # big input and matmul steps inline held the loop 946 ms; filling huge-page receive buffers
    # on the loop thread held it 110-225 ms of CPU (compaction stalls); importing the comparison
    # modules at the first comparison, ~25 ms.
    late = f"(wall: ticker {got['worst_s'] * 1000:.0f} ms late, callback {got['held_max_s'] * 1000:.0f} ms)"
    assert got["cpu_max_s"] < 0.050, f"a loop callback ran {got['cpu_max_s'] * 1000:.0f} ms of CPU {late}"
