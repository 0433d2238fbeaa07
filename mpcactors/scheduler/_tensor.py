"""Secret tensors that feel like numpy: every operation adds an op to the job's graph.

Theory of operation
-------------------
A :class:`SecretTensor` names an op of its job's graph whose result is a
:class:`~mpcactors.ops._protocol.Share`, plus what the program may know about it without any
communication: its shape (when it can be inferred) and whether it is a fixed-point real
(``fxp``, scaled by 2^fxp_bits) or an integer. Python operators, methods and numpy's
``__array_ufunc__`` / ``__array_function__`` protocols all build ops through :func:`apply`,
which turns numpy arrays and Python scalars into public constants of the right scale.

Scale rules: fxp * fxp and fxp @ fxp are truncated by fxp_bits; a product with an integer
(secret or public, e.g. ``2 * x`` or a 0/1 comparison result) is not; adding an integer to a
fixed-point value scales the integer first (a local multiplication by 2^f). Comparisons return
integer 0/1 tensors.

Shapes are checked twice: statically when both shapes are known (a :class:`ShapeError` at
construction), and at run time on the shares (a mismatch there aborts the job everywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ShapeError
from ..ops._matmul import matmul_shape
from ..ops._ring import encode
from ._graph import OpNode

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["SecretTensor", "apply", "reduction", "static_shape"]


def static_shape(fn: Callable[..., np.ndarray], *shapes: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """Shape of ``fn`` applied to placeholders of ``shapes`` (None if any shape is unknown).

    Elementwise ufuncs and matmul are answered by shape rules alone (no arithmetic: a uint8
    placeholder matmul of 1024 x 1024 would cost seconds); other functions (indexing, reshape,
    transpose, reductions, concatenation) run on zero-strided views, which costs no memory for the
    inputs.

    Raises:
        ShapeError: the shapes do not fit ``fn`` (broadcasting, matmul, reshape, indexing).
    """
    if any(s is None for s in shapes):
        return None
    known = [tuple(s) for s in shapes if s is not None]
    try:
        if fn is np.add or fn is np.multiply:
            return tuple(np.broadcast_shapes(*known))
        if fn is np.matmul:
            return matmul_shape(known[0], known[1])
        views = [np.broadcast_to(np.zeros((), dtype=np.uint8), s) for s in known]
        return tuple(fn(*views).shape)
    except ShapeError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        raise ShapeError(f"shapes {list(shapes)} do not fit: {exc}") from None


class SecretTensor:
    """A secret-shared array of a running job (see module doc). Build with ``job.input``.

    ``binary`` is True for an input whose owner declared it holds only 0s and 1s
    (``job.input(..., binary=True)``): a public fact, like the shape, that ``mpcactors.jit``
    uses to simplify (docs/JIT.md, "case-split"). Results of ops do not carry it.
    """

    __slots__ = ("_job", "_node", "_shape", "binary", "fxp", "public")
    __array_priority__ = 1000

    def __init__(
        self, job: Job, node: OpNode, shape: tuple[int, ...] | None, fxp: bool, public: bool = False
    ) -> None:
        self._job = job
        self._node = node
        self._shape = shape
        # the shape is known at every party at this point of the program: declared, awaited, or
        # inferred from such shapes (not the owner's local knowledge, nor a race with the op)
        self.public = public and shape is not None
        self.fxp = fxp
        self.binary = False

    # ---- metadata ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            if self._node.done:
                self._shape = tuple(self._node.result.shape)
            else:
                raise ShapeError(
                    f"the shape of {self._node.name} is not known yet at {self._job.party!r}: "
                    "await the tensor (x = await job.input(...)) or pass shape= to job.input"
                )
        return self._shape

    @property
    def known_shape(self) -> tuple[int, ...] | None:
        """The shape if known without waiting, else None."""
        if self._shape is None and self._node.done:
            self._shape = tuple(self._node.result.shape)
        return self._shape

    @property
    def public_shape(self) -> tuple[int, ...] | None:
        """The shape if every party knows it at this point of the program, else None: what the
        parties may build differently on (``known_shape`` can differ between parties)."""
        return self._shape if self.public else None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        """float64 for fixed-point values, int64 for integers (what reveal returns)."""
        return np.dtype(np.float64 if self.fxp else np.int64)

    @property
    def job(self) -> Job:
        return self._job

    @property
    def node(self) -> OpNode:
        return self._node

    @property
    def rounds(self) -> int:
        """Communication rounds on the critical path from the job's start to this value
        (final once the value is computed: ``await x`` first)."""
        return self._node.depth

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        shape = self.known_shape
        kind = "fxp" if self.fxp else "int"
        return f"SecretTensor(job={self._job.id!r}, op={self._node.op_id}, shape={shape}, {kind})"

    def __bool__(self) -> bool:
        raise TypeError("a secret value has no truth value: reveal it, or use mpcactors.where")

    def __await__(self) -> Any:
        async def wait() -> SecretTensor:
            await self._job.wait(self._node)
            self.known_shape  # noqa: B018 - fills the cached shape
            self.public = True  # every party awaits here
            return self

        return wait().__await__()

    # ---- arithmetic --------------------------------------------------------------------------
    def __add__(self, other: Any) -> SecretTensor:
        return apply("add", self, other)

    def __radd__(self, other: Any) -> SecretTensor:
        return apply("add", other, self)

    def __sub__(self, other: Any) -> SecretTensor:
        return apply("sub", self, other)

    def __rsub__(self, other: Any) -> SecretTensor:
        return apply("sub", other, self)

    def __mul__(self, other: Any) -> SecretTensor:
        return apply("mul", self, other)

    def __rmul__(self, other: Any) -> SecretTensor:
        return apply("mul", other, self)

    def __matmul__(self, other: Any) -> SecretTensor:
        return apply("matmul", self, other)

    def __rmatmul__(self, other: Any) -> SecretTensor:
        return apply("matmul", other, self)

    def __truediv__(self, other: Any) -> SecretTensor:
        return apply("divide", self, other)

    def __rtruediv__(self, other: Any) -> SecretTensor:
        return apply("divide", other, self)

    def __neg__(self) -> SecretTensor:
        return apply("negative", self)

    def __pos__(self) -> SecretTensor:
        return self

    def __abs__(self) -> SecretTensor:
        return apply("absolute", self)

    def __pow__(self, exponent: Any) -> SecretTensor:
        return apply("power", self, exponent)

    # ---- comparisons (integer 0/1 results) ---------------------------------------------------
    def __lt__(self, other: Any) -> SecretTensor:
        return apply("less", self, other)

    def __le__(self, other: Any) -> SecretTensor:
        return apply("less_equal", self, other)

    def __gt__(self, other: Any) -> SecretTensor:
        return apply("greater", self, other)

    def __ge__(self, other: Any) -> SecretTensor:
        return apply("greater_equal", self, other)

    def __eq__(self, other: object) -> SecretTensor:  # type: ignore[override]
        return apply("equal", self, other)

    def __ne__(self, other: object) -> SecretTensor:  # type: ignore[override]
        return 1 - apply("equal", self, other)

    __hash__ = None  # type: ignore[assignment]

    # ---- structure ---------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> SecretTensor:
        if isinstance(index, SecretTensor):
            raise TypeError("indexing with a secret index is not supported; use mpcactors.where")
        return apply("getitem", self, index=index)

    def reshape(self, *shape: Any) -> SecretTensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return apply("reshape", self, newshape=tuple(int(s) for s in shape))

    def transpose(self, *axes: Any) -> SecretTensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return apply("transpose", self, axes=tuple(axes) or None)

    @property
    def T(self) -> SecretTensor:
        return self.transpose()

    def flatten(self) -> SecretTensor:
        return self.reshape(-1)

    ravel = flatten

    def sum(self, axis: Any = None, keepdims: bool = False) -> SecretTensor:
        return apply("sum", self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> SecretTensor:
        return apply("mean", self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> SecretTensor:
        return reduction("max", self, axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> SecretTensor:
        return reduction("min", self, axis, keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> SecretTensor:
        return reduction("argmax", self, axis, keepdims)

    def dot(self, other: Any) -> SecretTensor:
        return apply("matmul", self, other)

    # ---- numpy protocols ---------------------------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "a SecretTensor cannot become a plain numpy array: use `await job.reveal(x)`"
        )

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from ._numpy import array_ufunc

        return array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        from ._numpy import array_function

        return array_function(func, args, kwargs)


def apply(name: str, *operands: Any, **attrs: Any) -> SecretTensor:
    """Build the op ``name`` over ``operands`` (secret tensors, arrays, scalars)."""
    from ._opset import build

    out = build(name, operands, attrs)
    if attrs and isinstance(out, SecretTensor):  # the attributes tell ops apart (fingerprints)
        out.node.detail = " ".join([out.node.detail, *(f"{k}={_short(v)}" for k, v in attrs.items())]).strip()
    if name in _RANGE_CHECKED and isinstance(out, SecretTensor) and out.job.check_ranges:
        _check_range(out, name, operands)
    return out


# Products whose exact value must stay inside the fixed-point range (check_ranges=True).
_RANGE_CHECKED: dict[str, Callable[..., np.ndarray]] = {"mul": np.multiply, "matmul": np.matmul}


def product_bound(scale_bits: int) -> float:
    """The largest |product| a ring element holds at ``scale_bits`` fractional bits: Z_2^64 with
    two bits of headroom for faithful truncation (|x| < 2^62 in the ring)."""
    return float(2.0 ** (62 - scale_bits))


def _check_range(out: SecretTensor, name: str, operands: Sequence[Any]) -> None:
    """Add a development op that opens the operands of ``out`` and checks the exact product."""
    from ..ops._comm import gather
    from ..ops._ring import decode

    job = out.job
    f = job.fxp_bits
    secrets = [o for o in operands if isinstance(o, SecretTensor)]
    publics = [None if isinstance(o, SecretTensor) else np.asarray(o, dtype=np.float64) for o in operands]
    scale = 0
    for o, p in zip(operands, publics, strict=True):
        if isinstance(o, SecretTensor):
            scale += f if o.fxp else 0
        elif p is not None and not (np.all(p == np.round(p)) and (p.size == 0 or np.max(np.abs(p)) < 2.0**40)):
            scale += f
    bound = product_bound(scale)
    fn = _RANGE_CHECKED[name]
    proto = job.protocol
    label = f"op {out.node.op_id} ({name} of {', '.join(s.node.name for s in secrets)})"

    def step(ctx: Any, ins: list[Any]) -> Any:
        rings = yield from gather([proto.reveal(ctx, share, None) for share in ins])
        opened = iter(decode(r, f if s.fxp else 0) for r, s in zip(rings, secrets, strict=True))
        values = [next(opened) if p is None else p for p in publics]
        exact = np.asarray(fn(*values), dtype=np.float64)
        peak = float(np.max(np.abs(exact))) if exact.size else 0.0
        if not peak < bound:
            raise OverflowError(
                f"check_ranges: {label} reaches |{peak:.4g}|, beyond the fixed-point product range "
                f"+-{bound:.4g} (fxp_bits={f}): it would wrap around; scale the values down"
            )
        return None

    job.op("range_check", secrets, step, None, True)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, np.ndarray) else f"array{value.shape}"
    return text if len(text) <= 40 else f"{type(value).__name__}(...)"


def reduction(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    """The reduction ``name`` (max, min, argmax) over ``axis``, keeping the reduced axes as
    length-1 axes when ``keepdims`` (numpy's rule)."""
    from ._opset import _structural

    out = apply(name, x, axis=axis)
    if not keepdims:
        return out
    if axis is None:
        shape = x.known_shape
        if shape is None:
            raise ShapeError(
                f"{name}(axis=None, keepdims=True) needs the shape of {x.node.name} at {x.job.party!r}: "
                "await the tensor first (x = await job.input(...)) or pass shape= to job.input"
            )
        ones = (1,) * len(shape)
        return _structural(x.job, out, "keepdims", lambda p: np.reshape(p, ones))
    return _structural(x.job, out, "keepdims", lambda p: np.expand_dims(p, axis))


def encode_public(value: Any, fxp: bool, fxp_bits: int) -> np.ndarray:
    """A public array as ring elements at the given scale."""
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"cannot use {type(value).__name__} as a public value")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if not fxp:
        if arr.dtype.kind == "f":
            if not np.all(arr == np.round(arr)):
                raise TypeError("a non-integer public value needs a fixed-point operand")
            arr = arr.astype(np.int64)
        return encode(arr.astype(np.int64), 0)
    return encode(arr, fxp_bits)
