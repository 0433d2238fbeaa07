"""numpy's dispatch protocols for secret tensors: ``np.exp(x)``, ``np.maximum(x, 0)``,
``np.where(c, a, b)``, ``np.sum(x, axis=0)``, ``np.concatenate([x, y])`` ... build secure ops.

Functions without a secure meaning here raise TypeError naming the function, rather than
silently turning secrets into plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._opset import build, join
from ._tensor import SecretTensor, reduction

__all__ = ["array_function", "array_ufunc"]

_UFUNCS: dict[np.ufunc, str] = {
    np.add: "add",
    np.subtract: "sub",
    np.multiply: "mul",
    np.matmul: "matmul",
    np.true_divide: "divide",
    np.negative: "negative",
    np.positive: "positive",
    np.absolute: "absolute",
    np.exp: "exp",
    np.log: "log",
    np.tanh: "tanh",
    np.sqrt: "sqrt",
    np.reciprocal: "reciprocal",
    np.sign: "sign",
    np.less: "less",
    np.less_equal: "less_equal",
    np.greater: "greater",
    np.greater_equal: "greater_equal",
    np.equal: "equal",
    np.maximum: "maximum",
    np.minimum: "minimum",
    np.power: "power",
}


def _job_of(values: Sequence[Any]) -> Any:
    for v in values:
        if isinstance(v, SecretTensor):
            return v.job
        if isinstance(v, (list, tuple)):
            job = _job_of(v)
            if job is not None:
                return job
    return None


def array_ufunc(ufunc: np.ufunc, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    if method != "__call__" or kwargs.get("out") is not None:
        raise TypeError(f"np.{ufunc.__name__}.{method} with out= is not supported on secret tensors")
    name = _UFUNCS.get(ufunc)
    if name is None:
        raise TypeError(f"np.{ufunc.__name__} is not supported on secret tensors")
    if name == "positive":
        return inputs[0]
    return build(name, inputs, {})


def array_function(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    handler = _FUNCTIONS.get(func)
    if handler is None:
        raise TypeError(f"np.{getattr(func, '__name__', func)} is not supported on secret tensors")
    return handler(*args, **kwargs)


def _sum(x: Any, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
    return build("sum", [x], {"axis": axis, "keepdims": keepdims})


def _mean(x: Any, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
    return build("mean", [x], {"axis": axis, "keepdims": keepdims})


def _concatenate(arrays: Sequence[Any], axis: int = 0, **_: Any) -> Any:
    return join(_job_of(arrays), "concatenate", list(arrays), lambda a: np.concatenate(a, axis=axis))


def _stack(arrays: Sequence[Any], axis: int = 0, **_: Any) -> Any:
    return join(_job_of(arrays), "stack", list(arrays), lambda a: np.stack(a, axis=axis))


def _hstack(arrays: Sequence[Any], **_: Any) -> Any:
    return join(_job_of(arrays), "hstack", list(arrays), np.hstack)


def _vstack(arrays: Sequence[Any], **_: Any) -> Any:
    return join(_job_of(arrays), "vstack", list(arrays), np.vstack)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return build("where", [cond, a, b], {})


def _reshape(x: Any, shape: Any = None, **kw: Any) -> Any:
    shape = kw.get("newshape", shape)
    return x.reshape(shape)


def _transpose(x: Any, axes: Any = None) -> Any:
    return x.transpose(axes) if axes is not None else x.transpose()


def _max(x: Any, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
    return reduction("max", x, axis, keepdims)


def _min(x: Any, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
    return reduction("min", x, axis, keepdims)


def _argmax(x: Any, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
    return reduction("argmax", x, axis, keepdims)


def _dot(a: Any, b: Any) -> Any:
    return build("matmul", [a, b], {})


def _clip(x: Any, a_min: Any, a_max: Any, **_: Any) -> Any:
    out = x
    if a_min is not None:
        out = build("maximum", [out, a_min], {})
    if a_max is not None:
        out = build("minimum", [out, a_max], {})
    return out


def _broadcast_to(x: Any, shape: Any) -> Any:
    return build("broadcast_to", [x], {"shape": tuple(shape)})


_FUNCTIONS: dict[Any, Any] = {
    np.sum: _sum,
    np.mean: _mean,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.where: _where,
    np.reshape: _reshape,
    np.transpose: _transpose,
    np.max: _max,
    np.amax: _max,
    np.min: _min,
    np.amin: _min,
    np.argmax: _argmax,
    np.dot: _dot,
    np.matmul: _dot,
    np.clip: _clip,
    np.broadcast_to: _broadcast_to,
    np.shape: lambda x: x.shape,
    np.ndim: lambda x: x.ndim,
    np.size: lambda x: x.size,
}

