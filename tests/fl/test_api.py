"""The public surface of mpcactors.fl, its light import, and the insecure aggregator's warning."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import structlog.testing

from mpcactors import fl
from mpcactors.fl import FLModel, PlainAggregator, logistic_regression

from ._data import CLIENTS, SERVER, blobs, run


def test_exported_names_are_pinned() -> None:
    assert sorted(fl.__all__) == sorted([
        "Callback", "EarlyStopping", "FLModel", "FedAdam", "FedAvg", "FedProx", "History",
        "JaxModel", "ModelAdapter", "NumpyModel", "PlainAggregator", "RoundRecord",
        "SecureAggregator", "SklearnModel", "latest_checkpoint", "linear_regression",
        "load_checkpoint", "logistic_regression",
    ])  # fmt: skip
    assert all(getattr(fl, name) is not None for name in fl.__all__)


def test_importing_fl_loads_neither_jax_nor_sklearn() -> None:
    code = "import sys, mpcactors.fl; print(sorted(m for m in ('jax', 'sklearn', 'optax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_aggregation_is_named_insecure_and_warns() -> None:
    shards, _ = blobs()

    async def main(job: Any) -> Any:
        model = FLModel(job, server=SERVER, device_list=CLIENTS, aggregator=PlainAggregator(),
                        model=lambda: logistic_regression(5, 3))  # fmt: skip
        return (await model.fit(x={c: s[0] for c, s in shards.items()},
                                y={c: s[1] for c, s in shards.items()}, epochs=1)).weights  # fmt: skip

    with structlog.testing.capture_logs() as logs:
        out = run(main)
    warnings = [e for e in logs if e["log_level"] == "warning" and "INSECURE" in e["event"]]
    assert len(warnings) == 1 and warnings[0]["party"] == SERVER
    assert np.all(np.isfinite(out[SERVER][0])) and PlainAggregator.secure is False
