"""A small MLP in JAX (``jax.nn.relu``, softmax cross-entropy) trained by ``jax.grad`` on secret
data through ``mpcactors.jit``: features at alice, one-hot labels at bob, the trained parameters
revealed to all. The same ``train`` runs in plain JAX for comparison.

    python examples/jax_mlp.py                       # plain JAX vs rep3 and semi2k
    mpcactors run examples/jax_mlp.py --config configs/local3.toml --party alice   (bob, carol)
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import mpcactors as mpc

ROWS = int(os.environ.get("MLP_ROWS", "120"))
STEPS = int(os.environ.get("MLP_STEPS", "5"))
INPUTS, HIDDEN, CLASSES = 4, 8, 3


def init_params(seed: int = 1):
    """Public initial parameters (every party makes the same)."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.5, (INPUTS, HIDDEN)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": rng.normal(0, 0.5, (HIDDEN, CLASSES)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }


def predict(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss(params, x, y):
    """Softmax cross-entropy of one-hot labels ``y``."""
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(predict(params, x)) * y, axis=-1))


def train(params, x, y, steps=STEPS, lr=0.5):
    for _ in range(steps):
        grads = jax.grad(loss)(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    return params


def load_dataset(rows: int = ROWS, seed: int = 0):
    """Three Gaussian blobs in 4-d; labels one-hot."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (CLASSES, INPUTS))
    labels = rng.integers(0, CLASSES, rows)
    x = centers[labels] + rng.normal(0, 0.7, (rows, INPUTS))
    return x, np.eye(CLASSES)[labels]


def accuracy(params, x, y) -> float:
    logits = np.asarray(predict({k: np.asarray(v) for k, v in params.items()}, np.asarray(x, np.float32)))
    return float(np.mean(np.argmax(logits, 1) == np.argmax(y, 1)))


async def main(job):
    x = job.input("alice", lambda: load_dataset()[0])
    y = job.input("bob", lambda: load_dataset()[1], binary=True)  # one-hot classes
    params = await mpc.jit(train)(init_params(), x, y)
    return await job.reveal(params)


if __name__ == "__main__":
    import time

    x, y = load_dataset()
    plain = train(init_params(), x, y)
    print(f"plain JAX: accuracy {accuracy(plain, x, y):.4f}, loss {float(loss(plain, x, y)):.4f}")
    for protocol, opts in (("rep3", {}), ("semi2k", {"dealer": "carol"})):
        t0 = time.perf_counter()
        got = mpc.simulate(main, parties=["alice", "bob", "carol"], protocol=protocol, **opts)["alice"]
        diff = max(float(np.max(np.abs(got[k] - np.asarray(plain[k])))) for k in plain)
        print(
            f"{protocol:7s}: accuracy {accuracy(got, x, y):.4f}, loss {float(loss(got, x, y)):.4f}, "
            f"max |param - plain| {diff:.2e}, {time.perf_counter() - t0:.2f} s"
        )
