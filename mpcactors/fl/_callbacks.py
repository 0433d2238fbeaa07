"""Per-round records, the training history, and callbacks (early stopping).

A :class:`RoundRecord` is what the server knows about one round: who was sampled and who made
it into the sum, the weighted mean training loss, the validation metrics of the model the round
produced (when clients hold validation data), bytes and seconds. Callbacks run at the server
after each record is complete; one that returns True stops training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .._errors import ConfigError

__all__ = ["Callback", "EarlyStopping", "History", "RoundRecord"]


@dataclasses.dataclass(frozen=True, slots=True)
class RoundRecord:
    """One round at the server.

    Attributes:
        round: the round index (0-based).
        sampled: the clients asked to train.
        survivors: the clients whose update is in the aggregate.
        samples: the sum of the survivors' sample weights.
        train_loss: sample-weighted mean local training loss.
        metrics: validation metrics of the model after this round (``val_<name>``), weighted by
            the clients' validation rows; empty without validation data.
        bytes_sent, bytes_received: the server's traffic in the round (payload bytes).
        seconds: wall time of the round at the server.
        clip, step: the secure aggregation's quantisation range and step (0 when plain).
    """

    round: int
    sampled: tuple[str, ...]
    survivors: tuple[str, ...]
    samples: float
    train_loss: float
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    clip: float = 0.0
    step: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sampled"], out["survivors"] = list(self.sampled), list(self.survivors)
        out["metrics"] = dict(self.metrics)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundRecord:
        return cls(**{**d, "sampled": tuple(d["sampled"]), "survivors": tuple(d["survivors"]),
                      "metrics": dict(d["metrics"])})  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """What ``fit`` returns: the final weights at every party; the rounds at the server.

    Attributes:
        weights: the final global weights (a list of arrays, as the adapter's).
        rounds: the per-round records (the server only; empty at clients).
        stopped_early: a callback stopped training.
        resumed_from: the round a resumed run started at (None when it started fresh).
    """

    weights: list[np.ndarray]
    rounds: tuple[RoundRecord, ...] = ()
    stopped_early: bool = False
    resumed_from: int | None = None

    def metric(self, name: str) -> list[float]:
        """One metric over the rounds: "train_loss", "samples" or a ``val_*`` key."""
        if name in ("train_loss", "samples", "seconds", "bytes_sent", "bytes_received"):
            return [float(getattr(r, name)) for r in self.rounds]
        return [float(r.metrics.get(name, math.nan)) for r in self.rounds]


class Callback(Protocol):
    """Called at the server after each complete round record; return True to stop.

    A callback may also have ``state() -> dict`` (JSON values) and ``load_state(state,
    weights_of_round)``: its state then goes into every round checkpoint and comes back on
    resume (as :class:`EarlyStopping` does).
    """

    def on_round_end(self, record: RoundRecord, weights: Sequence[np.ndarray]) -> bool: ...


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` rounds.

    Args:
        monitor: a record metric: "train_loss" or ``val_<metric>`` (e.g. "val_loss").
        patience: rounds without improvement before stopping.
        min_delta: the least change that counts as an improvement.
        mode: "min" (losses) or "max" (accuracy).
        restore_best: end with the best round's weights instead of the last ones.
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 2, min_delta: float = 0.0,
                 mode: str = "min", restore_best: bool = True) -> None:  # fmt: skip
        if mode not in ("min", "max"):
            raise ConfigError(f"must be 'min' or 'max', not {mode!r}", key="mode")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"must be a positive integer, not {patience!r}", key="patience")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode, self.restore_best = mode, restore_best
        self.best: float | None = None
        self.best_round: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self._wait = 0

    def _value(self, record: RoundRecord) -> float:
        if self.monitor == "train_loss":
            return record.train_loss
        if self.monitor not in record.metrics:
            raise ConfigError(
                f"EarlyStopping monitors {self.monitor!r}, but round {record.round} has "
                f"{['train_loss', *sorted(record.metrics)]} (validation_data gives val_*)",
                key="monitor",
            )
        return float(record.metrics[self.monitor])

    def state(self) -> dict[str, Any]:
        """What a round checkpoint keeps (the best weights are that round's checkpoint)."""
        return {"best": self.best, "best_round": self.best_round, "wait": self._wait}

    def load_state(self, state: Mapping[str, Any], weights_of_round: Any) -> None:
        """Restore :meth:`state`; ``weights_of_round(r)`` reads round r's checkpointed weights."""
        self.best, self.best_round, self._wait = state["best"], state["best_round"], int(state["wait"])
        self.best_weights = None if self.best_round is None else weights_of_round(self.best_round)

    def on_round_end(self, record: RoundRecord, weights: Sequence[np.ndarray]) -> bool:
        value = self._value(record)
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.best_round, self._wait = value, record.round, 0
            self.best_weights = [np.array(w) for w in weights]
            return False
        self._wait += 1
        return self._wait >= self.patience
