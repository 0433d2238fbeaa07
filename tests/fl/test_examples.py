"""examples/fl_linear_regression.py in simulate agrees with centralised training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_linear_regression_example_in_simulate() -> None:
    spec = importlib.util.spec_from_file_location("fl_lr_example", ROOT / "examples" / "fl_linear_regression.py")
    assert spec is not None and spec.loader is not None
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = mpc.simulate(ex.main, parties=["alice", "bob", "carol"], timeout=120)
    x = np.concatenate([ex.party_rows(p)[0] for p in ("alice", "bob")])
    y = np.concatenate([ex.party_rows(p)[1] for p in ("alice", "bob")])
    central = ex.make_model()
    central.fit(x, y, epochs=40, batch_size=64, seed=0, proximal_mu=0.0)
    fed = ex.make_model()
    fed.set_weights([out["carol"]["w"], np.asarray(out["carol"]["b"])])
    assert abs(fed.evaluate(x, y)["mse"] - central.evaluate(x, y)["mse"]) < 1e-3
    assert np.max(np.abs(out["carol"]["w"] - central.get_weights()[0])) < 0.01
    assert all(np.array_equal(out[p]["w"], out["carol"]["w"]) for p in ("alice", "bob"))
