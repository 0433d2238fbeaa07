"""Vertically partitioned logistic regression: features split by COLUMN across parties.

alice holds 6 features of every customer, bob holds 4 other features of the same customers
(rows already aligned, e.g. by a PSI job), carol holds the labels (with two parties, bob does). Nobody may see the others'
columns, so federated averaging does not apply (no party can train alone); the model is trained
on secret shares (rep3) with the ordinary array code, and only the weights are revealed.

When to use which: split by COLUMNS -> this (secret-shared compute; costs rounds and bytes per
step). Split by ROWS -> federated averaging with secure aggregation
(examples/federated_logreg.py; cheaper, one masked vector per client per round).

    python examples/vertical_logreg.py
    mpcactors run examples/vertical_logreg.py --config configs/local3.toml --party alice
    mpcactors run examples/vertical_logreg.py --config configs/local2.toml --party alice  # 2 parties
"""

from __future__ import annotations

import numpy as np

import mpcactors as mpc

ROWS = 1500


def full_data(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    x = rng.standard_normal((rows, 10))
    w = rng.standard_normal(10)
    y = (x @ w + 0.5 * rng.standard_normal(rows) > 0).astype(np.float64)
    return x * 0.5, y


def train(x, y, epochs: int = 8, step: float = 1.0):
    """Mean-gradient descent with a bias; numpy arrays or secret tensors alike."""
    n, d = x.shape
    w = mpc.zeros(d)
    b = 0.0
    for _ in range(epochs):
        err = mpc.sigmoid(x @ w + b) - y
        w = w - (step / n) * (x.T @ err)
        b = b - step * err.mean()
    return w, b


async def main(job):
    xa = job.input("alice", lambda: full_data()[0][:, :6])
    xb = job.input("bob", lambda: full_data()[0][:, 6:])
    y = job.input(job.parties[-1], lambda: full_data()[1])  # carol, or bob with two parties
    x = await np.concatenate([xa, xb], axis=1)  # the joint table exists only as shares
    w, b = train(x, y)
    return await job.reveal({"w": w, "b": b})


def accuracy(w: np.ndarray, b: float) -> float:
    x, y = full_data()
    return float(np.mean(((x @ w + b) > 0) == (y > 0.5)))


if __name__ == "__main__":
    x, y = full_data()
    w_plain, b_plain = train(x, y)
    print(f"plaintext: accuracy {accuracy(w_plain, b_plain):.4f}")
    for protocol, parties in (("rep3", ["alice", "bob", "carol"]), ("semi2k", ["alice", "bob"])):
        # semi2k with two parties and no dealer: the two make their own correlations by OT
        out = mpc.simulate(main, parties=parties, protocol=protocol)["alice"]
        print(
            f"{protocol:7s} ({len(parties)} parties): accuracy {accuracy(out['w'], float(out['b'])):.4f}, "
            f"max |dw| {np.max(np.abs(out['w'] - w_plain)):.1e}"
        )
