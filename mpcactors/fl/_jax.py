"""The JAX adapter: a model as ``apply_fn(params, x)`` (plain JAX, or a flax module's
``.apply``) with an optax optimiser, as :class:`~mpcactors.fl.ModelAdapter`.

Weights are the leaves of the params pytree (``jax.tree_util`` order) as float64 numpy arrays;
the tree structure stays with the adapter. Local training runs one jitted step per minibatch of
``value_and_grad(loss + mu/2 sum |p - p0|^2)`` (FedProx when mu > 0) and a fresh optimiser state
each round, so a round depends only on (weights, data, seed). With the built-in losses every
batch is padded to ``batch_size`` rows with zero-weight rows (and evaluation to multiples of
512), so one compilation serves every client and round; the jitted functions are shared by all
adapters with the same ``apply_fn``, loss and optimiser object (in a simulation every party
builds its own adapter). Needs the ``fl-jax`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError
from ._adapter import batches, check_weights

__all__ = ["JaxModel"]

_EVAL_CHUNK = 512
_CACHE_SIZE = 16  # compiled (apply_fn, loss, optimiser) combinations kept, oldest dropped first
_COMPILED: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _builtin_loss(kind: str) -> Callable[[Any, Any, Any], Any]:
    """Masked mean of a per-example loss: ``(outputs, y, mask) -> scalar``."""
    import jax.numpy as jnp
    import optax

    def loss(out: Any, y: Any, mask: Any) -> Any:
        if kind == "cross_entropy":
            per = optax.softmax_cross_entropy_with_integer_labels(out, y)
        else:
            per = (out.reshape(y.shape) - y) ** 2
        return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    return loss


def _compile(apply_fn: Any, loss: Any, optimizer: Any) -> tuple[Any, Any]:
    """The jitted training step and masked loss/outputs of one (apply_fn, loss, optimiser)."""
    key = (apply_fn, loss, id(optimizer))
    if key in _COMPILED:
        return _COMPILED[key]
    import jax
    import jax.numpy as jnp
    import optax

    loss_fn = _builtin_loss(loss) if isinstance(loss, str) else (lambda out, y, mask: loss(out, y))

    def objective(p: Any, anchor: Any, mu: Any, x: Any, y: Any, mask: Any) -> Any:
        pairs = zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(anchor), strict=True)
        sq = sum(jnp.sum((a - b) ** 2) for a, b in pairs)
        return loss_fn(apply_fn(p, x), y, mask) + 0.5 * mu * sq

    def step(p: Any, state: Any, anchor: Any, mu: Any, x: Any, y: Any, mask: Any) -> Any:
        value, grads = jax.value_and_grad(objective)(p, anchor, mu, x, y, mask)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    def forward(p: Any, x: Any, y: Any, mask: Any) -> Any:
        out = apply_fn(p, x)
        return out, loss_fn(out, y, mask)

    compiled = (jax.jit(step), jax.jit(forward))
    if len(_COMPILED) >= _CACHE_SIZE:
        del _COMPILED[next(iter(_COMPILED))]
    _COMPILED[key] = compiled
    return compiled


def _pad(idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``idx`` padded to ``size`` entries (repeating its first) and the 0/1 row mask."""
    mask = np.zeros(size, dtype=np.float32)
    mask[: len(idx)] = 1.0
    return np.concatenate([idx, np.full(size - len(idx), idx[0])]), mask


