"""FedAvg over secure aggregation reaches what FedAvg over plain averaging reaches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpcactors import ConfigError
from mpcactors.secagg import FedAvgConfig, federated_averaging, logistic_predict
from mpcactors.secagg._fedavg import local_train

from ._cluster import SERVER, run_cluster

CLIENTS = ["c0", "c1", "c2", "c3"]
D = 6


def synthetic(
    seed: int = 0,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Horizontally partitioned logistic data: uneven shards, shifted feature means per client."""
    rng = np.random.default_rng(seed)
    w_true = 3 * rng.normal(size=D)
    b_true = 0.3

    def draw(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(loc=shift, size=(n, D))
        p = 1 / (1 + np.exp(-(x @ w_true + b_true)))
        return x, (rng.uniform(size=n) < p).astype(np.float64)

    shards = {
        c: draw(n, s) for c, n, s in zip(CLIENTS, [100, 250, 400, 150], [-0.5, 0.0, 0.3, 0.6])
    }
    x_test, y_test = draw(2000, 0.1)
    return shards, x_test, y_test


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((logistic_predict(w, x) > 0.5) == (y > 0.5)))


async def train(shards: dict[str, Any], config: FedAvgConfig) -> dict[str, Any]:
    async def fn(node: Any) -> Any:
        return await federated_averaging(
            node, job="fl", server=SERVER, clients=CLIENTS, data=shards.get(node.party),
            n_features=D, config=config,
        )  # fmt: skip

    return await run_cluster([SERVER, *CLIENTS], fn)


@pytest.mark.trio
async def test_secure_fedavg_matches_plain_fedavg() -> None:
    shards, x_test, y_test = synthetic()
    base = {"rounds": 8, "local_epochs": 5, "learning_rate": 0.5, "l2": 1e-3}
    secure = await train(shards, FedAvgConfig(secure=True, threshold=3, **base))  # type: ignore[arg-type]
    plain = await train(shards, FedAvgConfig(secure=False, **base))  # type: ignore[arg-type]
    w_s, w_p = secure[SERVER].weights, plain[SERVER].weights
    # Quantisation moves each round's average by about 4 * 2^-19 / 900 per coordinate.
    acc_s, acc_p = accuracy(w_s, x_test, y_test), accuracy(w_p, x_test, y_test)
    print("max |w_secure - w_plain| =", np.max(np.abs(w_s - w_p)), "accuracies", acc_s, acc_p)
    assert np.max(np.abs(w_s - w_p)) < 1e-6
    assert abs(acc_s - acc_p) <= 0.002
    assert acc_s > 0.8  # it learned (centralised training reaches 0.84; a constant guess ~0.5)
    # Every client ends with the server's model; the server saw every sample each round.
    assert all(np.array_equal(secure[c].weights, w_s) for c in CLIENTS)
    assert [h.samples for h in secure[SERVER].history] == [900.0] * 8


def test_fedavg_equals_centralised_gradient_descent_for_one_local_step() -> None:
    """With one local epoch, the sample-weighted mean of client steps is one centralised step."""
    shards, _, _ = synthetic(1)
    w0 = np.zeros(D + 1)
    updates = [
        len(y) * (local_train(w0, x, y, epochs=1, lr=0.5, l2=0.0) - w0) for x, y in shards.values()
    ]
    n = sum(len(y) for _, y in shards.values())
    x_all = np.concatenate([x for x, _ in shards.values()])
    y_all = np.concatenate([y for _, y in shards.values()])
    central = local_train(w0, x_all, y_all, epochs=1, lr=0.5, l2=0.0)
    assert np.allclose(w0 + sum(updates) / n, central)


def test_fedavg_config_validation() -> None:
    for kw in ({"rounds": 0}, {"learning_rate": 0.0}, {"l2": -1.0}, {"local_epochs": 1.5}):
        with pytest.raises(ConfigError):
            FedAvgConfig(**kw)  # type: ignore[arg-type]
