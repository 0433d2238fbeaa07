"""The examples run and agree with plaintext (simulate; federated also as real processes)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import mpcactors as mpc

from .helpers import ROOT, finish, make_cluster, start

pytestmark = pytest.mark.timeout(240)


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_federated_averaging_with_secure_aggregation_matches_plain_averaging():
    fl = load("federated_logreg")
    parties = [fl.SERVER, *fl.CLIENTS]
    secure = mpc.simulate(fl.main, parties=parties, protocol="semi2k", dealer=fl.SERVER, timeout=120)
    plain = mpc.simulate(fl.main, parties=parties, protocol="semi2k", dealer=fl.SERVER, timeout=120, kwargs={"secure": False})
    w_s, w_p = secure[fl.SERVER], plain[fl.SERVER]
    for party in parties:  # every party ends with the same global model
        np.testing.assert_allclose(secure[party], w_s)
    assert abs(fl.accuracy(w_s) - fl.accuracy(w_p)) <= 0.005
    assert np.max(np.abs(w_s - w_p)) < 1e-4  # quantisation error only
    assert fl.accuracy(w_s) > 0.85


def test_vertical_logistic_regression_matches_plaintext():
    vl = load("vertical_logreg")
    x, y = vl.full_data()
    w_plain, b_plain = vl.train(x, y)
    out = mpc.simulate(vl.main, parties=["alice", "bob", "carol"], protocol="rep3", timeout=120)["carol"]
    assert abs(vl.accuracy(out["w"], float(out["b"])) - vl.accuracy(w_plain, b_plain)) <= 0.01
    assert np.max(np.abs(out["w"] - w_plain)) < 1e-2


def run_example(tmp_path, name, parties, **cluster):
    """``mpcactors run examples/<name>.py`` at every party of a TLS cluster; {party: its JSON output}."""
    cfg = make_cluster(tmp_path, parties=parties, **cluster)
    outs = {p: tmp_path / f"{p}.json" for p in parties}
    procs = {
        p: start(["run", str(ROOT / "examples" / f"{name}.py"), "--config", str(cfg), "--party", p, "--output", str(outs[p]), "--timeout", "150"])
        for p in parties
    }
    for p, (code, _, err) in finish(procs, timeout=200).items():
        assert code == 0, (p, err)
    return {p: json.loads(outs[p].read_text()) for p in parties}


def test_federated_example_as_five_tls_processes(tmp_path):
    fl = load("federated_logreg")
    parties = [fl.SERVER, *fl.CLIENTS]
    weights = {p: np.array(w) for p, w in run_example(tmp_path, "federated_logreg", parties, protocol="semi2k", dealer=fl.SERVER).items()}
    for p in parties:
        np.testing.assert_allclose(weights[p], weights[fl.SERVER])
    assert fl.accuracy(weights[fl.SERVER]) > 0.85


def test_the_guides_jax_logistic_regression_as_three_tls_processes(tmp_path):
    """``mpcactors run`` of examples/jax_logistic_regression.py (``mpc.jit`` of the guide's program,
    labels declared 0/1): three TLS processes end with plain JAX's weights."""
    pytest.importorskip("jax")
    guide = load("jax_logistic_regression")
    got = run_example(tmp_path, "jax_logistic_regression", ["alice", "bob", "carol"], protocol="rep3")
    x, y = guide.load_dataset()
    want = np.asarray(guide.logit_regression(x, y))
    for w in got.values():
        np.testing.assert_allclose(np.array(w), want, atol=2e-3)