class JaxModel:
    """Adapt a JAX model.

    Args:
        apply_fn: ``(params, x) -> outputs`` (logits for classification).
        params: the initial params pytree.
        loss: "cross_entropy" (integer labels, softmax logits; metrics loss and accuracy),
            "mse" (metric mse), or ``(outputs, y) -> scalar`` (metric loss; no padding).
        optimizer: an optax ``GradientTransformation``; default ``optax.sgd(learning_rate)``.
        learning_rate: the default optimiser's step.
    """

    def __init__(self, apply_fn: Callable[[Any, Any], Any], params: Any, *,
                 loss: str | Callable[[Any, Any], Any] = "cross_entropy",
                 optimizer: Any = None, learning_rate: float = 0.1) -> None:  # fmt: skip
        import jax
        import optax

        if isinstance(loss, str) and loss not in ("cross_entropy", "mse"):
            raise ConfigError(f"must be 'cross_entropy', 'mse' or a function, not {loss!r}", key="loss")
        if not isinstance(loss, str) and not callable(loss):
            raise ConfigError(f"must be 'cross_entropy', 'mse' or a function, not {loss!r}", key="loss")
        self._jax = jax
        self._kind = loss if isinstance(loss, str) else "custom"
        self.metric_names: tuple[str, ...] = {"cross_entropy": ("loss", "accuracy"),
                                              "mse": ("mse",)}.get(self._kind, ("loss",))  # fmt: skip
        self.apply_fn = apply_fn
        leaves, self._tree = jax.tree_util.tree_flatten(params)
        self._leaves = [np.asarray(v, dtype=np.float64) for v in leaves]
        self._dtypes = [np.asarray(v).dtype for v in leaves]
        self.optimizer = optimizer if optimizer is not None else optax.sgd(learning_rate)
        self._step, self._forward = _compile(apply_fn, loss, self.optimizer)

    def _params(self) -> Any:
        jnp = self._jax.numpy
        leaves = [jnp.asarray(v, dtype=d) for v, d in zip(self._leaves, self._dtypes, strict=True)]
        return self._jax.tree_util.tree_unflatten(self._tree, leaves)

    def get_weights(self) -> list[np.ndarray]:
        return [v.copy() for v in self._leaves]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(weights, self._leaves, "set_weights")
        self._leaves = [np.array(w, dtype=np.float64) for w in weights]

    def fit(self, x: Any, y: Any, *, epochs: int, batch_size: int | None, seed: int,
            proximal_mu: float) -> float:  # fmt: skip
        x, y = np.asarray(x), np.asarray(y)
        params = self._params()
        anchor, state = params, self.optimizer.init(params)
        rng, losses = np.random.default_rng(seed), []
        mu = np.float32(proximal_mu)
        size = min(batch_size or len(x), len(x))
        for _ in range(epochs):
            for idx in batches(len(x), batch_size, rng):
                if self._kind == "custom":
                    mask = np.ones(len(idx), dtype=np.float32)
                else:
                    idx, mask = _pad(idx, size)
                params, state, value = self._step(params, state, anchor, mu, x[idx], y[idx], mask)
                losses.append(value)
        self._leaves = [np.asarray(v, dtype=np.float64) for v in self._jax.tree_util.tree_leaves(params)]
        return float(np.mean([float(v) for v in losses])) if losses else 0.0

    def _outputs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        if self._kind == "custom":
            out, loss = self._forward(self._params(), x, y, np.ones(len(x), dtype=np.float32))
            return np.asarray(out), float(loss)
        params, outs, total = self._params(), [], 0.0
        for at in range(0, len(x), _EVAL_CHUNK):
            idx, mask = _pad(np.arange(at, min(at + _EVAL_CHUNK, len(x))), _EVAL_CHUNK)
            out, loss = self._forward(params, x[idx], y[idx], mask)
            outs.append(np.asarray(out)[: int(mask.sum())])
            total += float(loss) * float(mask.sum())
        return np.concatenate(outs), total / max(len(x), 1)

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        out, loss = self._outputs(np.asarray(x), np.asarray(y))
        if self._kind == "cross_entropy":
            return {"loss": loss, "accuracy": float(np.mean(out.argmax(axis=-1) == np.asarray(y)))}
        return {self.metric_names[0]: loss}

    def predict(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        dummy = np.zeros(len(x), dtype=np.int32 if self._kind == "cross_entropy" else np.float32)
        return self._outputs(x, dummy)[0]
