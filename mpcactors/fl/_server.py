"""The server's side of FLModel: sampling, the model broadcast, rounds, checkpoints.

See ``_model.py`` for the theory of operation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from .._errors import AggregationError, LinkError, ShapeError
from ._adapter import flatten, unflatten
from ._callbacks import Callback, History, RoundRecord
from ._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ._model import FLModel

__all__ = ["sample_clients", "serve_evaluate", "serve_fit"]


def sample_clients(alive: Sequence[str], round_: int, seed: int, fraction: float,
                   minimum: int) -> list[str]:  # fmt: skip
    """The round's clients: ``max(minimum, ceil(fraction * n))`` of ``alive``, seeded by round."""
    k = min(len(alive), max(minimum, math.ceil(fraction * len(alive))))
    if k >= len(alive):
        return sorted(alive)
    rng = np.random.default_rng([seed, round_])
    return sorted(str(c) for c in rng.choice(sorted(alive), size=k, replace=False))


async def _broadcast(fl: FLModel, tag: str, alive: list[str], messages: Mapping[str, Any]) -> None:
    """Send each client its message concurrently; unreachable clients leave ``alive``."""
    timeout = fl.aggregator.stage_timeout_s

    async def one(c: str) -> None:
        try:
            with anyio.fail_after(timeout):
                await fl.channel(c, tag).send(messages[c])
        except (LinkError, TimeoutError) as exc:
            fl._log.warning("client unreachable; left out from now on", client=c, error=repr(exc))
            alive.remove(c)

    async with anyio.create_task_group() as tg:
        for c in sorted(messages):
            tg.start_soon(one, c)


def _traffic(fl: FLModel) -> tuple[int, int]:
    stats = fl.link.statistics()
    sent = received = 0
    for c in fl.device_list:
        js = stats.jobs.get((c, fl.job_id))
        if js is not None:
            sent += js.bytes_sent
            received += js.bytes_received
    return sent, received


