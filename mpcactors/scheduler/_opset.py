"""The op builders behind secret tensors: scale rules, broadcasting, and the step of each op.

Each builder checks what it can statically, then adds one op to the job's graph whose step
factory runs the protocol (``ops/``) on the input shares at run time. Local ops return a Share;
communicating ops return a protocol step (generator); the executor does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._errors import ShapeError
from ..ops import _compare, _nonlinear
from ..ops._protocol import Protocol, Share
from ._tensor import SecretTensor, encode_public, static_shape

__all__ = ["BUILDERS", "build", "to_fxp"]

Builder = Callable[..., SecretTensor]
BUILDERS: dict[str, Builder] = {}


def builder(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return register


def build(name: str, operands: Sequence[Any], attrs: dict[str, Any]) -> SecretTensor:
    secrets = [o for o in operands if isinstance(o, SecretTensor)]
    if not secrets:
        raise TypeError(f"{name}: no secret operand")
    job = secrets[0].job
    for s in secrets[1:]:
        if s.job is not job:
            raise ValueError(f"{name}: operands belong to different jobs ({job.id!r}, {s.job.id!r})")
    try:
        fn = BUILDERS[name]
    except KeyError:
        raise NotImplementedError(f"{name!r} is not supported on secret tensors") from None
    return fn(job, *operands, **attrs)


# ---- helpers ---------------------------------------------------------------------------------
def _proto(job: Any) -> Protocol:
    return job.protocol


def _bcast(share: Share, shape: tuple[int, ...]) -> Share:
    if share.shape == shape:
        return share
    return share.map(lambda p: np.broadcast_to(p, shape), shape)


def _common_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {list(shapes)} cannot be broadcast together") from None


def _is_integral(value: np.ndarray) -> bool:
    if value.dtype.kind in "biu":
        return True
    return bool(value.dtype.kind == "f" and np.all(np.isfinite(value)) and np.all(value == np.round(value)) and (value.size == 0 or np.max(np.abs(value)) < 2.0**40))


def _public(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"cannot mix a secret tensor with {type(value).__name__} {value!r}")
    return arr


def to_fxp(x: SecretTensor) -> SecretTensor:
    """The same value as a fixed-point tensor (a local multiplication by 2^f)."""
    if x.fxp:
        return x
    scale = np.array(1 << x.job.fxp_bits, dtype=np.uint64)
    proto = _proto(x.job)
    return x.job.op("int_to_fxp", [x], lambda ctx, ins: proto.mul_public(ins[0], scale), x.known_shape, True)


def _align(a: SecretTensor, b: SecretTensor) -> tuple[SecretTensor, SecretTensor]:
    if a.fxp == b.fxp:
        return a, b
    return to_fxp(a), to_fxp(b)


# Imported with the scheduler, not at a program's first comparison: importing them then held the
# event loop for ~25 ms (numpy.polynomial and the boolean circuits).
_OP_MODULES = {"_compare": _compare, "_nonlinear": _nonlinear}


def _nl(module: str, name: str) -> Callable[..., Any]:
    return getattr(_OP_MODULES[module], name)  # type: ignore[no-any-return]


# ---- linear ops --------------------------------------------------------------------------------
@builder("add")
def _add(job: Any, a: Any, b: Any) -> SecretTensor:
    return _linear(job, a, b, subtract=False)


@builder("sub")
def _sub(job: Any, a: Any, b: Any) -> SecretTensor:
    return _linear(job, a, b, subtract=True)


def _linear(job: Any, a: Any, b: Any, *, subtract: bool) -> SecretTensor:
    proto = _proto(job)
    name = "sub" if subtract else "add"
    if isinstance(a, SecretTensor) and isinstance(b, SecretTensor):
        a, b = _align(a, b)
        shape = static_shape(np.add, a.known_shape, b.known_shape)

        def both(ctx: Any, ins: list[Share]) -> Share:
            out = _common_shape(ins[0].shape, ins[1].shape)
            x, y = _bcast(ins[0], out), _bcast(ins[1], out)
            return proto.sub(x, y) if subtract else proto.add(x, y)

        return job.op(name, [a, b], both, shape, a.fxp)
    secret_first = isinstance(a, SecretTensor)
    x, pub = (a, _public(b)) if secret_first else (b, _public(a))
    if not x.fxp and not _is_integral(pub):
        x = to_fxp(x)
    c = encode_public(pub, x.fxp, job.fxp_bits)
    shape = static_shape(np.add, x.known_shape, c.shape)

    def mixed(ctx: Any, ins: list[Share]) -> Share:
        out = _common_shape(ins[0].shape, c.shape)
        s = _bcast(ins[0], out)
        cc = np.broadcast_to(c, out)
        if subtract and secret_first:
            return proto.add_public(s, np.negative(cc))  # x - c
        if subtract:
            return proto.add_public(proto.neg(s), cc)  # c - x
        return proto.add_public(s, cc)

    return job.op(name, [x], mixed, shape, x.fxp)


@builder("negative")
def _negative(job: Any, x: SecretTensor) -> SecretTensor:
    proto = _proto(job)
    return job.op("negative", [x], lambda ctx, ins: proto.neg(ins[0]), x.known_shape, x.fxp)


# ---- products ----------------------------------------------------------------------------------
def _prepare(
    proto: Any, kind: str, xshape: tuple[int, ...] | None, yshape: tuple[int, ...] | None, bits: int
) -> Callable[[Any], Any] | None:
    """The product's preparation from shapes (``Semi2k.prepare``, no dealer), or None when the
    protocol prepares nothing ahead or a shape is not known at every party yet (the parties
    must build the same graph: ``SecretTensor.public_shape``)."""
    if not getattr(proto, "prepares", False) or xshape is None or yshape is None:
        return None
    return lambda ctx: proto.prepare(ctx, kind, xshape, yshape, bits)


def _prepared(ins: list[Any]) -> dict[str, Any]:
    """``{"prepared": ...}`` when the op has its preparation as a third input."""
    return {"prepared": ins[2]} if len(ins) > 2 else {}



@builder("mul")
def _mul(job: Any, a: Any, b: Any) -> SecretTensor:
    proto = _proto(job)
    f = job.fxp_bits
    if isinstance(a, SecretTensor) and isinstance(b, SecretTensor):
        shape = static_shape(np.multiply, a.known_shape, b.known_shape)
        trunc = a.fxp and b.fxp

        def both(ctx: Any, ins: list[Share]) -> Any:
            out = _common_shape(ins[0].shape, ins[1].shape)
            x, y = _bcast(ins[0], out), _bcast(ins[1], out)
            kw = _prepared(ins)
            if trunc:
                return (yield from proto.mul_trunc(ctx, x, y, f, **kw))
            return (yield from proto.mul(ctx, x, y, **kw))

        public = static_shape(np.multiply, a.public_shape, b.public_shape)  # the same at every party
        prep = _prepare(proto, "mul", public, public, f if trunc else 0)
        return job.op("mul", [a, b], both, shape, a.fxp or b.fxp, prepare=prep)
    x, pub = (a, _public(b)) if isinstance(a, SecretTensor) else (b, _public(a))
    shape = static_shape(np.multiply, x.known_shape, pub.shape)
    if _is_integral(pub):
        c = encode_public(pub, False, f)

        def by_int(ctx: Any, ins: list[Share]) -> Share:
            out = _common_shape(ins[0].shape, c.shape)
            return proto.mul_public(_bcast(ins[0], out), np.broadcast_to(c, out))

        return job.op("mul_public", [x], by_int, shape, x.fxp)
    c = encode_public(pub, True, f)
    trunc = x.fxp

    def by_fxp(ctx: Any, ins: list[Share]) -> Any:
        out = _common_shape(ins[0].shape, c.shape)
        z = proto.mul_public(_bcast(ins[0], out), np.broadcast_to(c, out))
        if trunc:
            z = yield from proto.truncate(ctx, z, f)
        return z

    return job.op("mul_public", [x], by_fxp, shape, True)


@builder("matmul")
def _matmul(job: Any, a: Any, b: Any) -> SecretTensor:
    proto = _proto(job)
    f = job.fxp_bits
    if isinstance(a, SecretTensor) and isinstance(b, SecretTensor):
        shape = static_shape(np.matmul, a.known_shape, b.known_shape)
        trunc = a.fxp and b.fxp

        def both(ctx: Any, ins: list[Share]) -> Any:
            kw = _prepared(ins)
            if trunc:
                return (yield from proto.matmul_trunc(ctx, ins[0], ins[1], f, **kw))
            return (yield from proto.matmul(ctx, ins[0], ins[1], **kw))

        prep = _prepare(proto, "matmul", a.public_shape, b.public_shape, f if trunc else 0)
        return job.op("matmul", [a, b], both, shape, a.fxp or b.fxp, prepare=prep)
    left = not isinstance(a, SecretTensor)
    x, pub = (b, _public(a)) if left else (a, _public(b))
    shape = static_shape(np.matmul, *((pub.shape, x.known_shape) if left else (x.known_shape, pub.shape)))
    integral = _is_integral(pub)
    c = encode_public(pub, not integral, f)
    trunc = x.fxp and not integral

    def step(ctx: Any, ins: list[Share]) -> Any:
        z = proto.matmul_public(ins[0], c, left=left)
        if trunc:
            z = yield from proto.truncate(ctx, z, f)
        return z

    return job.op("matmul_public", [x], step, shape, x.fxp or not integral)


@builder("divide")
def _divide(job: Any, a: Any, b: Any) -> SecretTensor:
    if not isinstance(b, SecretTensor):
        pub = _public(b).astype(np.float64)
        if np.any(pub == 0):
            raise ZeroDivisionError("division of a secret tensor by a public zero")
        return _mul(job, to_fxp(a), 1.0 / pub)
    return _mul(job, a, _unary(job, b, "reciprocal"))


@builder("power")
def _power(job: Any, x: SecretTensor, exponent: Any) -> SecretTensor:
    e = float(exponent)
    if e == 0.5:
        return _unary(job, x, "sqrt")
    if e == -0.5:
        return _unary(job, x, "rsqrt")
    if e == -1:
        return _unary(job, x, "reciprocal")
    if e != int(e) or e < 1:
        raise NotImplementedError(f"secret ** {exponent!r}: only positive integers, 0.5, -0.5, -1")
    n = int(e)
    result: SecretTensor | None = None
    base = x
    while n:  # square-and-multiply: log2(n) rounds
        if n & 1:
            result = base if result is None else _mul(job, result, base)
        n >>= 1
        if n:
            base = _mul(job, base, base)
    assert result is not None  # n >= 1 sets it in the first iteration
    return result


# ---- structure ---------------------------------------------------------------------------------
def _structural(job: Any, x: SecretTensor, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> SecretTensor:
    shape = static_shape(fn, x.known_shape)
    return job.op(name, [x], lambda ctx, ins: ins[0].map(fn), shape, x.fxp)


@builder("getitem")
def _getitem(job: Any, x: SecretTensor, *, index: Any) -> SecretTensor:
    return _structural(job, x, "getitem", lambda p: p[index])


@builder("reshape")
def _reshape(job: Any, x: SecretTensor, *, newshape: tuple[int, ...]) -> SecretTensor:
    return _structural(job, x, "reshape", lambda p: np.reshape(p, newshape))


@builder("transpose")
def _transpose(job: Any, x: SecretTensor, *, axes: tuple[int, ...] | None = None) -> SecretTensor:
    return _structural(job, x, "transpose", lambda p: np.transpose(p, axes))


@builder("broadcast_to")
def _broadcast_to(job: Any, x: SecretTensor, *, shape: tuple[int, ...]) -> SecretTensor:
    return _structural(job, x, "broadcast_to", lambda p: np.broadcast_to(p, shape))


@builder("sum")
def _sum(job: Any, x: SecretTensor, *, axis: Any = None, keepdims: bool = False) -> SecretTensor:
    return _structural(job, x, "sum", lambda p: np.sum(p, axis=axis, keepdims=keepdims, dtype=p.dtype))


@builder("mean")
def _mean(job: Any, x: SecretTensor, *, axis: Any = None, keepdims: bool = False) -> SecretTensor:
    x = to_fxp(x)
    proto = _proto(job)
    f = job.fxp_bits
    fn = lambda p: np.sum(p, axis=axis, keepdims=keepdims, dtype=p.dtype)
    shape = static_shape(fn, x.known_shape)

    def step(ctx: Any, ins: list[Share]) -> Any:
        full = ins[0].shape
        axes = range(len(full)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        count = int(np.prod([full[a] for a in axes], dtype=np.int64))
        if count == 0:
            raise ShapeError("mean of an empty secret tensor")
        z = proto.mul_public(ins[0].map(fn), encode_public(1.0 / count, True, f))
        return (yield from proto.truncate(ctx, z, f))

    return job.op("mean", [x], step, shape, True)


def join(job: Any, name: str, tensors: Sequence[Any], fn: Callable[[Sequence[np.ndarray]], np.ndarray]) -> SecretTensor:
    """concatenate / stack / hstack ... of secret tensors and public arrays."""
    fxp = any(t.fxp for t in tensors if isinstance(t, SecretTensor)) or any(
        not _is_integral(_public(t)) for t in tensors if not isinstance(t, SecretTensor)
    )
    secrets = [to_fxp(t) if fxp else t for t in tensors if isinstance(t, SecretTensor)]
    slots: list[Any] = []
    it = iter(secrets)
    for t in tensors:
        slots.append(next(it) if isinstance(t, SecretTensor) else encode_public(_public(t), fxp, job.fxp_bits))
    proto = _proto(job)
    shape = static_shape(lambda *arrs: fn(arrs), *[s.known_shape if isinstance(s, SecretTensor) else s.shape for s in slots])

    def step(ctx: Any, ins: list[Share]) -> Share:
        shares = iter(ins)
        parts = [next(shares) if isinstance(s, SecretTensor) else proto.public(s) for s in slots]
        return Share.combine(fn, parts)

    return job.op(name, secrets, step, shape, fxp)


# ---- comparisons, selection and non-linear functions (ops/_compare.py, ops/_nonlinear.py) -----
def _unary(job: Any, x: SecretTensor, name: str, module: str = "_nonlinear", fxp_out: bool = True) -> SecretTensor:
    proto = _proto(job)
    fn = _nl(module, name)
    x = to_fxp(x) if module == "_nonlinear" else x
    return job.op(name, [x], lambda ctx, ins: fn(ctx, proto, ins[0]), x.known_shape, fxp_out and x.fxp)


for _name in ("exp", "log", "sigmoid", "tanh", "sqrt", "rsqrt", "reciprocal"):
    BUILDERS[_name] = lambda job, x, _n=_name: _unary(job, x, _n)

for _name in ("relu", "absolute", "sign"):
    BUILDERS[_name] = lambda job, x, _n=_name: _unary(job, x, "abs_" if _n == "absolute" else _n, "_compare", _n != "sign")


def _as_secret(job: Any, value: Any, fxp: bool) -> SecretTensor:
    if isinstance(value, SecretTensor):
        return to_fxp(value) if fxp and not value.fxp else value
    return job.constant(value, fxp=fxp)


def _binary_compare(name: str, fxp_out: bool) -> Builder:
    def build_cmp(job: Any, a: Any, b: Any) -> SecretTensor:
        fxp = any(isinstance(t, SecretTensor) and t.fxp for t in (a, b)) or any(
            not isinstance(t, SecretTensor) and not _is_integral(_public(t)) for t in (a, b)
        )
        x, y = _as_secret(job, a, fxp), _as_secret(job, b, fxp)
        proto = _proto(job)
        fn = _nl("_compare", name)
        shape = static_shape(np.add, x.known_shape, y.known_shape)

        def step(ctx: Any, ins: list[Share]) -> Any:
            out = _common_shape(ins[0].shape, ins[1].shape)
            return fn(ctx, proto, _bcast(ins[0], out), _bcast(ins[1], out))

        return job.op(name, [x, y], step, shape, fxp and fxp_out)

    return build_cmp


for _name in ("less", "less_equal", "greater", "greater_equal", "equal"):
    BUILDERS[_name] = _binary_compare(_name, False)
for _name in ("maximum", "minimum"):
    BUILDERS[_name] = _binary_compare(_name, True)


def _reduce(name: str, fxp_out: bool | None) -> Builder:
    def build_reduce(job: Any, x: SecretTensor, *, axis: Any = None) -> SecretTensor:
        proto = _proto(job)
        fn = _nl("_compare", name)
        if axis is None:
            x = _reshape(job, x, newshape=(-1,))
            axis = 0
        shape = static_shape(lambda p: np.max(p, axis=axis), x.known_shape)
        out_fxp = x.fxp if fxp_out is None else fxp_out
        return job.op(name, [x], lambda ctx, ins: fn(ctx, proto, ins[0], axis=axis), shape, out_fxp)

    return build_reduce


BUILDERS["max"] = _reduce("max_", None)
BUILDERS["min"] = _reduce("min_", None)
BUILDERS["argmax"] = _reduce("argmax", False)


@builder("where")
def _where(job: Any, cond: Any, a: Any, b: Any) -> SecretTensor:
    """cond ? a : b == b + cond * (a - b) with an integer 0/1 cond (no truncation)."""
    if not isinstance(cond, SecretTensor):
        c = _public(cond).astype(bool).astype(np.int64)
        return _linear(job, _mul(job, _sub_any(job, a, b), c), b, subtract=False)
    diff = _sub_any(job, a, b)
    if cond.fxp:
        raise TypeError("where: the condition must be an integer 0/1 tensor (a comparison result)")
    return _linear(job, _mul(job, cond, diff), b, subtract=False)


def _sub_any(job: Any, a: Any, b: Any) -> Any:
    if isinstance(a, SecretTensor) or isinstance(b, SecretTensor):
        return _linear(job, a, b, subtract=True)
    diff = _public(a) - _public(b)
    return job.constant(diff, fxp=not _is_integral(diff))
