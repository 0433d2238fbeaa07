"""Pytrees in secure aggregation: a client's nested dicts/lists/tuples of arrays travel as one
flat float vector; the structure goes to the server once, on its own channel, before the masked
stages, so the server (which may pass no vector) returns the sum in the clients' structure.

The structure is public (as a vector's length is); the server checks that every client that sent
one sent the same.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import AggregationError, ShapeError
from .._pytree import TreeDef, flatten, leaf_paths, unflatten

__all__ = ["flatten_vector", "structure_of", "unflatten_sum"]


def flatten_vector(vector: Any, who: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``vector``'s leaves as one float64 vector, and its structure (msgpack-able).

    Raises:
        AggregationError: a leaf is not numeric (names its path).
    """
    leaves, treedef = flatten(vector)
    parts, shapes = [], []
    for leaf, path in zip(leaves, leaf_paths(treedef), strict=True):
        arr = np.asarray(leaf)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            where = f" leaf {path}" if path else ""
            raise AggregationError(f"{who}{where} is {type(leaf).__name__}, not a number or numeric array")
        parts.append(arr.astype(np.float64).reshape(-1))
        shapes.append([int(d) for d in arr.shape])
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return flat, {"tree": treedef.to_wire(), "shapes": shapes}


def structure_of(msg: Any, client: str) -> tuple[TreeDef, list[tuple[int, ...]]]:
    """A client's structure message, checked.

    Raises:
        AggregationError: malformed.
    """
    try:
        if not isinstance(msg, dict) or not isinstance(msg.get("shapes"), list):
            raise ShapeError("not a structure message")
        treedef = TreeDef.from_wire(msg.get("tree"))
        shapes = msg["shapes"]
        if len(shapes) != treedef.num_leaves or not all(
            isinstance(s, list) and len(s) <= 32 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
            for s in shapes
        ):
            raise ShapeError(f"{len(shapes)} shapes for {treedef.num_leaves} leaves")
    except ShapeError as exc:
        raise AggregationError(f"client {client!r} sent a malformed vector structure: {exc}") from None
    return treedef, [tuple(s) for s in shapes]


def unflatten_sum(total: np.ndarray, structures: dict[str, Any]) -> Any:
    """The flat sum in the clients' structure (they must all agree).

    Raises:
        AggregationError: clients sent different structures, or one that does not fit the sum.
    """
    checked = {c: structure_of(m, c) for c, m in sorted(structures.items())}
    first, (treedef, shapes) = next(iter(checked.items()))
    for client, (td, sh) in checked.items():
        if td.to_wire() != treedef.to_wire() or sh != shapes:
            raise AggregationError(f"clients {first!r} and {client!r} passed vectors of different structures")
    sizes = [math.prod(s) for s in shapes]
    if sum(sizes) != total.size:
        raise AggregationError(f"the clients' structure holds {sum(sizes)} values, the sum {total.size}")
    leaves, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        leaves.append(total[start : start + size].reshape(shape))
        start += size
    return unflatten(treedef, leaves)
