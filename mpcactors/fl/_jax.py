"""The JAX adapter: a model as ``apply_fn(params, x)`` (plain JAX, or a flax module's
``.apply``) with an optax optimiser, as :class:`~mpcactors.fl.ModelAdapter`.

Weights are the leaves of the params pytree (``jax.tree_util`` order) as float64 numpy arrays;
the tree structure stays with the adapter. Local training runs one jitted step per minibatch of
``value_and_grad(loss + mu/2 sum |p - p0|^2)`` (FedProx when mu > 0) and a fresh optimiser state
each round, so a round depends only on (weights, data, seed). Needs the ``fl-jax`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError
from ._adapter import batches, check_weights

__all__ = ["JaxModel"]


class JaxModel:
    """Adapt a JAX model.

    Args:
        apply_fn: ``(params, x) -> outputs`` (logits for classification).
        params: the initial params pytree.
        loss: "cross_entropy" (integer labels, softmax logits; metrics loss and accuracy),
            "mse" (metric mse), or ``(outputs, y) -> scalar`` (metric loss).
        optimizer: an optax ``GradientTransformation``; default ``optax.sgd(learning_rate)``.
        learning_rate: the default optimiser's step.
    """

    def __init__(self, apply_fn: Callable[[Any, Any], Any], params: Any, *,
                 loss: str | Callable[[Any, Any], Any] = "cross_entropy",
                 optimizer: Any = None, learning_rate: float = 0.1) -> None:  # fmt: skip
        import jax
        import jax.numpy as jnp
        import optax

        loss_fn: Callable[[Any, Any], Any]
        self._jax, self._jnp = jax, jnp
        if loss == "cross_entropy":
            def loss_fn(out: Any, y: Any) -> Any:  # type: ignore[misc]
                return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
            self.metric_names: tuple[str, ...] = ("loss", "accuracy")
        elif loss == "mse":
            def loss_fn(out: Any, y: Any) -> Any:  # type: ignore[misc]
                return jnp.mean((out.reshape(y.shape) - y) ** 2)
            self.metric_names = ("mse",)
        elif callable(loss):
            loss_fn = loss
            self.metric_names = ("loss",)
        else:
            raise ConfigError(f"must be 'cross_entropy', 'mse' or a function, not {loss!r}", key="loss")
        self._kind = loss if isinstance(loss, str) else "custom"
        self.apply_fn = apply_fn
        leaves, self._tree = jax.tree_util.tree_flatten(params)
        self._leaves = [np.asarray(v, dtype=np.float64) for v in leaves]
        self._dtypes = [np.asarray(v).dtype for v in leaves]
        self.optimizer = optimizer if optimizer is not None else optax.sgd(learning_rate)
        optim = self.optimizer

        def objective(p: Any, anchor: Any, mu: Any, x: Any, y: Any) -> Any:
            sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p),
                                                             jax.tree_util.tree_leaves(anchor)))  # fmt: skip
            return loss_fn(apply_fn(p, x), y) + 0.5 * mu * sq

        def step(p: Any, state: Any, anchor: Any, mu: Any, x: Any, y: Any) -> Any:
            value, grads = jax.value_and_grad(objective)(p, anchor, mu, x, y)
            updates, state = optim.update(grads, state, p)
            return optax.apply_updates(p, updates), state, value

        self._step = jax.jit(step)
        self._apply = jax.jit(apply_fn)
        self._loss = jax.jit(loss_fn)

    def _params(self) -> Any:
        leaves = [self._jnp.asarray(v, dtype=d) for v, d in zip(self._leaves, self._dtypes, strict=True)]
        return self._jax.tree_util.tree_unflatten(self._tree, leaves)

    def get_weights(self) -> list[np.ndarray]:
        return [v.copy() for v in self._leaves]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(weights, self._leaves, "set_weights")
        self._leaves = [np.array(w, dtype=np.float64) for w in weights]

    def fit(self, x: Any, y: Any, *, epochs: int, batch_size: int | None, seed: int,
            proximal_mu: float) -> float:  # fmt: skip
        jnp = self._jnp
        x, y = np.asarray(x), np.asarray(y)
        params = self._params()
        anchor, state = params, self.optimizer.init(params)
        rng, losses = np.random.default_rng(seed), []
        mu = jnp.asarray(proximal_mu, dtype=jnp.float32)
        for _ in range(epochs):
            for idx in batches(len(x), batch_size, rng):
                params, state, value = self._step(params, state, anchor, mu, x[idx], y[idx])
                losses.append(value)
        self._leaves = [np.asarray(v, dtype=np.float64) for v in self._jax.tree_util.tree_leaves(params)]
        return float(np.mean([float(v) for v in losses])) if losses else 0.0

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        x, y = np.asarray(x), np.asarray(y)
        out = self._apply(self._params(), x)
        loss = float(self._loss(out, y))
        if self._kind == "cross_entropy":
            return {"loss": loss, "accuracy": float(np.mean(np.asarray(out).argmax(axis=-1) == y))}
        return {self.metric_names[0]: loss}

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self._apply(self._params(), np.asarray(x)))
