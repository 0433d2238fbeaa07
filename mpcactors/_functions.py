"""numpy-style functions that work on secret tensors and on plain arrays alike.

``mpcactors.sigmoid(x)`` builds a secure op when ``x`` is a SecretTensor and computes the plain
float64 value otherwise, so one program text runs on secret data and on plaintext (handy for
checking accuracy). The secure versions, their input ranges, rounds and accuracy are in
docs/NONLINEAR.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .scheduler._tensor import SecretTensor, apply, reduction

__all__ = [
    "absolute",
    "argmax",
    "concatenate",
    "equal",
    "exp",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "log",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "ones",
    "reciprocal",
    "relu",
    "rsqrt",
    "sigmoid",
    "sign",
    "sqrt",
    "stack",
    "sum",
    "tanh",
    "where",
    "zeros",
]


def _secret(*values: Any) -> bool:
    return any(isinstance(v, SecretTensor) for v in values)


def exp(x: Any) -> Any:
    return apply("exp", x) if _secret(x) else np.exp(x)


def log(x: Any) -> Any:
    return apply("log", x) if _secret(x) else np.log(x)


def sigmoid(x: Any) -> Any:
    return apply("sigmoid", x) if _secret(x) else 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def tanh(x: Any) -> Any:
    return apply("tanh", x) if _secret(x) else np.tanh(x)


def sqrt(x: Any) -> Any:
    return apply("sqrt", x) if _secret(x) else np.sqrt(x)


def rsqrt(x: Any) -> Any:
    return apply("rsqrt", x) if _secret(x) else 1.0 / np.sqrt(x)


def reciprocal(x: Any) -> Any:
    return apply("reciprocal", x) if _secret(x) else 1.0 / np.asarray(x, dtype=np.float64)


def relu(x: Any) -> Any:
    return apply("relu", x) if _secret(x) else np.maximum(x, 0)


def absolute(x: Any) -> Any:
    return apply("absolute", x) if _secret(x) else np.abs(x)


def sign(x: Any) -> Any:
    return apply("sign", x) if _secret(x) else np.sign(x)


def maximum(a: Any, b: Any) -> Any:
    return apply("maximum", a, b) if _secret(a, b) else np.maximum(a, b)


def minimum(a: Any, b: Any) -> Any:
    return apply("minimum", a, b) if _secret(a, b) else np.minimum(a, b)


def where(cond: Any, a: Any, b: Any) -> Any:
    return apply("where", cond, a, b) if _secret(cond, a, b) else np.where(cond, a, b)


def less(a: Any, b: Any) -> Any:
    return apply("less", a, b) if _secret(a, b) else np.less(a, b)


def less_equal(a: Any, b: Any) -> Any:
    return apply("less_equal", a, b) if _secret(a, b) else np.less_equal(a, b)


def greater(a: Any, b: Any) -> Any:
    return apply("greater", a, b) if _secret(a, b) else np.greater(a, b)


def greater_equal(a: Any, b: Any) -> Any:
    return apply("greater_equal", a, b) if _secret(a, b) else np.greater_equal(a, b)


def equal(a: Any, b: Any) -> Any:
    return apply("equal", a, b) if _secret(a, b) else np.equal(a, b)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return reduction("max", x, axis, keepdims) if _secret(x) else np.max(x, axis=axis, keepdims=keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return reduction("min", x, axis, keepdims) if _secret(x) else np.min(x, axis=axis, keepdims=keepdims)


def argmax(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return reduction("argmax", x, axis, keepdims) if _secret(x) else np.argmax(x, axis=axis, keepdims=keepdims)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return apply("sum", x, axis=axis, keepdims=keepdims) if _secret(x) else np.sum(x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return apply("mean", x, axis=axis, keepdims=keepdims) if _secret(x) else np.mean(x, axis=axis, keepdims=keepdims)


def concatenate(arrays: Any, axis: int = 0) -> Any:
    return np.concatenate(arrays, axis=axis)


def stack(arrays: Any, axis: int = 0) -> Any:
    return np.stack(arrays, axis=axis)


def zeros(shape: Any) -> np.ndarray:
    """Public zeros (they mix into secret arithmetic as public constants)."""
    return np.zeros(shape)


def ones(shape: Any) -> np.ndarray:
    """Public ones."""
    return np.ones(shape)
