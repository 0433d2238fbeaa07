"""FLModel against centralised numpy training and plain numpy FedProx / FedAdam references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpcactors.fl import (
    EarlyStopping,
    FedAdam,
    FedProx,
    FLModel,
    PlainAggregator,
    SecureAggregator,
    linear_regression,
    logistic_regression,
)

from ._data import CLIENTS, SERVER, blobs, pooled, run

pytestmark = pytest.mark.timeout(120)
SHARDS, (X_TEST, Y_TEST) = blobs()
X = {c: SHARDS[c][0] for c in CLIENTS}
Y = {c: SHARDS[c][1] for c in CLIENTS}
N = {c: len(SHARDS[c][1]) for c in CLIENTS}


def fit(model: Any = None, **kw: Any) -> dict[str, Any]:
    make = model or (lambda: logistic_regression(5, 3))
    options = {k: kw.pop(k) for k in ("aggregator", "strategy", "broadcast_dtype") if k in kw}

    async def main(job: Any) -> Any:
        fl = FLModel(job, server=SERVER, device_list=CLIENTS, model=make, **options)
        return await fl.fit(x=X, y=Y, **kw)

    return run(main)


def accuracy(weights: list[np.ndarray]) -> float:
    m = logistic_regression(5, 3)
    m.set_weights(weights)
    return m.evaluate(X_TEST, Y_TEST)["accuracy"]


def local_gd(w: list[np.ndarray], x: np.ndarray, y: np.ndarray, epochs: int, mu: float) -> list[np.ndarray]:
    """Plain numpy: full-batch GD on softmax cross-entropy (+ mu/2 |w - w0|^2), lr 0.5."""
    w0 = [a.copy() for a in w]
    w = [a.copy() for a in w]
    onehot = np.eye(3)[y]
    for _ in range(epochs):
        z = x @ w[0] + w[1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) / len(y)
        w[0] = w[0] - 0.5 * (x.T @ err + mu * (w[0] - w0[0]))
        w[1] = w[1] - 0.5 * (err.sum(axis=0) + mu * (w[1] - w0[1]))
    return w


def reference(rounds: int, epochs: int, mu: float = 0.0, adam: dict[str, float] | None = None,
              drop: dict[int, set[str]] | None = None) -> list[np.ndarray]:
    """Sample-weighted FedAvg / FedProx / FedAdam (Reddi et al. Alg. 2) written out in numpy."""
    w = [np.zeros((5, 3)), np.zeros(3)]
    m = v = None
    for r in range(rounds):
        members = [c for c in CLIENTS if c not in (drop or {}).get(r, set())]
        n = sum(N[c] for c in members)
        deltas = [local_gd(w, X[c], Y[c], epochs, mu) for c in members]
        delta = [sum(N[c] * (d[i] - w[i]) for c, d in zip(members, deltas)) / n for i in range(2)]
        if adam is None:
            w = [w[i] + delta[i] for i in range(2)]
            continue
        if m is None:
            m, v = [np.zeros_like(a) for a in w], [np.zeros_like(a) for a in w]
        m = [adam["b1"] * m[i] + (1 - adam["b1"]) * delta[i] for i in range(2)]
        v = [adam["b2"] * v[i] + (1 - adam["b2"]) * delta[i] ** 2 for i in range(2)]
        w = [w[i] + adam["lr"] * m[i] / (np.sqrt(v[i]) + adam["tau"]) for i in range(2)]
    return w


def close(a: list[np.ndarray], b: list[np.ndarray], tol: float) -> bool:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True)) < tol


def test_one_local_full_batch_epoch_is_centralised_gradient_descent() -> None:
    """Sample-weighted FedAvg of one full-batch step per client = one centralised step, so 6
    rounds equal 6 centralised steps (up to secure aggregation's fixed-point rounding)."""
    out = fit(epochs=6)
    central = logistic_regression(5, 3)
    central.fit(*pooled(SHARDS), epochs=6, batch_size=None, seed=0, proximal_mu=0.0)
    assert close(out[SERVER].weights, central.get_weights(), 1e-7)
    for c in CLIENTS:  # every party ends with the server's model
        assert all(np.array_equal(a, b) for a, b in zip(out[c].weights, out[SERVER].weights))
    records = out[SERVER].rounds
    assert [r.samples for r in records] == [540.0] * 6
    assert all(r.survivors == tuple(CLIENTS) and r.bytes_sent > 0 for r in records)
    assert records[0].clip == (1 << 20) * 100.0 and 0 < records[0].step <= 2.0**-20


@pytest.mark.parametrize("strategy", ["fedprox", "fedadam"])
def test_fedprox_and_fedadam_match_a_numpy_reference(strategy: str) -> None:
    if strategy == "fedprox":
        out = fit(epochs=4, local_epochs=5, strategy=FedProx(mu=0.5))
        ref = reference(4, 5, mu=0.5)
    else:
        out = fit(epochs=4, local_epochs=3, strategy=FedAdam(learning_rate=0.05, beta1=0.9, beta2=0.99, tau=1e-3))
        ref = reference(4, 3, adam={"lr": 0.05, "b1": 0.9, "b2": 0.99, "tau": 1e-3})
    assert close(out[SERVER].weights, ref, 1e-6)
    plain = reference(4, 5) if strategy == "fedprox" else reference(4, 3)
    assert not close(ref, plain, 1e-3)  # the strategy changed the result: the test can fail


@pytest.mark.parametrize("strategy", [None, FedProx(mu=0.01)], ids=["fedavg", "fedprox"])
def test_minibatch_training_reaches_centralised_accuracy(strategy: Any) -> None:
    """Stated tolerance: test accuracy within 0.03 of the same model trained on pooled data."""
    kw = {"strategy": strategy} if strategy is not None else {}
    out = fit(epochs=8, local_epochs=2, batch_size=32, **kw)
    central = logistic_regression(5, 3)
    central.fit(*pooled(SHARDS), epochs=16, batch_size=32, seed=0, proximal_mu=0.0)
    acc_c = central.evaluate(X_TEST, Y_TEST)["accuracy"]
    acc_f = accuracy(out[SERVER].weights)
    assert acc_c > 0.8
    assert abs(acc_f - acc_c) <= 0.03, (acc_f, acc_c)


def test_linear_regression_secure_equals_plain_up_to_quantisation() -> None:
    rng = np.random.default_rng(3)
    w_true = rng.normal(size=4)
    xs = {c: rng.normal(size=(n, 4)) for c, n in zip(CLIENTS, (30, 50, 70, 90))}
    ys = {c: xs[c] @ w_true + 1.5 + 0.1 * rng.normal(size=len(xs[c])) for c in CLIENTS}

    def go(aggregator: Any) -> list[np.ndarray]:
        async def main(job: Any) -> Any:
            fl = FLModel(job, server=SERVER, device_list=CLIENTS, aggregator=aggregator,
                         model=lambda: linear_regression(4, learning_rate=0.2))
            return (await fl.fit(x=xs, y=ys, epochs=30, local_epochs=2)).weights
        return run(main)[SERVER]

    secure, plain = go(SecureAggregator(threshold=3)), go(PlainAggregator())
    assert close(secure, plain, 1e-7)
    assert close(secure, [w_true, np.asarray(1.5)], 0.05)


def test_client_sampling_per_round() -> None:
    out = fit(epochs=4, fraction_fit=0.5, min_fit_clients=3, aggregator=SecureAggregator(threshold=2))
    records = out[SERVER].rounds
    assert all(len(r.sampled) == 3 and r.survivors == r.sampled for r in records)
    assert len({r.sampled for r in records}) > 1  # different clients in different rounds
    assert [r.samples for r in records] == [float(sum(N[c] for c in r.sampled)) for r in records]


def test_early_stopping_restores_the_best_round() -> None:
    """min_delta so large nothing counts as an improvement: stops after patience records."""
    stop = EarlyStopping("val_accuracy", patience=2, mode="max", min_delta=10.0)
    out = fit(epochs=10, validation_data=(X, Y), callbacks=[stop])
    h = out[SERVER]
    assert h.stopped_early and len(h.rounds) == 3 and stop.best_round == 0
    assert all("val_loss" in r.metrics and "val_accuracy" in r.metrics for r in h.rounds)
    assert close(h.weights, reference(1, 1), 1e-7)  # the model after round 0
    assert all(close(out[c].weights, h.weights, 0.0 + 1e-15) for c in CLIENTS)
    losses = h.metric("val_loss")
    assert losses[0] > losses[1] > losses[2]  # the validation metrics follow training


def test_evaluate_and_predict() -> None:
    async def main(job: Any) -> Any:
        fl = FLModel(job, server=SERVER, device_list=CLIENTS, model=lambda: logistic_regression(5, 3))
        await fl.fit(x=X, y=Y, epochs=3)
        metrics = await fl.evaluate(x=X, y=Y)
        return metrics, fl.predict(X_TEST, at="c2"), fl.model.get_weights()

    out = run(main)
    m = logistic_regression(5, 3)
    m.set_weights(out[SERVER][2])
    want = m.evaluate(*pooled(SHARDS))
    for p in [SERVER, *CLIENTS]:
        assert abs(out[p][0]["accuracy"] - want["accuracy"]) < 1e-6
        assert abs(out[p][0]["loss"] - want["loss"]) < 1e-6
    assert np.allclose(out["c2"][1], m.predict(X_TEST)) and out["c1"][1] is None


def test_float32_broadcast_halves_the_model_download() -> None:
    wide = lambda: logistic_regression(5, 3)
    f64 = fit(wide, epochs=3, aggregator=PlainAggregator())[SERVER]
    f32 = fit(wide, epochs=3, aggregator=PlainAggregator(), broadcast_dtype="float32")[SERVER]
    # 18 weights: the payload of each model message shrinks by 18 * 4 bytes per client
    assert [a.bytes_sent - b.bytes_sent for a, b in zip(f64.rounds, f32.rounds)] == [4 * 18 * 4] * 3
    assert close(f32.weights, f64.weights, 1e-5) and not close(f32.weights, f64.weights, 1e-12)
