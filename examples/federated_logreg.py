"""Federated averaging with secure aggregation: horizontally partitioned data.

Each client (bob, carol, dave, erin) holds its own rows of the same features; alice is the
server. Every round, clients train locally from the global model and the server learns only the
SUM of their models (secure aggregation, Bonawitz et al.), divides by the number of clients and
sends the average back. Compared with plain (insecure) averaging on the same data.

When to use which: data split by ROWS (same features, different customers) -> federated learning
with secure aggregation (this file; cheap: one masked vector per client per round). Data split
by COLUMNS (different features of the same customers) -> secret-shared training
(examples/vertical_logreg.py).

    python examples/federated_logreg.py
    mpcactors run examples/federated_logreg.py --config CLUSTER.toml --party NAME   (5 parties)
"""

from __future__ import annotations

import numpy as np

import mpcactors as mpc
from mpcactors.secagg import FedAvgConfig, federated_averaging, logistic_predict

SERVER = "alice"
CLIENTS = ["bob", "carol", "dave", "erin"]
FEATURES = 8


def client_data(party: str, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Each client's private rows (same true model, different customers)."""
    w_true = np.random.default_rng(0).standard_normal(FEATURES)
    rng = np.random.default_rng(sum(map(ord, party)))
    x = rng.standard_normal((rows, FEATURES))
    y = (x @ w_true + 0.3 * rng.standard_normal(rows) > 0).astype(np.float64)
    return x, y


def test_data() -> tuple[np.ndarray, np.ndarray]:
    return client_data("test", 2000)


async def main(job, secure: bool = True):
    clients = [p for p in job.parties if p != SERVER]
    data = client_data(job.party) if job.party in clients else None
    result = await federated_averaging(
        job.link,
        job=job.id,
        server=SERVER,
        clients=clients,
        data=data,
        n_features=FEATURES,
        config=FedAvgConfig(rounds=8, local_epochs=5, learning_rate=0.5, secure=secure),
    )
    return result.weights


def accuracy(weights: np.ndarray) -> float:
    x, y = test_data()
    return float(np.mean((logistic_predict(weights, x) > 0.5) == (y > 0.5)))


if __name__ == "__main__":
    parties = [SERVER, *CLIENTS]
    # the job's protocol is not used by FedAvg (no secret sharing); semi2k with the server as
    # dealer is a valid set-up for 5 parties
    secure = mpc.simulate(main, parties=parties, protocol="semi2k", dealer=SERVER)[SERVER]
    plain = mpc.simulate(main, parties=parties, protocol="semi2k", dealer=SERVER, kwargs={"secure": False})[SERVER]
    print(f"FedAvg with secure aggregation: accuracy {accuracy(secure):.4f}")
    print(f"FedAvg with plain averaging:    accuracy {accuracy(plain):.4f}")
    print(f"max |w_secure - w_plain| = {np.max(np.abs(secure - plain)):.2e}")
