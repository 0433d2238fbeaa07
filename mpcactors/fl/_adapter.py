"""The model adapter protocol, and the numpy adapter.

Theory of operation
-------------------
The federated trainer never looks inside a model. It needs five things, the
:class:`ModelAdapter` protocol:

- ``get_weights()`` / ``set_weights(ws)``: the trainable state as a list of numpy arrays (the
  order and shapes fixed for the model's life);
- ``fit(x, y, epochs=, batch_size=, seed=, proximal_mu=)``: local training from the current
  weights; with ``proximal_mu > 0`` the objective gains mu/2 |w - w0|^2 where w0 are the weights
  at the call (FedProx). ``seed`` fixes the batch order, so a round is a function of (weights,
  data, seed) -- what makes checkpoint/resume exact. Returns the mean training loss;
- ``evaluate(x, y)``: a dict of float metrics with the keys ``metric_names``;
- ``predict(x)``.

:class:`NumpyModel` adapts a model given as plain numpy functions (loss and gradient, predict)
trained by minibatch SGD; :func:`linear_regression` and :func:`logistic_regression` build the
usual ones. Adapters for scikit-learn (``_sklearn.py``) and JAX (``_jax.py``) follow the same
protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._errors import ConfigError, ShapeError

__all__ = [
    "ModelAdapter",
    "NumpyModel",
    "batches",
    "check_weights",
    "flatten",
    "linear_regression",
    "logistic_regression",
    "unflatten",
]

Weights = list[np.ndarray]


@runtime_checkable
class ModelAdapter(Protocol):
    """What the federated trainer needs from a model (see module doc)."""

    metric_names: tuple[str, ...]

    def get_weights(self) -> Weights: ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None: ...

    def fit(
        self, x: Any, y: Any, *, epochs: int, batch_size: int | None, seed: int, proximal_mu: float
    ) -> float: ...

    def evaluate(self, x: Any, y: Any) -> dict[str, float]: ...

    def predict(self, x: Any) -> np.ndarray: ...


def flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    """One float64 vector of every array, in order."""
    if not weights:
        return np.zeros(0)
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def unflatten(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> Weights:
    """The arrays of ``shapes`` from a flat vector (the inverse of :func:`flatten`)."""
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(np.asarray(flat[at : at + size], dtype=np.float64).reshape(shape))
        at += size
    if at != len(flat):
        raise ShapeError(f"a flat vector of {len(flat)} values does not fit shapes {list(shapes)}")
    return out


def check_weights(new: Sequence[np.ndarray], old: Sequence[np.ndarray], who: str) -> None:
    """Raise ShapeError naming ``who`` unless ``new`` has the shapes of ``old``."""
    got = [tuple(np.shape(w)) for w in new]
    want = [tuple(np.shape(w)) for w in old]
    if got != want:
        raise ShapeError(f"{who}: weights of shapes {got}, the model has {want}")


def batches(n: int, batch_size: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    """Index batches of one shuffled epoch (one full batch when ``batch_size`` is None)."""
    if batch_size is None or batch_size >= n:
        return [np.arange(n)]
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


LossGrad = Callable[[Weights, np.ndarray, np.ndarray], tuple[float, Weights]]
Predict = Callable[[Weights, np.ndarray], np.ndarray]
Metrics = Callable[[Weights, np.ndarray, np.ndarray], dict[str, float]]


class NumpyModel:
    """A model as numpy functions, trained by minibatch SGD (optionally FedProx).

    Args:
        weights: the initial weights (copied).
        loss_and_grad: ``(weights, x, y) -> (mean loss, gradient per array)``.
        predict: ``(weights, x) -> predictions``.
        learning_rate: SGD step.
        metrics: ``(weights, x, y) -> {name: value}``; default: ``{"loss": mean loss}``.
        metric_names: the keys ``metrics`` returns (default ``("loss",)``).
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        loss_and_grad: LossGrad,
        predict: Predict,
        *,
        learning_rate: float = 0.1,
        metrics: Metrics | None = None,
        metric_names: tuple[str, ...] = ("loss",),
    ) -> None:
        if not learning_rate > 0:
            raise ConfigError(f"must be positive, not {learning_rate!r}", key="learning_rate")
        self._w = [np.array(w, dtype=np.float64) for w in weights]
        self._loss_and_grad = loss_and_grad
        self._predict = predict
        self.learning_rate = float(learning_rate)
        self._metrics = metrics
        self.metric_names = tuple(metric_names)

    def get_weights(self) -> Weights:
        return [w.copy() for w in self._w]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(weights, self._w, "set_weights")
        self._w = [np.array(w, dtype=np.float64) for w in weights]

    def fit(
        self, x: Any, y: Any, *, epochs: int, batch_size: int | None, seed: int, proximal_mu: float
    ) -> float:
        """SGD on the mean loss (+ mu/2 |w - w0|^2); returns the mean batch loss."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        anchor = [w.copy() for w in self._w]
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(epochs):
            for idx in batches(len(x), batch_size, rng):
                loss, grads = self._loss_and_grad(self._w, x[idx], y[idx])
                for w, g, w0 in zip(self._w, grads, anchor, strict=True):
                    step = np.asarray(g, dtype=np.float64)
                    if proximal_mu:
                        step = step + proximal_mu * (w - w0)
                    w -= self.learning_rate * step
                losses.append(float(loss))
        return float(np.mean(losses)) if losses else 0.0

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        if self._metrics is not None:
            return {k: float(v) for k, v in self._metrics(self._w, x, y).items()}
        return {"loss": float(self._loss_and_grad(self._w, x, y)[0])}

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self._predict(self._w, np.asarray(x, dtype=np.float64)))


def linear_regression(n_features: int, *, learning_rate: float = 0.1) -> NumpyModel:
    """Least squares y ~ x W + b (mean squared error / 2), weights [W (d,), b ()]; metric "mse"."""

    def loss_and_grad(w: Weights, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        err = x @ w[0] + w[1] - y
        return float(np.mean(err**2) / 2), [x.T @ err / len(y), np.asarray(err.mean())]

    def predict(w: Weights, x: np.ndarray) -> np.ndarray:
        return x @ w[0] + w[1]

    def metrics(w: Weights, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"mse": float(np.mean((predict(w, x) - y) ** 2))}

    return NumpyModel([np.zeros(n_features), np.zeros(())], loss_and_grad, predict,
                      learning_rate=learning_rate, metrics=metrics, metric_names=("mse",))  # fmt: skip


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logistic_regression(
    n_features: int, n_classes: int = 2, *, learning_rate: float = 0.5, l2: float = 0.0
) -> NumpyModel:
    """Multinomial logistic regression (softmax, cross-entropy + l2/2 |W|^2), labels 0..C-1.

    Weights [W (d, C), b (C,)]; metrics "loss" (cross-entropy) and "accuracy".
    """
    if n_classes < 2:
        raise ConfigError(f"must be >= 2, not {n_classes!r}", key="n_classes")

    def onehot(y: np.ndarray) -> np.ndarray:
        yi = np.asarray(y).astype(np.int64)
        if yi.size and (yi.min() < 0 or yi.max() >= n_classes):
            raise ShapeError(f"labels must be in [0, {n_classes}), got {yi.min()}..{yi.max()}")
        return np.eye(n_classes)[yi]

    def loss_and_grad(w: Weights, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        p, t = _softmax(x @ w[0] + w[1]), onehot(y)
        loss = -np.mean(np.sum(t * np.log(np.clip(p, 1e-12, 1)), axis=1))
        err = (p - t) / len(y)
        return float(loss + l2 / 2 * np.sum(w[0] ** 2)), [x.T @ err + l2 * w[0], err.sum(axis=0)]

    def predict(w: Weights, x: np.ndarray) -> np.ndarray:
        return _softmax(x @ w[0] + w[1])

    def metrics(w: Weights, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p = predict(w, x)
        t = onehot(y)
        loss = -np.mean(np.sum(t * np.log(np.clip(p, 1e-12, 1)), axis=1))
        return {"loss": float(loss), "accuracy": float(np.mean(p.argmax(axis=1) == t.argmax(axis=1)))}

    return NumpyModel([np.zeros((n_features, n_classes)), np.zeros(n_classes)], loss_and_grad,
                      predict, learning_rate=learning_rate, metrics=metrics,
                      metric_names=("loss", "accuracy"))  # fmt: skip
