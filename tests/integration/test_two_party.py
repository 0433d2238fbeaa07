"""Two parties and nobody else: semi2k with no dealer as two real TLS processes (issue 12).

alice and bob make their own correlations by OT; no third process, no trusted party, and no
trusted-first-party warning (three parties with no dealer make theirs by pairs, also checked
here). The programs' results are checked against plaintext numpy.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from .helpers import ROOT, finish, make_cluster, start

pytestmark = pytest.mark.timeout(240)

PARTIES = ("alice", "bob")

OPS_PROGRAM = """
import numpy as np
import mpcactors as mpc

def data():
    g = np.random.default_rng(7)
    return g.uniform(-4, 4, (40, 6)), g.uniform(-4, 4, (40, 6)), g.uniform(-1, 1, (6, 3))

async def main(job):
    xv, yv, wv = data()
    x = job.input("alice", lambda: xv)
    y = job.input("bob", lambda: yv)
    w = job.input("bob", lambda: wv)
    n = job.input("alice", lambda: np.arange(-20, 20), dtype=int)
    return await job.reveal({
        "mul": x * y,
        "less": x < y,
        "matmul": x @ w,
        "sigmoid": mpc.sigmoid(x),
        "max": mpc.maximum(x, y),
        "int": n * n + n,
        "sum": (x * y).sum(axis=0),
    })
"""


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(7)
    return g.uniform(-4, 4, (40, 6)), g.uniform(-4, 4, (40, 6)), g.uniform(-1, 1, (6, 3))


def _run(tmp_path, prog, dealer, timeout=150, parties=PARTIES, **cluster) -> dict[str, object]:
    cfg = make_cluster(tmp_path, parties, "semi2k", dealer=dealer, **cluster)
    outs = {p: tmp_path / f"{p}.json" for p in parties}
    procs = {
        p: start(["run", str(prog), "--config", str(cfg), "--party", p, "--output", str(outs[p]),
                  "--timeout", str(timeout), "--log-level", "warning"])
        for p in parties
    }
    results = {}
    for p, (code, _, err) in finish(procs, timeout=timeout + 30).items():
        assert code == 0, (p, err)
        assert "trusted" not in err and "insecure" not in err, (p, err)  # no trusted-party warning
        results[p] = json.loads(outs[p].read_text())
    return results


@pytest.mark.parametrize(
    ("dealer", "parties", "k", "matrix"),
    [
        (None, PARTIES, None, None),
        ("none", PARTIES, None, None),
        ("none", ("alice", "bob", "carol"), None, None),
        ("none", PARTIES, 4, None),
        ("none", PARTIES, None, "he"),
    ],
    # the default with two parties, explicit, three by pairs, SoftSpoken k = 4 (slow links),
    # matrix and elementwise triples by lattice HE (TenSEAL; the test install has it)
    ids=["2-default", "2-none", "3-none", "2-none-k4", "2-none-he"],
)
def test_ops_agree_with_numpy_as_tls_processes_without_a_dealer(tmp_path, dealer, parties, k, matrix):
    if matrix == "he" and importlib.util.find_spec("tenseal") is None:
        pytest.skip("TenSEAL (the he extra) is not installed")
    prog = tmp_path / "ops.py"
    prog.write_text(OPS_PROGRAM)
    x, y, w = _data()
    n = np.arange(-20, 20)
    # "he": matrix and elementwise triples both by lattice HE (each checked alone in tests/ops)
    results = _run(tmp_path, prog, dealer, parties=parties, softspoken_k=k, matrix_triples=matrix, mul_triples=matrix)
    assert sorted(results) == sorted(parties)
    for got in results.values():
        r = {k: np.asarray(v) for k, v in got.items()}  # type: ignore[union-attr]
        np.testing.assert_allclose(r["mul"], x * y, atol=1e-4)
        np.testing.assert_array_equal(r["less"], (x < y).astype(int))
        np.testing.assert_allclose(r["matmul"], x @ w, atol=1e-4)
        np.testing.assert_allclose(r["sigmoid"], 1 / (1 + np.exp(-x)), atol=1e-3)
        np.testing.assert_allclose(r["max"], np.maximum(x, y), atol=1e-5)
        np.testing.assert_array_equal(r["int"], n * n + n)
        np.testing.assert_allclose(r["sum"], (x * y).sum(axis=0), atol=1e-3)


def test_logistic_regression_example_as_two_tls_processes(tmp_path):
    """examples/logistic_regression.py unchanged, features at alice, labels at bob, no dealer:
    the weights of float64 numpy within 1e-3 and the same accuracy."""
    spec = importlib.util.spec_from_file_location("lr_example", ROOT / "examples" / "logistic_regression.py")
    lr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lr)
    x, y = lr.lr_data()
    w_plain = lr.train(x, y)
    for w in _run(tmp_path, ROOT / "examples" / "logistic_regression.py", None).values():
        w = np.asarray(w)
        assert lr.accuracy(x, y, w) == lr.accuracy(x, y, w_plain)
        assert np.max(np.abs(w - w_plain)) <= 1e-3


@pytest.mark.slow  # ~20 s on 2 busy cores
def test_vertical_logistic_regression_with_two_parties_and_no_dealer():
    """examples/vertical_logreg.py with two parties (labels at bob), simulated: float64 accuracy."""
    import mpcactors as mpc

    spec = importlib.util.spec_from_file_location("vl_example", ROOT / "examples" / "vertical_logreg.py")
    vl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vl)
    x, y = vl.full_data()
    w_plain, b_plain = vl.train(x, y)
    out = mpc.simulate(vl.main, parties=list(PARTIES), protocol="semi2k", timeout=120)["alice"]
    assert vl.accuracy(out["w"], float(out["b"])) == vl.accuracy(w_plain, b_plain)
    assert np.max(np.abs(out["w"] - w_plain)) <= 2e-3
