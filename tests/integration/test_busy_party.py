"""A busy party is alive; a stopped one tells its peers (issue 9, DESIGN.md section 9).

Three real `mpcactors run` processes over TLS on loopback with ``peer_timeout_s = 5``.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from .._waiting import until_sync
from .helpers import finish, make_cluster, start

pytestmark = pytest.mark.timeout(240)

PARTIES = ("alice", "bob", "carol")

BUSY_PROGRAM = """
import time
import numpy as np

def spin(seconds):
    # pure Python: holds the GIL and (in main) the event loop; no sleep, no I/O
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n

def slow_load():
    spin(12.0)  # a synchronous loader parsing a big file
    return np.arange(1.0, 5.0)

async def main(job):
    x = job.input("alice", slow_load)
    y = job.input("carol", lambda: np.full(4, 0.5))
    if job.party == "bob":
        spin(60.0)  # the program itself holds the loop before its first reveal
    return (await job.reveal(x * y + 1.0)).tolist()
"""


def test_busy_loader_and_busy_program_do_not_lose_the_party(tmp_path):
    prog = tmp_path / "busy.py"
    prog.write_text(BUSY_PROGRAM)
    cfg = make_cluster(tmp_path, peer_timeout_s=5)
    procs = {p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--job", "busy", "--timeout", "200"]) for p in PARTIES}
    results = finish(procs, timeout=220)
    for p, (code, out, err) in results.items():
        assert code == 0, (p, code, err[-2000:])
        np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1]), np.arange(1.0, 5.0) * 0.5 + 1.0, atol=1e-3)


STOPPABLE_PROGRAM = """
import numpy as np, pathlib, trio

async def main(job):
    x = job.input("alice", lambda: np.ones(3))
    await job.reveal(x)  # every party is connected and in the job
    pathlib.Path(__file__).with_name(job.party + ".ready").touch()
    await trio.sleep(3600)  # alice is stopped here; the others would wait in the next reveal
    return await job.reveal(x * 2)
"""

STOPPABLE_WAITER = STOPPABLE_PROGRAM.replace("    await trio.sleep(3600)  # alice is stopped here; the others would wait in the next reveal\n", "")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_party_tells_its_peers(tmp_path, signum):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "prog.py").write_text(STOPPABLE_PROGRAM)
    (tmp_path / "prog.py").write_text(STOPPABLE_WAITER)
    cfg = make_cluster(tmp_path, peer_timeout_s=60)  # PeerLost would take a minute: the abort must not
    procs = {
        p: start(["run", str(tmp_path / "alice" / "prog.py" if p == "alice" else tmp_path / "prog.py"), "--config", str(cfg), "--party", p, "--job", "stop", "--timeout", "120"])
        for p in PARTIES
    }
    try:
        until_sync(lambda: (tmp_path / "alice" / "alice.ready").exists(), timeout=90, what="alice in the job")
        procs["alice"].send_signal(signum)
        results = finish(procs, timeout=30)  # the peers fail at once (bound: well under peer_timeout)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    code, _, err = results["alice"]
    assert code == 128 + signum, (code, err[-2000:])
    assert f"stopped by signal {signal.Signals(signum).name}" in err, err[-2000:]
    for p in ("bob", "carol"):
        code, _, err = results[p]
        assert code == 1, (p, code, err[-2000:])
        assert "JobAborted" in err and "'alice'" in err and "stopped by signal" in err, (p, err[-2000:])
