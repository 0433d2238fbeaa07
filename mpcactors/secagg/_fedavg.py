"""Federated averaging (McMahan et al. 2017, "FedAvg") of a logistic regression, aggregated
through secure aggregation.

Theory of operation
-------------------
Horizontally partitioned data: every client holds its own rows (X_k, y_k) with the same
features. The server holds the global model w = [weights..., bias], public to the participants.
Each round r:

1. the server sends w_r to every client (channel ``(job, tag + "/model")``);
2. client k runs ``local_epochs`` full-batch gradient steps of L2-regularised logistic loss
   from w_r on its rows, giving w_k, and contributes the vector [n_k (w_k - w_r), n_k];
3. the vectors are summed with :func:`~mpcactors.secagg.secure_sum` (tag ``tag/round-r``) --
   or, in the insecure comparison mode, :func:`~mpcactors.secagg.plain_sum`;
4. the server sets w_{r+1} = w_r + S[:-1] / S[-1], the sample-weighted mean of the clients'
   updates (clients that dropped out of the round are simply not in S).

After the last round the server sends the final model to the clients, so every party returns
it. The server sees only the per-round sums, never one client's update.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np

from .._errors import AggregationError, ConfigError, LinkError
from .._log import get_logger
from ..link._abc import Channels
from ._runner import DEFAULT_CLIP, DEFAULT_FRAC_BITS, DEFAULT_RING_BITS, plain_sum, secure_sum

__all__ = ["FedAvgConfig", "FedAvgResult", "RoundInfo", "federated_averaging", "logistic_predict"]


@dataclasses.dataclass(frozen=True, slots=True)
class FedAvgConfig:
    """Training and aggregation settings (the same at every party).

    Attributes:
        rounds: communication rounds.
        local_epochs: full-batch gradient steps per client per round.
        learning_rate: step size of the local gradient steps.
        l2: L2 regularisation strength (not applied to the bias).
        secure: aggregate with secure aggregation; False uses the INSECURE plain sum.
        threshold: secure aggregation threshold; None means a majority of the clients (>= 2).
        clip, frac_bits, ring_bits, neighbours: secure aggregation quantisation and graph.
        stage_timeout_s: per-stage timeout of each aggregation (must cover local training).
    """

    rounds: int = 10
    local_epochs: int = 5
    learning_rate: float = 0.5
    l2: float = 0.0
    secure: bool = True
    threshold: int | None = None
    clip: float = DEFAULT_CLIP
    frac_bits: int = DEFAULT_FRAC_BITS
    ring_bits: int = DEFAULT_RING_BITS
    neighbours: int | None = None
    stage_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"must be a positive integer, not {v!r}", key=name)
        for name in ("learning_rate", "stage_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"must be positive, not {getattr(self, name)!r}", key=name)
        if not self.l2 >= 0:
            raise ConfigError(f"must be >= 0, not {self.l2!r}", key="l2")


@dataclasses.dataclass(frozen=True, slots=True)
class RoundInfo:
    """One round as the server saw it: how many rows and clients went into the average."""

    round: int
    samples: float
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class FedAvgResult:
    """The trained model ``[weights..., bias]`` (at every party) and, at the server, the rounds."""

    weights: np.ndarray
    history: tuple[RoundInfo, ...] = ()


def logistic_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(y = 1 | x) under the model ``[weights..., bias]``."""
    z = np.asarray(x, dtype=np.float64) @ weights[:-1] + weights[-1]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def local_train(
    weights: np.ndarray, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, l2: float
) -> np.ndarray:
    """Full-batch gradient descent on mean logistic loss + (l2/2) |w|^2 from ``weights``.

    grad_w = X^T (sigma(Xw + b) - y) / n + l2 w,   grad_b = mean(sigma(Xw + b) - y).
    """
    w = np.array(weights, dtype=np.float64)
    n = max(len(y), 1)
    for _ in range(epochs):
        err = logistic_predict(w, x) - y
        grad = np.empty_like(w)
        grad[:-1] = x.T @ err / n + l2 * w[:-1]
        grad[-1] = err.mean() if len(y) else 0.0
        w -= lr * grad
    return w


