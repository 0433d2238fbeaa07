"""Pytrees: nested dicts, lists and tuples of leaves, the shape of every value a program passes.

Theory of operation
-------------------
One set of rules for every boundary (``job.input``, ``job.reveal``, ``job.secure_sum``, program
results, ``mpcactors.jit``), the same as JAX's for the built-in containers:

- ``dict``, ``list`` and ``tuple`` (named tuples included) are containers; ``None`` is an empty
  container (it holds no leaf and comes back as ``None``); everything else is a leaf.
- Leaves are visited depth first, dict entries in their insertion order, and come back in the
  same structure (the same container types) from :func:`unflatten`.
- A leaf's *path* names it for error messages, ``[0]["name"]``, like Python indexing.

A :class:`TreeDef` can travel to other parties as plain lists (:meth:`TreeDef.to_wire`): only
``dict``/``list``/``tuple``/``None`` survive the trip (a named tuple arrives as a tuple), and a peer's
description is checked (:meth:`TreeDef.from_wire`) before anything is built from it. No jax here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._errors import ShapeError

__all__ = ["LEAF", "TreeDef", "flatten", "leaf_paths", "to_jsonable", "tree_map", "unflatten"]

# Kinds of TreeDef nodes: "leaf", "none", "list", "tuple", "dict".
_CONTAINERS = ("none", "list", "tuple", "dict")
# Limits on a peer's description (a hostile peer must not make us build huge structures).
MAX_DEPTH = 64
MAX_NODES = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class TreeDef:
    """The structure of a pytree without its leaves.

    ``kind`` is "leaf", "none", "list", "tuple" or "dict"; ``keys`` the dict keys (in order);
    ``children`` the sub-structures; ``cls`` the container class to rebuild (a named tuple or a
    dict/list subclass; None for the plain class).
    """

    kind: str
    children: tuple[TreeDef, ...] = ()
    keys: tuple[Any, ...] = ()
    cls: Any = None

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    @property
    def is_leaf(self) -> bool:
        return self.kind == "leaf"

    def to_wire(self) -> Any:
        """Plain lists (msgpack-able): ``"L"``, ``None``, ``["l", [...]]``, ``["t", [...]]``,
        ``["d", [[key, child], ...]]``."""
        if self.kind == "leaf":
            return "L"
        if self.kind == "none":
            return None
        if self.kind == "dict":
            return ["d", [[k, c.to_wire()] for k, c in zip(self.keys, self.children, strict=True)]]
        return ["l" if self.kind == "list" else "t", [c.to_wire() for c in self.children]]

    @classmethod
    def from_wire(cls, wire: Any) -> TreeDef:
        """The inverse of :meth:`to_wire` for a peer's message.

        Raises:
            ShapeError: malformed, too deep (> MAX_DEPTH) or too large (> MAX_NODES nodes).
        """
        count = [0]
        return _from_wire(wire, 0, count)


LEAF = TreeDef("leaf")


def _from_wire(wire: Any, depth: int, count: list[int]) -> TreeDef:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise ShapeError(f"pytree description deeper than {MAX_DEPTH} or larger than {MAX_NODES} nodes")
    if wire == "L":
        return LEAF
    if wire is None:
        return TreeDef("none")
    if not isinstance(wire, (list, tuple)) or len(wire) != 2 or not isinstance(wire[1], (list, tuple)):
        raise ShapeError(f"malformed pytree description {str(wire)[:80]!r}")
    tag, items = wire
    if tag in ("l", "t"):
        kids = tuple(_from_wire(w, depth + 1, count) for w in items)
        return TreeDef("list" if tag == "l" else "tuple", kids)
    if tag == "d":
        keys: list[Any] = []
        kids_d: list[TreeDef] = []
        for item in items:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ShapeError(f"malformed pytree dict entry {str(item)[:80]!r}")
            key, sub = item
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ShapeError(f"pytree dict keys must be str or int, not {type(key).__name__}")
            keys.append(key)
            kids_d.append(_from_wire(sub, depth + 1, count))
        if len(set(keys)) != len(keys):
            raise ShapeError("pytree description repeats a dict key")
        return TreeDef("dict", tuple(kids_d), tuple(keys))
    raise ShapeError(f"unknown pytree node tag {str(tag)[:20]!r}")


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` (depth first) and its structure.

    Args:
        tree: a pytree.
        is_leaf: optional; a value for which it returns True is a leaf even if a container.
    """
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves, is_leaf)


