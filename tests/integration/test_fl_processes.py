"""FLModel as real processes over TLS.

- ``mpcactors run`` of examples/fl_linear_regression.py, three parties (configs/local3 shape).
- Four processes, one client crashes (os._exit) at the start of round 2: that round completes
  with the two others, training finishes under ``node.run``, the result matches the centralised
  fit (the job's closing 'end' op compares op counts with the parties still there).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from .helpers import ROOT, finish, make_cluster, start

pytestmark = pytest.mark.timeout(240)
PARTIES = ("alice", "bob", "carol", "dave")  # carol serves; alice, bob, dave are clients


def test_fl_over_tls_processes_with_a_client_crashing_mid_training(tmp_path):
    prog = tmp_path / "fl_crash.py"
    prog.write_text(
        "import json, os, pathlib, sys, types\n"
        "import trio\n"
        "import mpcactors as mpc\n"
        "from mpcactors._pytree import to_jsonable\n"
        f"sys.path.insert(0, {str(ROOT / 'examples')!r})\n"
        "import fl_linear_regression as ex\n"
        "class CrashAtRound2:\n"
        "    '''dave's model: the process dies when round 2's local training starts'''\n"
        "    def __init__(self):\n"
        "        self.inner, self.calls = ex.make_model(), 0\n"
        "        self.metric_names = self.inner.metric_names\n"
        "    def get_weights(self): return self.inner.get_weights()\n"
        "    def set_weights(self, w): self.inner.set_weights(w)\n"
        "    def evaluate(self, x, y): return self.inner.evaluate(x, y)\n"
        "    def predict(self, x): return self.inner.predict(x)\n"
        "    def fit(self, x, y, **kw):\n"
        "        self.calls += 1\n"
        "        if self.calls == 3:\n"
        "            os._exit(17)\n"
        "        return self.inner.fit(x, y, **kw)\n"
        "async def go(config, party):\n"
        "    async with mpc.open_node(config, party) as node:\n"
        "        make = CrashAtRound2 if party == 'dave' else ex.make_model\n"
        "        async def program(job):\n"
        "            return await ex.train(job, make=make, epochs=6)\n"
        "        return await node.run(program, job='fl-crash', idle_timeout=120)\n"
        "config, party, out = sys.argv[1:]\n"
        "result = trio.run(go, mpc.load_config(config), party)\n"
        "pathlib.Path(out).write_text(json.dumps(to_jsonable(result)))\n"
    )
    cfg = make_cluster(tmp_path, parties=PARTIES, protocol="semi2k", dealer="carol", peer_timeout_s=3)
    outs = {p: tmp_path / f"{p}.json" for p in PARTIES}
    procs = {
        p: subprocess.Popen([sys.executable, str(prog), str(cfg), p, str(outs[p])], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in PARTIES
    }  # fmt: skip
    results = finish(procs, timeout=220)
    assert results["dave"][0] == 17, results["dave"][2][-2000:]
    for p in ("alice", "bob", "carol"):
        code, _, err = results[p]
        assert code == 0, (p, err[-6000:])
    got = {p: json.loads(outs[p].read_text()) for p in ("alice", "bob", "carol")}
    rounds = got["carol"]["rounds"]
    assert [r["survivors"] for r in rounds[:2]] == [["alice", "bob", "dave"]] * 2
    assert all(r["survivors"] == ["alice", "bob"] for r in rounds[2:]) and len(rounds) == 6
    for p in ("alice", "bob"):  # the clients end with the server's model
        assert np.allclose(got[p]["w"], got["carol"]["w"], rtol=0, atol=0) and got[p]["b"] == got["carol"]["b"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("fl_lr", ROOT / "examples" / "fl_linear_regression.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    x = np.concatenate([ex.party_rows(p)[0] for p in ("alice", "bob")])
    y = np.concatenate([ex.party_rows(p)[1] for p in ("alice", "bob")])
    central = ex.make_model()
    central.fit(x, y, epochs=12, batch_size=64, seed=0, proximal_mu=0.0)
    fed = ex.make_model()
    fed.set_weights([np.array(got["carol"]["w"]), np.asarray(got["carol"]["b"])])
    assert abs(fed.evaluate(x, y)["mse"] - central.evaluate(x, y)["mse"]) < 0.01
    assert np.max(np.abs(np.array(got["carol"]["w"]) - ex.W_TRUE)) < 0.05


def test_fl_example_with_mpcactors_run_as_three_tls_processes(tmp_path):
    parties = ("alice", "bob", "carol")
    cfg = make_cluster(tmp_path, parties=parties)
    outs = {p: tmp_path / f"{p}.json" for p in parties}
    procs = {
        p: start(["run", str(ROOT / "examples" / "fl_linear_regression.py"), "--config", str(cfg),
                  "--party", p, "--output", str(outs[p]), "--timeout", "150"])
        for p in parties
    }  # fmt: skip
    for p, (code, _, err) in finish(procs, timeout=200).items():
        assert code == 0, (p, err[-3000:])
    got = {p: json.loads(outs[p].read_text()) for p in parties}
    rounds = got["carol"]["rounds"]
    assert len(rounds) == 20 and all(r["survivors"] == ["alice", "bob"] for r in rounds)
    assert all(r["bytes_sent"] > 0 and r["bytes_received"] > 0 for r in rounds)
    for p in ("alice", "bob"):
        assert got[p]["w"] == got["carol"]["w"] and got[p]["b"] == got["carol"]["b"]


@pytest.mark.slow
def test_fl_digits_mlp_example_with_mpcactors_run_as_five_tls_processes(tmp_path):
    """The JAX MLP example (4 non-IID clients, secure aggregation, FedProx) as it is, five real
    processes over TLS: every party ends with the same global model, and its test accuracy is
    within 0.05 of the same MLP trained on the pooled rows (fixed seeds)."""
    parties = ("alice", "bob", "carol", "dave", "erin")
    cfg = make_cluster(tmp_path, parties=parties, protocol="semi2k", dealer="alice")
    outs = {p: tmp_path / f"{p}.json" for p in parties}
    procs = {
        p: start(["run", str(ROOT / "examples" / "fl_digits_mlp.py"), "--config", str(cfg),
                  "--party", p, "--output", str(outs[p]), "--timeout", "200"])
        for p in parties
    }  # fmt: skip
    for p, (code, _, err) in finish(procs, timeout=230).items():
        assert code == 0, (p, err[-3000:])
    got = {p: json.loads(outs[p].read_text()) for p in parties}
    accuracy = {p: got[p]["test_accuracy"] for p in parties}
    assert len(set(accuracy.values())) == 1, accuracy  # one global model everywhere
    assert got["alice"]["rounds"] >= 2 and len(got["alice"]["bytes_per_round"]) == got["alice"]["rounds"]

    spec = importlib.util.spec_from_file_location("fl_digits", ROOT / "examples" / "fl_digits_mlp.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    shards, x_test, y_test = ex.split()
    central = ex.make_model()
    central.fit(np.concatenate([s[0] for s in shards.values()]), np.concatenate([s[1] for s in shards.values()]),
                epochs=20, batch_size=32, seed=0, proximal_mu=0.0)  # fmt: skip
    want = central.evaluate(x_test, y_test)["accuracy"]
    assert accuracy["alice"] >= want - 0.05, (accuracy["alice"], want)