async def federated_averaging(
    node: Channels,
    *,
    job: str,
    server: str,
    clients: Sequence[str],
    data: tuple[np.ndarray, np.ndarray] | None,
    n_features: int,
    config: FedAvgConfig = FedAvgConfig(),
    tag: str = "fedavg",
) -> FedAvgResult:
    """Train a logistic regression with FedAvg; every party calls this (see module doc).

    Args:
        node: this party's link node.
        job: the job id (every party the same).
        server: the party holding the global model and aggregating.
        clients: the parties holding data.
        data: ``(X_k, y_k)`` at a client (X of shape (n_k, n_features), y in {0, 1}); None at
            the server.
        n_features: number of features (public).
        config: rounds, learning rate, aggregation settings.
        tag: names this training inside the job.

    Returns:
        The final model at every party; the per-round history at the server.

    Raises:
        AggregationError: a round's aggregation failed (too few clients, server gone).
        ConfigError, ShapeError: bad arguments.
    """
    log = get_logger(party=node.party, job=job, op="fedavg", tag=tag)
    if not config.secure:
        log.warning(
            "federated averaging with INSECURE plain aggregation: the server sees every update"
        )
    threshold = config.threshold if config.threshold is not None else max(2, len(clients) // 2 + 1)
    if node.party == server:
        return await _serve(node, job, server, clients, n_features, config, threshold, tag, log)
    if data is None:
        raise ConfigError(f"client {node.party!r} has no data", key="data")
    x, y = np.asarray(data[0], dtype=np.float64), np.asarray(data[1], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_features or y.shape != (x.shape[0],):
        raise ConfigError(
            f"client {node.party!r}: X must be (n, {n_features}) and y (n,), got {x.shape} and {y.shape}",
            key="data",
        )
    return await _train(node, job, server, clients, x, y, config, threshold, tag)


async def _aggregate(node: Channels, vector: Any, r: int, job: str, server: str, clients: Sequence[str],
                     cfg: FedAvgConfig, threshold: int, tag: str) -> np.ndarray | None:  # fmt: skip
    round_tag = f"{tag}/round-{r}"
    if not cfg.secure:
        return await plain_sum(node, job=job, vector=vector, server=server, clients=clients,
                               stage_timeout_s=cfg.stage_timeout_s, tag=round_tag)  # fmt: skip
    return await secure_sum(
        node, job=job, vector=vector, server=server, clients=clients, threshold=threshold,
        clip=cfg.clip, frac_bits=cfg.frac_bits, ring_bits=cfg.ring_bits, neighbours=cfg.neighbours,
        stage_timeout_s=cfg.stage_timeout_s, tag=round_tag,
    )  # fmt: skip


async def _serve(node: Channels, job: str, server: str, clients: Sequence[str], n_features: int,
                 cfg: FedAvgConfig, threshold: int, tag: str, log: Any) -> FedAvgResult:  # fmt: skip
    channels = [node.channel(c, job, f"{tag}/model") for c in clients]
    w = np.zeros(n_features + 1)
    history = []
    for r in range(cfg.rounds + 1):
        final = r == cfg.rounds
        for ch in channels:
            try:
                with anyio.fail_after(cfg.stage_timeout_s):
                    await ch.send({"round": r, "final": final, "weights": w})
            except (LinkError, TimeoutError) as exc:
                log.info(
                    "cannot send the model; the client drops out", client=ch.peer, error=repr(exc)
                )
        if final:
            break
        t0 = time.perf_counter()
        total = await _aggregate(node, None, r, job, server, clients, cfg, threshold, tag)
        if total is None or total[-1] <= 0:
            raise AggregationError(f"federated averaging round {r}: no samples were aggregated")
        w = w + total[:-1] / total[-1]
        history.append(RoundInfo(r, float(total[-1]), time.perf_counter() - t0))
        log.info("round done", round=r, samples=float(total[-1]))
    return FedAvgResult(w, tuple(history))


async def _train(node: Channels, job: str, server: str, clients: Sequence[str], x: np.ndarray,
                 y: np.ndarray, cfg: FedAvgConfig, threshold: int, tag: str) -> FedAvgResult:  # fmt: skip
    channel = node.channel(server, job, f"{tag}/model")
    wait = 2 * cfg.stage_timeout_s
    while True:
        try:
            with anyio.fail_after(wait):
                msg = await channel.receive()
        except TimeoutError:
            raise AggregationError(
                f"client {node.party!r}: no model from server {server!r} within {wait:g} s"
            ) from None
        if not isinstance(msg, dict) or not isinstance(msg.get("weights"), np.ndarray):
            raise AggregationError(
                f"client {node.party!r}: malformed model message from {server!r}"
            )
        w = np.asarray(msg["weights"], dtype=np.float64)
        if w.shape != (x.shape[1] + 1,):
            raise AggregationError(
                f"client {node.party!r}: model of shape {w.shape} from {server!r}"
            )
        if msg.get("final"):
            return FedAvgResult(w.copy())
        local = local_train(w, x, y, epochs=cfg.local_epochs, lr=cfg.learning_rate, l2=cfg.l2)
        n = float(len(y))
        update = np.concatenate([n * (local - w), [n]])
        await _aggregate(node, update, int(msg["round"]), job, server, clients, cfg, threshold, tag)
