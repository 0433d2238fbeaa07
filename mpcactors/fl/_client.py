"""The client's side of FLModel: receive the model, train and evaluate locally (in a worker
thread), contribute the round vector to the aggregation.

See ``_model.py`` for the theory of operation.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from .._errors import AggregationError, ConfigError, LinkError, ShapeError
from ._adapter import ModelAdapter, flatten, unflatten
from ._callbacks import History

if TYPE_CHECKING:
    from ._model import FLModel

__all__ = ["client_evaluate", "client_loop", "client_seed", "update_vector"]


def client_seed(seed: int, round_: int, party: str) -> int:
    """The seed of ``party``'s local training in ``round_`` (independent of who else trains)."""
    return int(np.random.SeedSequence([seed, round_, zlib.crc32(party.encode())]).generate_state(1)[0])



async def _receive(fl: FLModel, tag: str) -> dict[str, Any]:
    wait = fl.wait_s()
    try:
        with anyio.fail_after(wait):
            msg = await fl.channel(fl.server, tag).receive()
    except TimeoutError:
        raise AggregationError(
            f"client {fl.party!r}: no message from server {fl.server!r} within {wait:g} s"
        ) from None
    except LinkError as exc:
        raise AggregationError(f"client {fl.party!r}: lost the server {fl.server!r}: {exc}") from exc
    if not isinstance(msg, dict) or msg.get("kind") not in ("train", "eval", "final", "result"):
        raise AggregationError(f"client {fl.party!r}: malformed message from server {fl.server!r}")
    return msg


def _load(fl: FLModel, msg: dict[str, Any]) -> np.ndarray:
    w = msg.get("weights")
    if not isinstance(w, np.ndarray) or w.ndim != 1 or w.dtype.kind != "f" or not np.all(np.isfinite(w)):
        raise AggregationError(f"client {fl.party!r}: malformed weights from server {fl.server!r}")
    if len(w) != fl.n_weights:
        raise ShapeError(
            f"client {fl.party!r}: the server {fl.server!r} sent {len(w)} weights, this party's "
            f"model has {fl.n_weights} in shapes {fl.shapes}: the parties built different models"
        )
    w = np.asarray(w, dtype=np.float64)
    fl.model.set_weights(unflatten(w, fl.shapes))
    return w


def _metric_part(fl: FLModel, val: tuple[Any, Any] | None, max_samples: int) -> list[np.ndarray]:
    if val is None:
        return []
    metrics = fl.model.evaluate(*val)
    missing = [k for k in fl.model.metric_names if k not in metrics]
    if missing:
        raise ConfigError(f"client {fl.party!r}: the model's evaluate() lacks {missing}", key="model")
    m = float(min(len(val[0]), max_samples))
    return [m * np.array([metrics[k] for k in fl.model.metric_names], dtype=np.float64), np.array([m])]


def update_vector(model: ModelAdapter, data: tuple[Any, Any], w: np.ndarray, *, epochs: int,
                  batch_size: int | None, seed: int, proximal_mu: float, clip_norm: float,
                  max_samples: int, log: Any) -> np.ndarray:  # fmt: skip
    """A client's round contribution ``[n d, n, n loss]`` from the global weights ``w`` (loaded).

    d = w_k - w is scaled to L2 norm <= ``clip_norm``; n = min(rows, ``max_samples``).
    """
    loss = model.fit(*data, epochs=epochs, batch_size=batch_size, seed=seed, proximal_mu=proximal_mu)
    delta = flatten(model.get_weights()) - w
    if len(delta) != len(w):
        raise ShapeError(f"local training changed the weight count from {len(w)} to {len(delta)}")
    if not np.all(np.isfinite(delta)) or not np.isfinite(loss):
        raise AggregationError(f"local training diverged (loss {loss!r}): a non-finite update")
    norm = float(np.linalg.norm(delta))
    if norm > clip_norm:
        log.warning("update clipped", norm=norm, clip_norm=clip_norm)
        delta *= clip_norm / norm
    n = float(len(data[0]))
    if n > max_samples:
        log.warning("sample weight capped", rows=n, max_samples=max_samples)
        n = float(max_samples)
    return np.concatenate([n * delta, [n, n * float(loss)]])


async def client_loop(fl: FLModel, tag: str, data: tuple[Any, Any], val: tuple[Any, Any] | None,
                       local_epochs: int, batch_size: int | None, seed: int,
                       dropouts: Mapping[int, Mapping[str, str]]) -> History:  # fmt: skip
    agg = fl.aggregator
    log = fl._log.bind(tag=tag)
    while True:
        msg = await _receive(fl, tag)
        if msg["kind"] == "final":
            w = _load(fl, msg)
            return History(unflatten(w, fl.shapes))
        if fl.party not in msg.get("participants", ()):
            continue
        r = int(msg["round"])
        w = _load(fl, msg)
        train = msg["kind"] == "train"

        def work(w: np.ndarray = w, r: int = r, train: bool = train) -> np.ndarray:
            parts = _metric_part(fl, val, agg.max_samples)
            if train:
                update = update_vector(fl.model, data, w, epochs=local_epochs, batch_size=batch_size,
                                       seed=client_seed(seed, r, fl.party),
                                       proximal_mu=fl.strategy.proximal_mu, clip_norm=agg.clip_norm,
                                       max_samples=agg.max_samples, log=log.bind(round=r))  # fmt: skip
                parts = [update, *parts]
            return np.concatenate(parts)

        # local work in a worker thread: the node's event loop keeps the links alive meanwhile
        vector = await anyio.to_thread.run_sync(work)
        await agg.aggregate(fl.link, job=fl.job_id, vector=vector, server=fl.server,
                            clients=list(msg["participants"]), tag=f"{tag}/round-{r}",
                            dropout_after=dropouts.get(r, {}).get(fl.party))  # fmt: skip


async def client_evaluate(fl: FLModel, tag: str, data: tuple[Any, Any]) -> dict[str, float]:
    msg = await _receive(fl, tag)
    if msg["kind"] != "eval":
        raise AggregationError(f"client {fl.party!r}: expected an evaluation request, got {msg['kind']!r}")
    _load(fl, msg)
    vector = await anyio.to_thread.run_sync(
        lambda: np.concatenate(_metric_part(fl, data, fl.aggregator.max_samples))
    )
    await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=vector, server=fl.server,
                                  clients=list(msg["participants"]), tag=f"{tag}/round-0")  # fmt: skip
    result = await _receive(fl, tag)
    metrics = result.get("metrics")
    if result["kind"] != "result" or not isinstance(metrics, dict):
        raise AggregationError(f"client {fl.party!r}: malformed evaluation result from {fl.server!r}")
    return {str(k): float(v) for k, v in metrics.items()}