async def serve_fit(fl: FLModel, tag: str, epochs: int, fraction: float, minimum: int, seed: int,
                     validate: bool, callbacks: list[Callback], ckpt: Path | None,
                     resume: bool) -> History:  # fmt: skip
    log, strategy = fl._log.bind(tag=tag), fl.strategy
    w = flatten(fl.model.get_weights())
    n_w, names = len(w), [f"val_{m}" for m in fl.model.metric_names]
    history: list[RoundRecord] = []
    start, resumed_from = 0, None
    if resume and ckpt is not None and (path := latest_checkpoint(ckpt)) is not None:
        ck = load_checkpoint(path)
        if [tuple(s) for s in ck.header["shapes"]] != fl.shapes:
            raise ShapeError(f"server {fl.party!r}: checkpoint {str(path)!r} holds weights of shapes "
                             f"{ck.header['shapes']}, the model has {fl.shapes}")  # fmt: skip
        w = flatten(ck.weights)
        strategy.load_state(ck.strategy_state)
        history = [RoundRecord.from_dict(d) for d in ck.header["history"]]
        folder = ckpt
        for cb, state in zip(callbacks, ck.header.get("callbacks", []), strict=False):
            if state is not None and hasattr(cb, "load_state"):
                cb.load_state(state, lambda r: load_checkpoint(folder / f"round-{r:05d}.npz").weights)
        start = resumed_from = ck.round + 1
        log.info("resuming", round=start, checkpoint=str(path))
    alive = list(fl.device_list)
    stopped = False
    final_w = w

    def header() -> dict[str, object]:
        states = [cb.state() if hasattr(cb, "state") else None for cb in callbacks]
        return {"seed": seed, "history": [h.as_dict() for h in history], "callbacks": states}

    def complete(record: RoundRecord, weights: np.ndarray) -> bool:
        log.info("round done", round=record.round, samples=record.samples,
                 train_loss=record.train_loss, survivors=len(record.survivors), **record.metrics)  # fmt: skip
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_round_end(record, unflatten(weights, fl.shapes))) or stop
        return stop

    async def round_(r: int, train: bool) -> tuple[np.ndarray, RoundRecord | None, dict[str, float]]:
        t0, (s0, r0) = time.perf_counter(), _traffic(fl)
        sampled = sample_clients(alive, r, seed, fraction, minimum)
        need = fl.aggregator.threshold_for(len(sampled))
        if len(sampled) < need:
            raise AggregationError(f"round {r}: only {len(sampled)} clients reachable {sampled}, "
                                   f"the threshold is {need}")  # fmt: skip
        kind = "train" if train else "eval"
        sent = w.astype(fl.broadcast_dtype)
        msgs = {c: {"kind": kind, "round": r, "participants": sampled,
                    "weights": sent if c in sampled else None} for c in alive}  # fmt: skip
        await _broadcast(fl, tag, alive, msgs)
        agg = await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=None, server=fl.party,
                                            clients=sampled, tag=f"{tag}/round-{r}")  # fmt: skip
        if agg is None:  # pragma: no cover - the server always gets the sum
            raise AggregationError(f"round {r}: no aggregate at the server")
        total = agg.total
        width = (n_w + 2 if train else 0) + (len(names) + 1 if validate else 0)
        if len(total) != width:
            raise AggregationError(f"round {r}: the aggregate has {len(total)} values, expected {width}")
        metrics: dict[str, float] = {}
        if validate:
            m = total[-1]
            if m <= 0:
                raise AggregationError(f"round {r}: no validation rows were aggregated")
            metrics = {k: float(v / m) for k, v in zip(names, total[-1 - len(names) : -1], strict=True)}
        if not train:
            return w, None, metrics
        n = total[n_w]
        if n <= 0:
            raise AggregationError(f"round {r}: no samples were aggregated")
        new = strategy.apply(w, total[:n_w] / n)
        s1, r1 = _traffic(fl)
        record = RoundRecord(r, tuple(sampled), agg.survivors, float(n), float(total[n_w + 1] / n),
                             {}, s1 - s0, r1 - r0, time.perf_counter() - t0, agg.clip, agg.step)  # fmt: skip
        return new, record, metrics

    for r in range(start, epochs):
        new, record, metrics = await round_(r, train=True)
        if record is None:  # pragma: no cover - a training round always makes a record
            raise AggregationError(f"round {r}: no record")
        if validate and history and not history[-1].metrics and history[-1].round == r - 1:
            prev = history[-1] = _with_metrics(history[-1], metrics)
            if complete(prev, w):
                stopped, final_w = True, w
                break
        w = new
        history.append(record)
        if not validate and complete(record, w):
            stopped, final_w = True, w
            if ckpt is not None:
                save_checkpoint(ckpt, r, unflatten(w, fl.shapes), strategy.state(),
                                header())  # fmt: skip
            break
        if ckpt is not None:
            save_checkpoint(ckpt, r, unflatten(w, fl.shapes), strategy.state(),
                            header())  # fmt: skip
        final_w = w
    if validate and not stopped and history and not history[-1].metrics:
        _, _, metrics = await round_(epochs, train=False)
        history[-1] = _with_metrics(history[-1], metrics)
        stopped = complete(history[-1], w)
        final_w = w
    for cb in callbacks:  # EarlyStopping(restore_best=True) ends with the best round's weights
        best = getattr(cb, "best_weights", None)
        if stopped and best is not None and getattr(cb, "restore_best", False):
            final_w = flatten(best)
    await _broadcast(fl, tag, alive, {c: {"kind": "final", "round": -1, "participants": [],
                                          "weights": final_w} for c in alive})  # fmt: skip
    fl.model.set_weights(unflatten(final_w, fl.shapes))
    return History(unflatten(final_w, fl.shapes), tuple(history), stopped, resumed_from)


def _with_metrics(record: RoundRecord, metrics: Mapping[str, float]) -> RoundRecord:
    from dataclasses import replace

    return replace(record, metrics=dict(metrics))


async def serve_evaluate(fl: FLModel, tag: str) -> dict[str, float]:
    w = flatten(fl.model.get_weights())
    alive = list(fl.device_list)
    await _broadcast(fl, tag, alive, {c: {"kind": "eval", "round": 0, "participants": alive,
                                          "weights": w} for c in alive})  # fmt: skip
    names = list(fl.model.metric_names)
    agg = await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=None, server=fl.party,
                                        clients=list(alive), tag=f"{tag}/round-0")  # fmt: skip
    if agg is None or len(agg.total) != len(names) + 1 or agg.total[-1] <= 0:
        raise AggregationError(f"evaluation {tag!r}: no usable aggregate")
    result = {k: float(v / agg.total[-1]) for k, v in zip(names, agg.total[:-1], strict=True)}
    await _broadcast(fl, tag, alive, {c: {"kind": "result", "metrics": result} for c in alive})
    return result


