"""The scikit-learn adapter: estimators with ``partial_fit`` (SGDClassifier, SGDRegressor,
MLPClassifier, MLPRegressor, ...) as :class:`~mpcactors.fl.ModelAdapter`.

Weights are ``[coef_, intercept_]`` (linear models) or ``coefs_ + intercepts_`` (MLPs). Classifiers report "loss" (log loss, or the 0-1 loss without
``predict_proba``) and "accuracy", regressors "mse". Local
training is ``epochs`` passes of ``partial_fit`` over shuffled minibatches. FedProx is applied as
the proximal step of mu/2 |w - w0|^2 after every minibatch, w <- w0 + (w - w0) / (1 + eta mu),
with eta the estimator's constant step (``eta0`` or ``learning_rate_init``): proximal SGD, the
same fixed point as adding mu (w - w0) to the gradient. Loading weights also resets the
estimator's step counter ``t_``, optimiser state and shuffling generator, so each round's
training depends only on (weights, data, seed), which exact resume needs (give the estimator an
integer ``random_state``). Needs the ``fl`` extra (scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError
from ._adapter import batches, check_weights

__all__ = ["SklearnModel"]


class SklearnModel:
    """Adapt a scikit-learn estimator that has ``partial_fit``.

    Args:
        estimator: e.g. ``SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.1)``.
        n_features: columns of x (the weights are made before any data is seen).
        classes: the labels, for classifiers (every party must pass the same).
    """

    def __init__(self, estimator: Any, n_features: int, classes: Sequence[Any] | None = None) -> None:
        if not hasattr(estimator, "partial_fit"):
            raise ConfigError(f"{type(estimator).__name__} has no partial_fit", key="model")
        self.estimator = estimator
        self.classes = None if classes is None else np.asarray(classes)
        self._classifier = self.classes is not None
        x0 = np.zeros((1 if self.classes is None else len(self.classes), n_features))
        y0 = np.zeros(1) if self.classes is None else self.classes
        kwargs = {"classes": self.classes} if self._classifier else {}
        estimator.partial_fit(x0, y0, **kwargs)
        self._mlp = hasattr(estimator, "coefs_")
        if not self._mlp:  # linear models start at zero, as their full fit does
            estimator.coef_ = np.zeros_like(estimator.coef_, dtype=np.float64)
            estimator.intercept_ = np.zeros_like(estimator.intercept_, dtype=np.float64)
        self._t0 = getattr(estimator, "t_", None)
        self.set_weights(self.get_weights())  # the same fresh state as every later round
        self.metric_names: tuple[str, ...] = ("loss", "accuracy") if self._classifier else ("mse",)

    def get_weights(self) -> list[np.ndarray]:
        e = self.estimator
        if self._mlp:
            return [np.array(w, dtype=np.float64) for w in [*e.coefs_, *e.intercepts_]]
        return [np.array(e.coef_, dtype=np.float64), np.array(e.intercept_, dtype=np.float64)]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(weights, self.get_weights(), "set_weights")
        e = self.estimator
        if self._mlp:
            k = len(e.coefs_)
            e.coefs_ = [np.array(w) for w in weights[:k]]
            e.intercepts_ = [np.array(w) for w in weights[k:]]
        else:
            e.coef_, e.intercept_ = np.array(weights[0]), np.array(weights[1])
        if self._t0 is not None:
            e.t_ = self._t0
        if hasattr(e, "_optimizer"):
            del e._optimizer
        if hasattr(e, "_random_state"):  # MLPs shuffle with a generator that persists between calls
            from sklearn.utils import check_random_state

            e._random_state = check_random_state(e.random_state)
        if hasattr(e, "loss_curve_"):
            e.loss_curve_ = []

    def _eta(self) -> float:
        e = self.estimator
        eta = getattr(e, "eta0", None) if not self._mlp else getattr(e, "learning_rate_init", None)
        if not eta or getattr(e, "learning_rate", "constant") != "constant":
            raise ConfigError(
                f"FedProx with {type(e).__name__} needs learning_rate='constant' and a positive "
                "step (eta0 / learning_rate_init)", key="model",
            )  # fmt: skip
        return float(eta)

    def fit(self, x: Any, y: Any, *, epochs: int, batch_size: int | None, seed: int,
            proximal_mu: float) -> float:  # fmt: skip
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        anchor = self.get_weights()
        shrink = 1.0 / (1.0 + self._eta() * proximal_mu) if proximal_mu else 1.0
        kwargs = {"classes": self.classes} if self._classifier else {}
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            for idx in batches(len(x), batch_size, rng):
                self.estimator.partial_fit(x[idx], y[idx], **kwargs)
                if proximal_mu:
                    w = self.get_weights()
                    self._assign([a + (b - a) * shrink for a, b in zip(anchor, w, strict=True)])
        return self.evaluate(x, y)[self.metric_names[0]]

    def _assign(self, weights: list[np.ndarray]) -> None:
        e = self.estimator
        if self._mlp:
            k = len(e.coefs_)
            e.coefs_, e.intercepts_ = weights[:k], weights[k:]
        else:
            e.coef_, e.intercept_ = weights[0], weights[1]

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        if not self._classifier:
            return {"mse": float(np.mean((self.estimator.predict(x) - y) ** 2))}
        accuracy = float(np.mean(self.estimator.predict(x) == y))
        if not hasattr(self.estimator, "predict_proba"):  # e.g. hinge loss: the 0-1 loss
            return {"loss": 1.0 - accuracy, "accuracy": accuracy}
        p = np.clip(self.estimator.predict_proba(x), 1e-12, 1.0)
        idx = np.searchsorted(np.asarray(self.classes), y)
        return {"loss": float(-np.mean(np.log(p[np.arange(len(y)), idx]))), "accuracy": accuracy}

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict(np.asarray(x, dtype=np.float64)))
