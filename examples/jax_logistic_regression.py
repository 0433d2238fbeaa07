"""SPU's headline program, as its guide writes it: logistic regression in ``jax.numpy``, the
gradient by ``jax.grad``, run on secret data by ``mpcactors.jit`` (SPU: ``spu.jit``).

Features at alice, labels at bob, the weights revealed to all. The data is the guide's
(scikit-learn's bundled breast-cancer set, normalised); ``LR_ROWS=10000 LR_COLS=20`` switches to
the synthetic data of SPU's own benchmark (also used without scikit-learn).

    python examples/jax_logistic_regression.py            # plain JAX vs rep3 and semi2k
    mpcactors run examples/jax_logistic_regression.py --config configs/local3.toml --party alice
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import mpcactors as mpc

ROWS = 2000
COLS = 10


# ---- the guide's program, unchanged ------------------------------------------------------------
def sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


def loss(x, y, w):
    pred = sigmoid(jnp.dot(x, w))
    label_prob = pred * y + (1 - pred) * (1 - y)
    return -jnp.sum(jnp.log(label_prob))


def logit_regression(x, y, epochs=3, step_size=0.1):
    w = jnp.zeros(x.shape[1])
    for _ in range(epochs):
        grad = jax.grad(loss, 2)(x, y, w)
        w -= grad * step_size
    return w


# ---- data and the secure run -------------------------------------------------------------------
def normalize(x):
    return (x - np.min(x)) / (np.max(x) - np.min(x))


def load_dataset():
    """The guide's data: sklearn's breast-cancer set (bundled with scikit-learn), normalised.

    With ``LR_ROWS`` set, or without scikit-learn: synthetic ``LR_ROWS`` x ``LR_COLS`` features
    scaled by 0.1 and noisy linear labels (SPU's benchmark data).
    """
    if "LR_ROWS" not in os.environ:
        try:
            from sklearn.datasets import load_breast_cancer
        except ImportError:
            pass
        else:
            ds = load_breast_cancer()
            return normalize(ds["data"]), ds["target"].astype(dtype=np.float64)
    return synthetic(int(os.environ.get("LR_ROWS", str(ROWS))), int(os.environ.get("LR_COLS", str(COLS))))


def synthetic(rows: int, cols: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((rows, cols))
    wt = rng.standard_normal(cols)
    y = ((x0 @ wt + 0.5 * rng.standard_normal(rows)) > 0).astype(np.float64)
    return x0 * 0.1, y


def auc(y, w, x) -> float:
    """Area under the ROC curve of the scores x @ w (the guide's metric), by ranks."""
    scores = np.asarray(x) @ np.asarray(w, dtype=np.float64)
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    pos = np.asarray(y) > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


async def main(job):
    x = job.input("alice", lambda: load_dataset()[0])
    # the labels are 0/1 (checked at bob): mpcactors.jit then splits the gradient into its two
    # cases and needs no secure division (docs/JIT.md, "case-split")
    y = job.input("bob", lambda: load_dataset()[1], binary=True)
    w = await mpc.jit(logit_regression)(x, y)
    return await job.reveal(w)


async def rounds(job):
    """``main`` plus the job's critical-path rounds."""
    w = await main(job)
    return w, job.statistics().rounds


if __name__ == "__main__":
    import time

    x, y = load_dataset()
    w_plain = np.asarray(logit_regression(x, y))
    print(f"plain JAX (float32), {x.shape[0]} x {x.shape[1]}: AUC {auc(y, w_plain, x):.4f}")
    for protocol, opts in (("rep3", {}), ("semi2k", {"dealer": "carol"})):
        t0 = time.perf_counter()
        w, n = mpc.simulate(rounds, parties=["alice", "bob", "carol"], protocol=protocol, **opts)["alice"]
        print(
            f"{protocol:7s}: AUC {auc(y, w, x):.4f}, max |w - w_plain| {np.max(np.abs(w - w_plain)):.2e}, "
            f"{n} rounds, {time.perf_counter() - t0:.2f} s"
        )
