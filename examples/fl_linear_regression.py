"""The federated-learning guide's migration: a single-machine linear regression, federated.

The single-machine version trains ``linear_regression(d)`` on all rows. Federated, the rows stay
where they are -- alice and bob each hold some customers (same columns) -- and carol holds the
global model and aggregates. The change is three lines: partition the data by party, wrap the
model in ``FLModel``, call ``fit`` with one entry per party. Updates are summed with secure
aggregation, so carol sees only the sum of the clients' updates each round.

    python examples/fl_linear_regression.py          (every party in this process)
    mpcactors run examples/fl_linear_regression.py --config configs/local3.toml --party NAME
        (alice, bob, carol; any cluster works: carol serves, every other party is a client)
"""

from __future__ import annotations

from typing import Any

import numpy as np

import mpcactors as mpc
from mpcactors.fl import FLModel, SecureAggregator, linear_regression

SERVER = "carol"
FEATURES = 6
W_TRUE = np.linspace(-1.0, 1.5, FEATURES)


def party_rows(party: str, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A party's own customers (at a client, the loader would read its database)."""
    rng = np.random.default_rng(sum(map(ord, party)))
    x = rng.normal(size=(rows, FEATURES))
    return x, x @ W_TRUE + 0.5 + 0.1 * rng.normal(size=rows)


def make_model() -> Any:
    return linear_regression(FEATURES, learning_rate=0.1)


async def train(job: Any, make: Any = make_model, epochs: int = 20) -> dict[str, Any]:
    clients = [p for p in job.parties if p != SERVER]
    fed_model = FLModel(job, server=SERVER, device_list=clients, model=make,
                        aggregator=SecureAggregator(threshold=2, stage_timeout_s=20))  # fmt: skip
    history = await fed_model.fit(
        x={c: (lambda c=c: party_rows(c)[0]) for c in clients},  # each loader runs at its party
        y={c: (lambda c=c: party_rows(c)[1]) for c in clients},
        epochs=epochs, local_epochs=2, batch_size=64,
    )  # fmt: skip
    w, b = history.weights
    out: dict[str, Any] = {"w": w, "b": float(b)}
    if job.party == SERVER:
        out["rounds"] = [{"round": r.round, "survivors": list(r.survivors), "train_loss": r.train_loss,
                          "bytes_sent": r.bytes_sent, "bytes_received": r.bytes_received}
                         for r in history.rounds]  # fmt: skip
    return out


async def main(job: Any) -> dict[str, Any]:
    return await train(job)


if __name__ == "__main__":
    result = mpc.simulate(main, parties=["alice", "bob", SERVER])[SERVER]
    x = np.concatenate([party_rows(p)[0] for p in ("alice", "bob")])
    y = np.concatenate([party_rows(p)[1] for p in ("alice", "bob")])
    central = make_model()
    central.fit(x, y, epochs=40, batch_size=64, seed=0, proximal_mu=0.0)
    fed = make_model()
    fed.set_weights([result["w"], np.asarray(result["b"])])
    print("federated   w", np.round(result["w"], 3), "b", round(result["b"], 3), "mse", fed.evaluate(x, y)["mse"])
    cw, cb = central.get_weights()
    print("centralised w", np.round(cw, 3), "b", round(float(cb), 3), "mse", central.evaluate(x, y)["mse"])
    r = result["rounds"][-1]
    print(f"per round at the server: {r['bytes_sent']} bytes sent, {r['bytes_received']} received")
