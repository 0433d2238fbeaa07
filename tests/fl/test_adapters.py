"""The scikit-learn and JAX adapters: federated training reaches the accuracy of the same model
trained on the pooled data (fixed seeds), for FedAvg and FedProx."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from mpcactors.fl import FedProx, FLModel, JaxModel, SklearnModel

from ._data import CLIENTS, SERVER, blobs, pooled, run

pytestmark = pytest.mark.timeout(120)
TOL = 0.03  # stated tolerance: federated test accuracy within 0.03 of centralised


def sgd() -> SklearnModel:
    est = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.05, alpha=1e-4,
                        random_state=0)  # fmt: skip
    return SklearnModel(est, n_features=5, classes=[0, 1, 2])


def federate(make: Any, x: dict[str, Any], y: dict[str, Any], **kw: Any) -> Any:
    strategy = kw.pop("strategy", None)

    async def main(job: Any) -> Any:
        fl = FLModel(job, server=SERVER, device_list=CLIENTS, model=make, strategy=strategy)
        return await fl.fit(x=x, y=y, **kw)

    return run(main)


@pytest.mark.parametrize("strategy", [None, FedProx(mu=0.1)], ids=["fedavg", "fedprox"])
def test_sklearn_sgd_classifier(strategy: Any) -> None:
    shards, (xt, yt) = blobs(1)
    out = federate(sgd, {c: s[0] for c, s in shards.items()}, {c: s[1] for c, s in shards.items()},
                   epochs=6, local_epochs=1, batch_size=20, strategy=strategy)  # fmt: skip
    fed = sgd()
    fed.set_weights(out[SERVER].weights)
    central = sgd()
    central.fit(*pooled(shards), epochs=6, batch_size=20, seed=0, proximal_mu=0.0)
    acc_f, acc_c = fed.evaluate(xt, yt)["accuracy"], central.evaluate(xt, yt)["accuracy"]
    assert acc_c > 0.8 and abs(acc_f - acc_c) <= TOL, (acc_f, acc_c)
    assert all(np.array_equal(a, b) for a, b in zip(out["c1"].weights, out[SERVER].weights, strict=True))


def test_sklearn_fedprox_pulls_towards_the_global_model() -> None:
    """The proximal step: with a huge mu the local model barely leaves w0."""
    shards, _ = blobs(1)
    x, y = shards["c3"]
    free, prox = sgd(), sgd()
    free.fit(x, y, epochs=2, batch_size=20, seed=0, proximal_mu=0.0)
    prox.fit(x, y, epochs=2, batch_size=20, seed=0, proximal_mu=1e4)
    assert np.linalg.norm(prox.get_weights()[0]) < 0.01 * np.linalg.norm(free.get_weights()[0])


def digits_split() -> tuple[dict[str, Any], dict[str, Any], np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: 4 clients, non-IID (each mostly holds 3 of the 10 digits)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    test, train = order[:400], order[400:]
    xs: dict[str, Any] = {}
    ys: dict[str, Any] = {}
    owner = np.where(rng.uniform(size=len(train)) < 0.7, (y[train] * 4) // 10,
                     rng.integers(0, 4, size=len(train)))  # fmt: skip
    for k, c in enumerate(CLIENTS):
        idx = train[owner == k]
        xs[c], ys[c] = x[idx], y[idx]
    return xs, ys, x[test], y[test]


def _apply(p: Any, x: Any) -> Any:
    import jax

    h = jax.nn.relu(x @ p["h"]["w"] + p["h"]["b"])
    return h @ p["o"]["w"] + p["o"]["b"]


_SGD: list[Any] = []  # one optimiser object: adapters sharing it share compiled steps


def mlp() -> JaxModel:
    import jax
    import jax.numpy as jnp
    import optax

    if not _SGD:
        _SGD.append(optax.sgd(0.2))
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {"h": {"w": jax.random.normal(k1, (64, 32)) * 0.15, "b": jnp.zeros(32)},
              "o": {"w": jax.random.normal(k2, (32, 10)) * 0.15, "b": jnp.zeros(10)}}  # fmt: skip
    return JaxModel(_apply, params, loss="cross_entropy", optimizer=_SGD[0])


@pytest.mark.parametrize("strategy", [None, FedProx(mu=0.01)], ids=["fedavg", "fedprox"])
def test_jax_mlp_on_non_iid_digits(strategy: Any) -> None:
    xs, ys, xt, yt = digits_split()
    out = federate(mlp, xs, ys, epochs=10, local_epochs=3, batch_size=64, strategy=strategy)
    fed = mlp()
    fed.set_weights(out[SERVER].weights)
    central = mlp()
    central.fit(np.concatenate(list(xs.values())), np.concatenate(list(ys.values())), epochs=10,
                batch_size=64, seed=0, proximal_mu=0.0)  # fmt: skip
    acc_f, acc_c = fed.evaluate(xt, yt)["accuracy"], central.evaluate(xt, yt)["accuracy"]
    print("digits MLP accuracy: federated", acc_f, "centralised", acc_c)
    assert acc_c > 0.9 and abs(acc_f - acc_c) <= TOL, (acc_f, acc_c)


def sklearn_mlp() -> SklearnModel:
    from sklearn.neural_network import MLPClassifier

    est = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="constant",
                        learning_rate_init=0.05, random_state=0)  # fmt: skip
    return SklearnModel(est, n_features=5, classes=[0, 1, 2])


@pytest.mark.parametrize("make", [sgd, sklearn_mlp, mlp], ids=["sgd", "sklearn-mlp", "jax-mlp"])
def test_a_round_depends_only_on_weights_data_and_seed(make: Any) -> None:
    """What exact resume rests on: the same weights, rows and seed give the same local model,
    in a fresh adapter or after other training; another seed gives another one."""
    if make is mlp:
        xs, ys, _, _ = digits_split()
        x, y = xs["c1"], ys["c1"]
    else:
        x, y = blobs(2)[0]["c2"]
    first = make()
    w0 = first.get_weights()

    def local(model: Any, seed: int) -> list[np.ndarray]:
        model.set_weights(w0)
        model.fit(x, y, epochs=2, batch_size=16, seed=seed, proximal_mu=0.1)
        return model.get_weights()

    a = local(first, 3)
    b = local(first, 3)
    c = local(make(), 3)
    d = local(first, 4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, d, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, w0, strict=True))
