"""`mpcactors run` with three real processes over TLS on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .._waiting import until_sync
from .helpers import ROOT, finish, make_cluster, start

pytestmark = pytest.mark.timeout(180)


def test_three_processes_run_a_program(tmp_path):
    cfg = make_cluster(tmp_path)
    procs = {
        p: start(["run", str(ROOT / "examples" / "hello.py"), "--config", str(cfg), "--party", p, "--job", "hello-1", "--timeout", "90"])
        for p in ("alice", "bob", "carol")
    }
    results = finish(procs)
    for p, (code, out, err) in results.items():
        assert code == 0, (p, err)
        got = json.loads(out.strip().splitlines()[-1])
        assert abs(got["mean"] - (52.5 + 61.0 + 58.25) / 3) < 1e-3
        assert got["bob_earns_most"] is True


def test_failure_at_one_party_aborts_the_job_everywhere(tmp_path):
    prog = tmp_path / "bad.py"
    prog.write_text(
        "import numpy as np\n"
        "def load():\n"
        "    raise FileNotFoundError('no such file: /data/bob.npy')\n"
        "async def main(job):\n"
        "    x = job.input('alice', lambda: np.ones(3))\n"
        "    y = job.input('bob', load)\n"
        "    return await job.reveal(x * y)\n"
    )
    cfg = make_cluster(tmp_path)
    procs = {p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--job", "bad", "--timeout", "60"]) for p in ("alice", "bob", "carol")}
    results = finish(procs)
    for p, (code, out, err) in results.items():
        assert code == 1, (p, code, err)
        assert "JobAborted" in err and "'bob'" in err and "no such file" in err, (p, err)


def test_output_file_and_semi2k_with_dealer(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import numpy as np\n"
        "async def main(job):\n"
        "    x = job.input('alice', lambda: np.arange(12.0).reshape(3, 4))\n"
        "    y = job.input('bob', lambda: np.ones((4, 2)))\n"
        "    return await job.reveal(x @ y, to='alice')\n"
    )
    cfg = make_cluster(tmp_path, protocol="semi2k", dealer="carol")
    outs = {p: tmp_path / f"{p}.npy" for p in ("alice", "bob", "carol")}
    procs = {p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--output", str(outs[p]), "--timeout", "60"]) for p in outs}
    results = finish(procs)
    for p, (code, out, err) in results.items():
        assert code == 0, (p, err)
    np.testing.assert_allclose(np.load(outs["alice"]), np.arange(12.0).reshape(3, 4) @ np.ones((4, 2)), atol=1e-3)
    assert json.loads(outs["bob"].read_text()) is None


@pytest.mark.parametrize("protocol,dealer", [("rep3", None), ("semi2k", "carol")])
def test_logistic_regression_as_real_processes(tmp_path, protocol, dealer):
    """SPU's headline program, unchanged, as three TLS processes (features at alice, labels at bob)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lr_example", ROOT / "examples" / "logistic_regression.py")
    lr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lr)
    x, y = lr.lr_data()
    w_plain = lr.train(x, y)
    cfg = make_cluster(tmp_path, protocol=protocol, dealer=dealer)
    outs = {p: tmp_path / f"{p}.json" for p in ("alice", "bob", "carol")}
    procs = {
        p: start(["run", str(ROOT / "examples" / "logistic_regression.py"), "--config", str(cfg), "--party", p, "--output", str(outs[p]), "--timeout", "120"])
        for p in outs
    }
    for p, (code, out, err) in finish(procs, timeout=170).items():
        assert code == 0, (p, err)
        w = np.array(json.loads(outs[p].read_text()))
        assert abs(lr.accuracy(x, y, w) - lr.accuracy(x, y, w_plain)) <= 0.01
        assert np.max(np.abs(w - w_plain)) <= 1e-2


def test_a_party_killed_mid_job_fails_the_job_with_peer_lost_naming_it(tmp_path):
    """carol's process is killed while the job runs: alice and bob stop with PeerLost naming
    carol within peer_timeout (5 s here), not a hang."""
    import signal
    import time

    prog = tmp_path / "long.py"
    marks = tmp_path / "marks"
    marks.mkdir()
    prog.write_text(
        "import pathlib\n"
        "import numpy as np\n"
        "async def main(job):\n"
        "    x = job.input('alice', lambda: np.ones(1000))\n"
        "    y = job.input('bob', lambda: np.ones(1000))\n"
        "    z = x\n"
        "    for i in range(100000):\n"
        "        z = z * y\n"
        "        await z\n"
        "        if i == 10:  # connected and multiplying: tell the test\n"
        f"            (pathlib.Path({str(marks)!r}) / job.party).touch()\n"
        "    return await job.reveal(z)\n"
    )
    cfg = make_cluster(tmp_path, peer_timeout_s=5)
    procs = {p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--job", "long", "--log-level", "error"]) for p in ("alice", "bob", "carol")}
    try:
        until_sync(lambda: len(list(marks.iterdir())) == 3 or any(p.poll() is not None for p in procs.values()),
                   timeout=90, what="all three parties multiplying")
    except TimeoutError:
        for p in procs.values():
            p.kill()
        raise
    assert all(p.poll() is None for p in procs.values()), "the job ended before the kill"
    t0 = time.monotonic()
    procs["carol"].send_signal(signal.SIGKILL)
    results = finish({p: procs[p] for p in ("alice", "bob")}, timeout=60)
    # the design's bound: peer_timeout (5 s) plus a few seconds; finish() itself bounds the hang
    assert time.monotonic() - t0 < 5 + 20
    for p, (code, out, err) in results.items():
        assert code == 1, (p, code, err)
        assert "PeerLost" in err and "carol" in err, (p, err)
    procs["carol"].communicate()