def _flatten(x: Any, leaves: list[Any], is_leaf: Callable[[Any], bool] | None) -> TreeDef:
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return LEAF
    if x is None:
        return TreeDef("none")
    if isinstance(x, dict):
        keys = tuple(x.keys())
        kids = tuple(_flatten(x[k], leaves, is_leaf) for k in keys)
        return TreeDef("dict", kids, keys, None if type(x) is dict else type(x))
    if isinstance(x, list):
        return TreeDef("list", tuple(_flatten(v, leaves, is_leaf) for v in x), (), None if type(x) is list else type(x))
    if isinstance(x, tuple):
        kids = tuple(_flatten(v, leaves, is_leaf) for v in x)
        return TreeDef("tuple", kids, (), None if type(x) is tuple else type(x))
    leaves.append(x)
    return LEAF


def unflatten(treedef: TreeDef, leaves: Any) -> Any:
    """The pytree of structure ``treedef`` with ``leaves`` (an iterable, consumed in order).

    Raises:
        ShapeError: too few or too many leaves.
    """
    it = iter(leaves)
    out = _unflatten(treedef, it)
    for _ in it:
        raise ShapeError(f"too many leaves for a pytree of {treedef.num_leaves}")
    return out


def _unflatten(t: TreeDef, it: Iterator[Any]) -> Any:
    if t.kind == "leaf":
        try:
            return next(it)
        except StopIteration:
            raise ShapeError("too few leaves for the pytree") from None
    if t.kind == "none":
        return None
    if t.kind == "dict":
        values = {k: _unflatten(c, it) for k, c in zip(t.keys, t.children, strict=True)}
        return values if t.cls is None else t.cls(values)
    kids = [_unflatten(c, it) for c in t.children]
    if t.kind == "list":
        return kids if t.cls is None else t.cls(kids)
    if t.cls is None:
        return tuple(kids)
    if _is_namedtuple_cls(t.cls):
        return t.cls(*kids)
    return t.cls(kids)


def _is_namedtuple_cls(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")


def leaf_paths(treedef: TreeDef) -> list[str]:
    """The path of every leaf, in leaf order: ``""`` for a bare leaf, ``[0]["name"]`` inside."""
    out: list[str] = []
    _paths(treedef, "", out)
    return out


def _paths(t: TreeDef, prefix: str, out: list[str]) -> None:
    if t.kind == "leaf":
        out.append(prefix)
    elif t.kind == "dict":
        for k, c in zip(t.keys, t.children, strict=True):
            _paths(c, f"{prefix}[{k!r}]" if not isinstance(k, str) else f'{prefix}["{k}"]', out)
    else:
        for i, c in enumerate(t.children):
            _paths(c, f"{prefix}[{i}]", out)


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``fn`` applied leaf by leaf to ``tree`` (and to the matching leaves of ``rest``).

    Raises:
        ShapeError: a tree in ``rest`` has another structure (names where).
    """
    leaves, treedef = flatten(tree, is_leaf)
    others = []
    for r in rest:
        lv, td = flatten(r, is_leaf)
        if td.to_wire() != treedef.to_wire():
            raise ShapeError(f"pytree structures differ: {_describe(treedef)} vs {_describe(td)}")
        others.append(lv)
    return unflatten(treedef, (fn(*args) for args in zip(leaves, *others, strict=True)))


def _describe(t: TreeDef) -> str:
    text = str(t.to_wire())
    return text if len(text) <= 120 else text[:117] + "..."


def to_jsonable(value: Any) -> Any:
    """A result as JSON-ready values: arrays and numpy scalars become lists and Python numbers,
    dict keys strings, tuples lists (what ``mpcactors run`` prints and saves, and the demo reports)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
