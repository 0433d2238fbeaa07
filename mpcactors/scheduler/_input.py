"""Inputs that are pytrees: what ``job.input`` shares and what ``await job.input(...)`` returns.

Theory of operation
-------------------
Only the owner knows its value, so only the owner knows its structure. The input op therefore
sends, in the same round as the shares, a *spec*: the pytree's structure (``TreeDef.to_wire``),
every leaf's shape and kind (``f`` fixed point, ``i`` integer). All leaves are encoded (each at
its own scale) and shared as one flat ring vector, so a pytree of any size costs the round of
one array. Each party splits the flat share into leaf shares by the spec (local).

``job.input`` returns a :class:`SecretInput` before anything is known elsewhere: a SecretTensor
that works as one when the value is a bare array (the old behaviour), and that ``await`` turns
into the value's pytree of SecretTensors with every leaf's shape known at every party. Using a
pytree input as a tensor without awaiting it aborts the job with an error that says so.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ProtocolError, ShapeError
from .._pytree import TreeDef, flatten, leaf_paths, unflatten
from ..ops._protocol import Share
from ..ops._ring import encode
from ._tensor import SecretTensor

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["InputTree", "SecretInput", "bare_step", "encode_input", "is_bare"]

_MAX_LEAVES = 1 << 16


def is_bare(value: Any) -> bool:
    """True when ``value`` is a single leaf (not a dict, list, tuple or None)."""
    return flatten(value)[1].is_leaf


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def encode_input(
    owner: str,
    raw: Any,
    declared_kind: str | None,
    declared: tuple[int, ...] | None,
    fxp_bits: int,
    binary: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """The owner's spec and flat ring vector for ``raw`` (see module doc).

    Raises:
        TypeError: a leaf is not numeric (names its path), or floats where ``int`` was declared.
        ValueError: ``binary`` and a leaf holds a value other than 0 and 1 (names the leaf, the
            index and the value).
        ShapeError: a bare array whose shape differs from ``declared``; ``shape=`` for a pytree.
    """
    leaves, treedef = flatten(raw)
    bare = treedef.is_leaf
    if not bare and declared is not None:
        raise ShapeError(f"input at {owner!r}: shape= is for a bare array, but the value is a pytree")
    if len(leaves) > _MAX_LEAVES:
        raise ShapeError(f"input at {owner!r} has {len(leaves)} leaves, more than {_MAX_LEAVES}")
    rings: list[np.ndarray] = []
    shapes: list[list[int]] = []
    kinds: list[str] = []
    for leaf, path in zip(leaves, leaf_paths(treedef), strict=True):
        where = f"input at {owner!r}" + (f", leaf {path}," if path else "")
        if isinstance(leaf, SecretTensor):
            raise TypeError(f"{where} is already a secret tensor; pass the plain value")
        arr = np.asarray(leaf)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            if bare:
                raise TypeError(f"input at {owner!r} must be numeric, not {arr.dtype}")
            raise TypeError(f"{where} is {type(leaf).__name__} {_short(leaf)}: leaves must be numbers or numeric arrays")
        kind = declared_kind or ("f" if bare or arr.dtype.kind == "f" else "i")
        if kind == "i" and arr.dtype.kind == "f":
            raise TypeError(f"{where} declared int but holds floats")
        if bare and declared is not None and arr.shape != declared:
            raise ShapeError(f"input at {owner!r} has shape {arr.shape}, declared {declared}")
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        if binary:
            _check_binary(where, arr)
        try:
            rings.append(encode(arr, fxp_bits if kind == "f" else 0).reshape(-1))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        shapes.append([int(d) for d in arr.shape])
        kinds.append(kind)
    flat = np.concatenate(rings) if rings else np.zeros(0, dtype=np.uint64)
    spec = {"tree": treedef.to_wire(), "shapes": shapes, "kinds": "".join(kinds)}
    return spec, flat


def _check_binary(where: str, arr: np.ndarray) -> None:
    bad = np.flatnonzero((arr != 0) & (arr != 1))
    if bad.size:
        index = tuple(int(i) for i in np.unravel_index(bad[0], arr.shape))
        raise ValueError(
            f"{where} was declared binary=True but holds {arr.reshape(-1)[bad[0]].item()!r} at index {list(index)} "
            f"({bad.size} of its {arr.size} values are neither 0 nor 1)"
        )


class _NotATensor:
    """Stands where a pytree input was used as one tensor: any use raises the explanation."""

    __slots__ = ("_message",)

    def __init__(self, message: str) -> None:
        self._message = message

    def __getattr__(self, name: str) -> Any:
        raise ShapeError(self._message)


class InputTree:
    """The result of an input op: the structure and one Share per leaf."""

    __slots__ = ("kinds", "leaves", "owner", "paths", "shape", "shapes", "treedef")

    def __init__(
        self,
        owner: str,
        treedef: TreeDef,
        shapes: list[tuple[int, ...]],
        kinds: str,
        leaves: list[Share],
        total: int,
    ) -> None:
        self.owner = owner
        self.treedef = treedef
        self.paths = leaf_paths(treedef)
        self.shapes = shapes
        self.kinds = kinds
        self.leaves = leaves
        self.shape = (total,)  # the flat vector's (cost estimates read it)

    @classmethod
    def decode(
        cls,
        owner: str,
        spec: Any,
        share: Share,
        declared: tuple[int, ...] | None,
        declared_kind: str | None,
    ) -> InputTree:
        """Check the owner's spec against the flat share and split it into leaves.

        Raises:
            ProtocolError: a malformed spec (or one that disagrees with the share).
            ShapeError: a bare array whose shape differs from the ``shape=`` every party passed.
        """
        try:
            if not isinstance(spec, dict):
                raise ShapeError("the spec is not a dict")
            treedef = TreeDef.from_wire(spec.get("tree"))
            raw_shapes, kinds = spec.get("shapes"), spec.get("kinds")
            if not isinstance(raw_shapes, list) or not isinstance(kinds, str):
                raise ShapeError("the spec has no shapes list or kinds string")
            if len(raw_shapes) != treedef.num_leaves or len(kinds) != len(raw_shapes):
                raise ShapeError(f"{len(raw_shapes)} shapes and {len(kinds)} kinds for {treedef.num_leaves} leaves")
            if set(kinds) - {"f", "i"} or (declared_kind is not None and set(kinds) - {declared_kind}):
                raise ShapeError(f"leaf kinds {kinds[:20]!r} do not fit dtype {declared_kind!r}")
            shapes = [_shape(s) for s in raw_shapes]
        except ShapeError as exc:
            raise ProtocolError(f"input from {owner!r}: malformed structure: {exc}", peer=owner) from None
        sizes = [math.prod(s) for s in shapes]
        total = sum(sizes)
        if share.shape != (total,):
            raise ProtocolError(f"input from {owner!r}: {share.shape} shared for leaves of {total} values", peer=owner)
        if treedef.is_leaf and declared is not None and shapes[0] != declared:
            raise ShapeError(f"input from {owner!r} has shape {shapes[0]}, declared {declared}")
        leaves: list[Share] = []
        start = 0
        for shp, size in zip(shapes, sizes, strict=True):
            leaves.append(share.map(functools.partial(_slice, start, start + size, shp), shp))
            start += size
        return cls(owner, treedef, shapes, kinds, leaves, total)

    def bare_share(self) -> Share | _NotATensor:
        if self.treedef.is_leaf:
            return self.leaves[0]
        return _NotATensor(
            f"the input from {self.owner!r} is a pytree of {len(self.leaves)} leaves, not one tensor: "
            "`tree = await job.input(...)` gives its secret leaves"
        )

    def tensors(self, job: Job, raw: SecretTensor, binary: bool = False) -> Any:
        """The pytree of SecretTensors, one local op per leaf (each flagged ``binary``)."""
        out = []
        for i, (path, shp, kind) in enumerate(zip(self.paths, self.shapes, self.kinds, strict=True)):
            # made after the await at every party, from the shapes that came with the value
            leaf = job.op(f"input[{self.owner}]{path}", [raw], functools.partial(_leaf_step, i), shp, kind == "f", public=True)
            leaf.binary = binary
            out.append(leaf)
        return unflatten(self.treedef, out)


def _slice(a: int, b: int, shape: tuple[int, ...], part: np.ndarray) -> np.ndarray:
    return part[a:b].reshape(shape)


def _leaf_step(i: int, ctx: Any, ins: list[Any]) -> Share:
    return ins[0].leaves[i]


def bare_step(ctx: Any, ins: list[Any]) -> Any:
    """The op step of ``job.input``'s tensor: the input's only leaf (or a stand-in that explains)."""
    return ins[0].bare_share()


def _shape(obj: Any) -> tuple[int, ...]:
    if not isinstance(obj, (list, tuple)) or len(obj) > 32 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in obj
    ):
        raise ShapeError(f"malformed shape {_short(obj)}")
    return tuple(obj)


class SecretInput(SecretTensor):
    """What ``job.input`` returns: a SecretTensor for a bare array; ``await`` it for the pytree.

    ``await x`` returns ``x`` itself (its shape now known) when the owner's value is a bare
    array, else the value's pytree of SecretTensors (the same objects on every await).
    """

    __slots__ = ("_owner", "_raw", "_tree")

    def __init__(
        self,
        job: Job,
        node: Any,
        shape: tuple[int, ...] | None,
        fxp: bool,
        raw: SecretTensor,
        owner: str,
        binary: bool = False,
        public: bool = False,
    ) -> None:
        super().__init__(job, node, shape, fxp, public)
        self.binary = binary
        self._raw = raw
        self._owner = owner
        self._tree: Any = None

    @property
    def known_shape(self) -> tuple[int, ...] | None:
        if self._shape is None and self._node.done:
            result = self._node.result
            if isinstance(result, _NotATensor):
                return None
            self._shape = tuple(result.shape)
        return self._shape

    def __await__(self) -> Any:
        async def wait() -> Any:
            tree: InputTree = await self._job.wait(self._raw.node)
            if tree.treedef.is_leaf:
                await self._job.wait(self._node)
                self.known_shape  # noqa: B018 - fills the cached shape
                self.public = self._shape is not None  # every party awaits here
                return self
            if self._tree is None:
                self._tree = tree.tensors(self._job, self._raw, self.binary)
            return self._tree

        return wait().__await__()

