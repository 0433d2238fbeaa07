"""Round checkpoints of the global model, written by the server after every round.

One ``.npz`` file per round, ``round-00003.npz`` in the checkpoint folder: the global weights,
the strategy's state (FedAdam's moments), and a JSON header (format version, round, weight
shapes, the run's seed and the history so far). Files are written to a temporary name, flushed
and renamed, so a crash leaves the previous round's file intact; the folder is created 0700 and
files 0600 (a model can reveal training data). Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ConfigError

__all__ = ["Checkpoint", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_FORMAT = 1
_NAME = re.compile(r"^round-(\d{5,})\.npz$")


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state after round ``round``: resume continues with round ``round + 1``."""

    round: int
    weights: list[np.ndarray]
    strategy_state: dict[str, np.ndarray]
    header: dict[str, Any]


def save_checkpoint(folder: Path, round_: int, weights: list[np.ndarray],
                    strategy_state: dict[str, np.ndarray], header: dict[str, Any]) -> Path:  # fmt: skip
    """Write round ``round_``'s checkpoint atomically; returns its path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = {**header, "format": _FORMAT, "round": round_, "shapes": [list(w.shape) for w in weights]}
    arrays: dict[str, np.ndarray] = {f"w{i}": np.asarray(w) for i, w in enumerate(weights)}
    arrays.update({f"s_{k}": np.asarray(v) for k, v in strategy_state.items()})
    arrays["header"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = folder / f"round-{round_:05d}.npz"
    tmp = folder / f".round-{round_:05d}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    """The highest-round checkpoint file in ``folder`` (None when there is none)."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint; ConfigError naming the file when it is not one of ours."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            weights = [np.array(data[f"w{i}"]) for i in range(len(header["shapes"]))]
            state = {k[2:]: np.array(data[k]) for k in data.files if k.startswith("s_")}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"not a readable FL checkpoint: {exc}", file=str(path)) from exc
    if header.get("format") != _FORMAT:
        raise ConfigError(f"checkpoint format {header.get('format')!r}, expected {_FORMAT}", file=str(path))
    return Checkpoint(int(header["round"]), weights, state, header)
