"""SPU's headline program, as its guide writes it: logistic regression in ``jax.numpy``, the
gradient by ``jax.grad``, run on secret data by ``mpcactors.jit`` (SPU: ``spu.jit``).

Features at alice, labels at bob, the weights revealed to all. The data is synthetic (the guide
loads sklearn's breast-cancer set; the same code runs on it): ``LR_ROWS`` x ``LR_COLS`` features
scaled by 0.1, as in SPU's own benchmark.

    python examples/jax_logistic_regression.py            # plain JAX vs rep3 and semi2k
    mpcactors run examples/jax_logistic_regression.py --config configs/local3.toml --party alice
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import mpcactors as mpc

ROWS = int(os.environ.get("LR_ROWS", "2000"))
COLS = int(os.environ.get("LR_COLS", "10"))


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
def load_dataset(rows: int | None = None, cols: int | None = None, seed: int = 0):
    rows = int(os.environ.get("LR_ROWS", str(ROWS))) if rows is None else rows
    cols = COLS if cols is None else cols
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((rows, cols))
    wt = rng.standard_normal(cols)
    y = ((x0 @ wt + 0.5 * rng.standard_normal(rows)) > 0).astype(np.float64)
    return x0 * 0.1, y


def accuracy(x, y, w) -> float:
    return float(np.mean((np.asarray(x) @ np.asarray(w) > 0) == (np.asarray(y) > 0.5)))


async def main(job):
    x = job.input("alice", lambda: load_dataset()[0])
    y = job.input("bob", lambda: load_dataset()[1])
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
    print(f"plain JAX (float32): accuracy {accuracy(x, y, w_plain):.4f}")
    for protocol, opts in (("rep3", {}), ("semi2k", {"dealer": "carol"})):
        t0 = time.perf_counter()
        w, n = mpc.simulate(rounds, parties=["alice", "bob", "carol"], protocol=protocol, **opts)["alice"]
        print(
            f"{protocol:7s}: accuracy {accuracy(x, y, w):.4f}, max |w - w_plain| {np.max(np.abs(w - w_plain)):.2e}, "
            f"{n} rounds, {time.perf_counter() - t0:.2f} s"
        )
