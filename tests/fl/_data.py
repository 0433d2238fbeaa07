"""Shared data and centralised numpy references for the FL tests."""

from __future__ import annotations

from typing import Any

import numpy as np

import mpcactors as mpc

SERVER = "srv"
CLIENTS = ["c1", "c2", "c3", "c4"]


def blobs(seed: int = 0, sizes=(60, 150, 240, 90), d: int = 5, classes: int = 3,
          test: int = 600) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """Gaussian classes, uneven shards with shifted class proportions (non-IID)."""
    rng = np.random.default_rng(seed)
    centres = 1.6 * rng.normal(size=(classes, d))

    def draw(n: int, skew: int) -> tuple[np.ndarray, np.ndarray]:
        p = np.full(classes, 1.0)
        p[skew % classes] += 2.0
        y = rng.choice(classes, size=n, p=p / p.sum())
        return centres[y] + rng.normal(size=(n, d)), y

    shards = {c: draw(n, i) for i, (c, n) in enumerate(zip(CLIENTS, sizes, strict=True))}
    return shards, draw(test, 0)


def pooled(shards: dict[str, tuple[np.ndarray, np.ndarray]], clients=CLIENTS) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([shards[c][0] for c in clients]), np.concatenate([shards[c][1] for c in clients]))


def run(program: Any, parties=None, **kw: Any) -> dict[str, Any]:
    return mpc.simulate(program, parties=parties or [SERVER, *CLIENTS], protocol="semi2k",
                        dealer=SERVER, timeout=120, **kw)
