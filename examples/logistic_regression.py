"""SPU's headline program on secret data: logistic regression by gradient descent.

The training function is plain array code: it runs unchanged on numpy arrays (plaintext) and on
secret tensors (features at alice, labels at bob). Same data and hyperparameters as SecretFlow
SPU's benchmark (3 epochs, step 0.1, features scaled by 0.1, gradient of the summed log-loss).

    python examples/logistic_regression.py                      # simulate rep3 and semi2k, compare
    mpcactors run examples/logistic_regression.py --config configs/local3.toml --party alice
    mpcactors run examples/logistic_regression.py --config configs/local2.toml --party alice  # 2 parties, no dealer
"""

from __future__ import annotations

import os
import sys

import numpy as np

import mpcactors as mpc

ROWS = int(os.environ.get("LR_ROWS", "2000"))
COLS = int(os.environ.get("LR_COLS", "10"))


def lr_data(rows: int = ROWS, cols: int = COLS, scale: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((rows, cols))
    wt = rng.standard_normal(cols)
    y = ((x0 @ wt + 0.5 * rng.standard_normal(rows)) > 0).astype(np.float64)
    return x0 * scale, y


def train(x, y, epochs: int = 3, step: float = 0.1):
    """Gradient descent on the log-loss; x, y numpy arrays or secret tensors."""
    w = mpc.zeros(x.shape[1])
    for _ in range(epochs):
        pred = mpc.sigmoid(x @ w)
        grad = x.T @ (pred - y)  # gradient of -sum(log-likelihood)
        w = w - step * grad
    return w


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return float(np.mean((x @ w > 0) == (y > 0.5)))


async def main(job):
    """The secure program: features at alice, labels at bob; the weights revealed to all."""
    x = await job.input("alice", lambda: lr_data()[0])
    y = job.input("bob", lambda: lr_data()[1])
    return await job.reveal(train(x, y))


if __name__ == "__main__":
    x, y = lr_data()
    w_plain = train(x, y)
    print(f"plaintext float64: accuracy {accuracy(x, y, w_plain):.4f}")
    for protocol, parties, opts in (
        ("rep3", ["alice", "bob", "carol"], {}),
        ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"}),
        ("semi2k", ["alice", "bob"], {}),  # two parties, no dealer: correlations by OT
    ):
        w = mpc.simulate(main, parties=parties, protocol=protocol, **opts)["alice"]
        print(
            f"{protocol:7s} ({len(parties)} parties): accuracy {accuracy(x, y, w):.4f}, "
            f"max |w - w_plain| {np.max(np.abs(w - w_plain)):.2e}"
        )
    sys.exit(0)
