"""An MLP on scikit-learn's bundled digits, trained federatedly with the JAX adapter by four
clients whose data is non-IID (each holds mostly 2-3 of the ten digits); alice aggregates with
secure aggregation. Compared with the same MLP trained on the pooled rows.

    python examples/fl_digits_mlp.py               (every party in this process)
    mpcactors run examples/fl_digits_mlp.py --config CLUSTER.toml --party NAME
        (5 parties: alice, bob, carol, dave, erin; needs the fl-jax extra)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import mpcactors as mpc
from mpcactors.fl import EarlyStopping, FedProx, FLModel, JaxModel, SecureAggregator

SERVER = "alice"
CLIENTS = ["bob", "carol", "dave", "erin"]
OPTIMIZER = optax.sgd(0.1)


def split() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """70% of a client's rows come from its 'own' digits, the rest from anywhere (non-IID)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    test, train = order[:400], order[400:]
    owner = np.where(rng.uniform(size=len(train)) < 0.7, (y[train] * 4) // 10,
                     rng.integers(0, 4, size=len(train)))  # fmt: skip
    shards = {c: (x[train[owner == k]], y[train[owner == k]]) for k, c in enumerate(CLIENTS)}
    return shards, x[test], y[test]


def apply(params: Any, x: Any) -> Any:
    h = jax.nn.relu(x @ params["h"]["w"] + params["h"]["b"])
    return h @ params["o"]["w"] + params["o"]["b"]


def make_model() -> JaxModel:
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {"h": {"w": jax.random.normal(k1, (64, 32)) * 0.15, "b": jnp.zeros(32)},
              "o": {"w": jax.random.normal(k2, (32, 10)) * 0.15, "b": jnp.zeros(10)}}  # fmt: skip
    return JaxModel(apply, params, loss="cross_entropy", optimizer=OPTIMIZER)


async def main(job: Any) -> dict[str, Any]:
    shards, x_test, y_test = split()
    fed = FLModel(job, server=SERVER, device_list=CLIENTS, model=make_model,
                  aggregator=SecureAggregator(), strategy=FedProx(mu=0.01))  # fmt: skip
    history = await fed.fit(
        x={c: shards[c][0] for c in CLIENTS}, y={c: shards[c][1] for c in CLIENTS},
        epochs=20, local_epochs=3, batch_size=32,
        validation_data=({c: shards[c][0][:40] for c in CLIENTS}, {c: shards[c][1][:40] for c in CLIENTS}),
        callbacks=[EarlyStopping("val_loss", patience=3)],
    )  # fmt: skip
    accuracy = fed.model.evaluate(x_test, y_test)["accuracy"]
    out: dict[str, Any] = {"test_accuracy": accuracy, "rounds": len(history.rounds)}
    if job.party == SERVER:
        out["val_loss"] = history.metric("val_loss")
        out["bytes_per_round"] = [r.bytes_sent + r.bytes_received for r in history.rounds]
    return out


if __name__ == "__main__":
    # the job protocol is unused by FL (no secret sharing); semi2k with a dealer fits 5 parties
    result = mpc.simulate(main, parties=[SERVER, *CLIENTS], protocol="semi2k", dealer=SERVER, timeout=300)[SERVER]
    shards, x_test, y_test = split()
    central = make_model()
    central.fit(np.concatenate([s[0] for s in shards.values()]), np.concatenate([s[1] for s in shards.values()]),
                epochs=20, batch_size=32, seed=0, proximal_mu=0.0)  # fmt: skip
    print(f"federated (FedProx, secure aggregation): test accuracy {result['test_accuracy']:.4f} "
          f"after {result['rounds']} rounds; {result['bytes_per_round'][-1]} bytes per round at the server")
    print(f"centralised, same MLP:                   test accuracy {central.evaluate(x_test, y_test)['accuracy']:.4f}")
