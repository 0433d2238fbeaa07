"""``mpcactors.jit``: JAX functions (``jax.grad`` included) on secret data, as SPU's ``spu.jit``.

Theory of operation
-------------------
``await mpc.jit(fn)(*args)`` traces ``fn`` with ``jax.make_jaxpr`` on abstract values: every
secret leaf of the arguments (a SecretTensor, or a pytree input) becomes a ``ShapeDtypeStruct``
(float32 for fixed point, int32 for integers); every other leaf (numpy arrays, Python numbers)
is passed as it is, so JAX folds it into the program as a constant and Python code may branch on
it. Tracing needs no communication (shapes travel with inputs).

The jaxpr is then interpreted equation by equation. An equation whose inputs are all public
runs in JAX itself (``primitive.bind``) and gives a public numpy value; one with a secret input
goes through the rule of its primitive in :data:`RULES`, which builds the same secret-tensor ops
a hand-written program would (so the scheduler merges their rounds across the whole program).
Sub-jaxprs (``jit``/``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, ``closed_call``, ``remat``)
are interpreted in place; ``scan`` (``fori_loop`` with static bounds) is unrolled. Equations whose
results nothing uses are dropped first (``jax.grad`` leaves the forward loss in its jaxpr).

Before that, :func:`mpcactors._jit_rewrite.rewrite` applies exact algebraic rewrites to the
jaxpr (constant folding, common subexpressions, ``1 / (1 + exp(-x))`` as the secure sigmoid, one
reciprocal per divisor, products reordered so the latest-ready factor comes last; docs/JIT.md
"Rewrites"); ``jit(fn, rewrite=False)`` interprets the jaxpr exactly as JAX traced it.

A primitive with no secure rule raises :class:`~mpcactors._errors.UnsupportedOperation` naming
the primitive and the line of user code that produced it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._errors import UnsupportedOperation
from ._functions import maximum, minimum, where
from ._jit_rewrite import live as _live
from ._jit_rewrite import rewrite
from ._log import get_logger
from ._pytree import flatten, unflatten
from .scheduler._input import SecretInput
from .scheduler._opset import to_fxp
from .scheduler._tensor import SecretTensor, apply

__all__ = ["RULES", "Jitted", "jit"]


def jit(fn: Callable[..., Any], *, rewrite: bool = True) -> Jitted:
    """Run the JAX function ``fn`` on secret tensors (see module doc); needs the ``jax`` extra.

    ``result = await mpc.jit(fn)(*args, **kwargs)`` inside a program: ``args`` are pytrees of
    secret tensors (or ``job.input`` results, awaited for you) and public values; ``result`` has
    ``fn``'s output structure with SecretTensors where the value depends on a secret and numpy
    arrays elsewhere. With no secret argument, ``fn`` simply runs in JAX.

    Args:
        fn: a function JAX can trace.
        rewrite: apply the exact algebraic rewrites of ``mpcactors._jit_rewrite`` to the jaxpr
            first (the default); False interprets the jaxpr as JAX traced it (for debugging).
    """
    return Jitted(fn, rewrite=rewrite)


class Jitted:
    """A function made by :func:`jit`; call it (and await the call) with secret arguments."""

    def __init__(self, fn: Callable[..., Any], *, rewrite: bool = True) -> None:
        self.fn = fn
        self.rewrite = rewrite
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"mpcactors.jit({getattr(self.fn, '__qualname__', self.fn)!r})"

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = flatten((args, kwargs))
        if any(isinstance(v, SecretInput) for v in leaves):
            leaves, treedef = flatten(unflatten(treedef, [await v if isinstance(v, SecretInput) else v for v in leaves]))
        secrets = [i for i, v in enumerate(leaves) if isinstance(v, SecretTensor)]
        for i in secrets:
            if leaves[i].known_shape is None:
                await leaves[i]
        return self.trace_and_run(leaves, treedef, secrets)

    def trace_and_run(self, leaves: list[Any], treedef: Any, secrets: list[int]) -> Any:
        """Trace with the secret leaves abstract and interpret the jaxpr (no await)."""
        import jax
        import jax.numpy as jnp

        if not secrets:
            a, kw = unflatten(treedef, leaves)
            return jax.tree_util.tree_map(np.asarray, self.fn(*a, **kw))
        job = leaves[secrets[0]].job

        def flat_fn(*secret_values: Any) -> Any:
            full = list(leaves)
            for i, v in zip(secrets, secret_values, strict=True):
                full[i] = v
            a, kw = unflatten(treedef, full)
            return self.fn(*a, **kw)

        specs = [
            jax.ShapeDtypeStruct(leaves[i].shape, jnp.float32 if leaves[i].fxp else jnp.int32) for i in secrets
        ]
        closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*specs)
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        traced = len(closed.jaxpr.eqns)
        fired: dict[str, int] = {}
        if self.rewrite:
            closed, counts = rewrite(closed, [bool(leaves[i].binary) for i in secrets])
            fired = dict(counts)
        interp = _Interpreter(job, name)
        get_logger(party=job.party, job=job.id, op="jit").debug(
            "jit traced", function=name, equations=traced, rewritten=len(closed.jaxpr.eqns), rewrites=fired,
            secret_inputs=len(secrets),
        )
        outs = interp.run_closed(closed, [leaves[i] for i in secrets])
        _, out_tree = jax.tree_util.tree_flatten(out_shape)
        return jax.tree_util.tree_unflatten(out_tree, outs)


# ---- the interpreter ---------------------------------------------------------------------------
Rule = Callable[..., Any]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for n in names:
            RULES[n] = fn
        return fn

    return register


class _Interpreter:
    """Evaluates jaxprs on a mix of public numpy values and secret tensors (module doc)."""

    def __init__(self, job: Any, name: str) -> None:
        self.job = job
        self.name = name

    def run_closed(self, closed: Any, args: Sequence[Any]) -> list[Any]:
        return self.run(closed.jaxpr, [np.asarray(c) for c in closed.consts], args)

    def run(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        from jax.extend.core import Literal

        env: dict[Any, Any] = {}

        def read(v: Any) -> Any:
            if isinstance(v, Literal):
                return np.asarray(v.val)
            return env[v]

        for var, val in zip(jaxpr.constvars, consts, strict=True):
            env[var] = val
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = val
        for eqn in _live(jaxpr):
            invals = [read(v) for v in eqn.invars]
            outs = self.eval_eqn(eqn, invals)
            for var, val in zip(eqn.outvars, outs, strict=True):
                env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def eval_eqn(self, eqn: Any, invals: list[Any]) -> list[Any]:
        prim = eqn.primitive
        name = prim.name
        if not any(isinstance(v, SecretTensor) for v in invals):
            outs = prim.bind(*invals, **eqn.params)
            return [np.asarray(o) for o in outs] if prim.multiple_results else [np.asarray(outs)]
        fn = RULES.get(name)
        if fn is None:
            raise self.unsupported(eqn, f"the JAX primitive {name!r} has no secure rule")
        try:
            out = fn(self, eqn, *invals, **eqn.params)
        except UnsupportedOperation as exc:
            if exc.args and "(at " in str(exc.args[0]):
                raise
            raise self.unsupported(eqn, str(exc)) from None
        return list(out) if prim.multiple_results else [out]

    def unsupported(self, eqn: Any, what: str) -> UnsupportedOperation:
        return UnsupportedOperation(f"mpcactors.jit({self.name}): {what} (at {_where(eqn)})")


def _where(eqn: Any) -> str:
    try:
        from jax._src import source_info_util

        return str(source_info_util.summarize(eqn.source_info))
    except Exception:  # noqa: BLE001 - a private JAX helper: the message still names the primitive
        return "unknown line"


def _secret(*values: Any) -> bool:
    return any(isinstance(v, SecretTensor) for v in values)


def _out_shape(eqn: Any, i: int = 0) -> tuple[int, ...]:
    return tuple(int(d) for d in eqn.outvars[i].aval.shape)


def _is_float(eqn: Any) -> bool:
    return np.dtype(eqn.outvars[0].aval.dtype).kind == "f"


# ---- elementwise arithmetic ----------------------------------------------------------------
@rule("add", "add_any")
def _add(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    return a + b


def _is_one(v: Any) -> bool:
    return not isinstance(v, SecretTensor) and np.size(v) == 1 and float(np.asarray(v).reshape(())) == 1.0


@rule("sub")
def _sub(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    return a - b


@rule("mul")
def _mul(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    return a * b


@rule("div")
def _div(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    if not _is_float(eqn):
        raise UnsupportedOperation("integer division of secret values has no secure rule")
    if isinstance(b, SecretTensor):
        r = apply("reciprocal", b)
        return r if _is_one(a) else a * r
    return a / b


@rule("integer_pow")
def _integer_pow(it: _Interpreter, eqn: Any, x: SecretTensor, *, y: int, **_: Any) -> Any:
    if y == 0:
        return np.ones(_out_shape(eqn), dtype=np.float32 if x.fxp else np.int32)
    base = x if y > 0 else apply("reciprocal", x)
    return base if abs(y) == 1 else base ** abs(y)


@rule("square")
def _square(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return x * x


@rule("pow")
def _pow(it: _Interpreter, eqn: Any, x: Any, y: Any, **_: Any) -> Any:
    if isinstance(y, SecretTensor) or np.size(y) != 1:
        raise UnsupportedOperation("pow with a secret or non-scalar exponent has no secure rule")
    e = float(np.asarray(y).reshape(()))
    if e == int(e) and e != 0:
        return _integer_pow(it, eqn, x, y=int(e))
    try:
        return x**e
    except NotImplementedError as exc:
        raise UnsupportedOperation(str(exc)) from None


for _name, _fn in (("log", "log"), ("logistic", "sigmoid"), ("tanh", "tanh"), ("sqrt", "sqrt"),
                   ("rsqrt", "rsqrt"), ("abs", "absolute"), ("sign", "sign")):  # fmt: skip
    RULES[_name] = lambda it, eqn, x, _fn=_fn, **_: apply(_fn, x)


@rule("exp")
def _exp(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return apply("exp", x)


@rule("neg")
def _neg(it: _Interpreter, eqn: Any, x: Any, **_: Any) -> Any:
    return -x


@rule("exp2")
def _exp2(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return apply("exp", x * math.log(2.0))


@rule("log1p")
def _log1p(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return apply("log", x + 1.0)


@rule("expm1")
def _expm1(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return apply("exp", x) - 1.0


@rule("max", "min")
def _max_min(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    big = eqn.primitive.name == "max"
    for s, p in ((a, b), (b, a)):  # max(x, -inf) = x, min(x, inf) = x
        if isinstance(s, SecretTensor) and not isinstance(p, SecretTensor):
            pv = np.asarray(p)
            if pv.size and np.all(np.isinf(pv)) and np.all((pv < 0) == big):
                return _broadcast(s, _out_shape(eqn))
    return maximum(a, b) if big else minimum(a, b)


@rule("clamp")
def _clamp(it: _Interpreter, eqn: Any, lo: Any, x: Any, hi: Any, **_: Any) -> Any:
    return maximum(minimum(x, hi), lo)


for _name, _op in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"), ("eq", "equal")):
    RULES[_name] = lambda it, eqn, a, b, _op=_op, **_: apply(_op, a, b)


@rule("ne")
def _ne(it: _Interpreter, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
    return 1 - apply("equal", a, b)


@rule("select_n")
def _select_n(it: _Interpreter, eqn: Any, pred: Any, *cases: Any, **_: Any) -> Any:
    if len(cases) != 2:
        raise UnsupportedOperation(f"select_n with {len(cases)} cases (only 2) has no secure rule")
    if isinstance(pred, SecretTensor) and pred.fxp:
        raise UnsupportedOperation("select_n on a fixed-point predicate has no secure rule")
    shape = _out_shape(eqn)
    out = where(pred, cases[1], cases[0])
    return _broadcast(out, shape)


@rule("convert_element_type")
def _convert(it: _Interpreter, eqn: Any, x: SecretTensor, *, new_dtype: Any, **_: Any) -> Any:
    kind = np.dtype(new_dtype).kind
    if kind == "f":
        return to_fxp(x)
    if kind == "b":
        return 1 - apply("equal", x, 0)
    if x.fxp:
        raise UnsupportedOperation(f"converting a secret real to {np.dtype(new_dtype)} has no secure rule")
    return x


@rule("is_finite")
def _is_finite(it: _Interpreter, eqn: Any, x: SecretTensor, **_: Any) -> Any:
    return np.ones(_out_shape(eqn), dtype=bool)  # fixed-point values are always finite


for _name in ("copy", "copy_p", "reduce_precision", "stop_gradient", "optimization_barrier"):
    RULES[_name] = lambda it, eqn, *xs, **_: xs if eqn.primitive.multiple_results else xs[0]


# ---- structure ---------------------------------------------------------------------------------
def _broadcast(x: Any, shape: tuple[int, ...]) -> Any:
    if not isinstance(x, SecretTensor):
        return np.broadcast_to(np.asarray(x), shape)
    if x.known_shape == shape:
        return x
    return apply("broadcast_to", x, shape=shape)


@rule("broadcast_in_dim")
def _broadcast_in_dim(it: _Interpreter, eqn: Any, x: SecretTensor, *dyn: Any, shape: Any, broadcast_dimensions: Any, **_: Any) -> Any:
    shape = tuple(int(d) for d in shape)
    expanded = [1] * len(shape)
    for src, dst in enumerate(broadcast_dimensions):
        expanded[int(dst)] = x.shape[src]
    y = x.reshape(tuple(expanded)) if tuple(expanded) != x.shape else x
    return _broadcast(y, shape)


@rule("reshape", "squeeze", "expand_dims")
def _reshape(it: _Interpreter, eqn: Any, x: SecretTensor, *dyn: Any, **params: Any) -> Any:
    if params.get("dimensions") is not None and eqn.primitive.name == "reshape":
        raise UnsupportedOperation("reshape with dimensions= has no secure rule")
    return x.reshape(_out_shape(eqn))


@rule("transpose")
def _transpose(it: _Interpreter, eqn: Any, x: SecretTensor, *, permutation: Any, **_: Any) -> Any:
    return x.transpose(tuple(int(p) for p in permutation))


@rule("slice")
def _slice(it: _Interpreter, eqn: Any, x: SecretTensor, *, start_indices: Any, limit_indices: Any, strides: Any, **_: Any) -> Any:
    steps = strides or (1,) * len(start_indices)
    return x[tuple(slice(int(a), int(b), int(s)) for a, b, s in zip(start_indices, limit_indices, steps, strict=True))]


@rule("rev")
def _rev(it: _Interpreter, eqn: Any, x: SecretTensor, *, dimensions: Any, **_: Any) -> Any:
    index = [slice(None)] * len(x.shape)
    for d in dimensions:
        index[int(d)] = slice(None, None, -1)
    return x[tuple(index)]


@rule("split")
def _split(it: _Interpreter, eqn: Any, x: SecretTensor, *, sizes: Any, axis: int, **_: Any) -> Any:
    outs, start = [], 0
    for size in sizes:
        index = [slice(None)] * len(x.shape)
        index[int(axis)] = slice(start, start + int(size))
        outs.append(x[tuple(index)])
        start += int(size)
    return outs


@rule("dynamic_slice")
def _dynamic_slice(it: _Interpreter, eqn: Any, x: Any, *starts: Any, slice_sizes: Any, **_: Any) -> Any:
    if _secret(*starts) or not isinstance(x, SecretTensor):
        raise UnsupportedOperation("dynamic_slice at a secret index has no secure rule")
    index = []
    for dim, (s, size) in enumerate(zip(starts, slice_sizes, strict=True)):
        start = min(max(int(np.asarray(s)), 0), x.shape[dim] - int(size))  # JAX clamps
        index.append(slice(start, start + int(size)))
    return x[tuple(index)]


@rule("concatenate")
def _concatenate(it: _Interpreter, eqn: Any, *xs: Any, dimension: int, **_: Any) -> Any:
    return np.concatenate(list(xs), axis=int(dimension))


@rule("pad")
def _pad(it: _Interpreter, eqn: Any, x: Any, value: Any, *, padding_config: Any, **_: Any) -> Any:
    if isinstance(value, SecretTensor) or not isinstance(x, SecretTensor):
        raise UnsupportedOperation("pad with a secret padding value has no secure rule")
    config = tuple((int(lo), int(hi), int(interior)) for lo, hi, interior in padding_config)
    out_shape = _out_shape(eqn)
    fn = functools.partial(_pad_array, config)
    padded = it.job.op("pad", [x], lambda ctx, ins: ins[0].map(fn, out_shape), out_shape, x.fxp)
    v = float(np.asarray(value))
    if v != 0.0:  # the padding positions get the public value
        mask = _pad_array(config, np.zeros(x.shape, dtype=np.float64)) + 0.0
        holes = _pad_array(config, np.ones(x.shape, dtype=np.float64)) == 0
        mask[holes] = v
        padded = padded + mask
    return padded


def _pad_array(config: tuple[tuple[int, int, int], ...], a: np.ndarray) -> np.ndarray:
    """lax.pad on one array with zeros: interior dilation, edge padding, negative pads crop."""
    shape = []
    for n, (lo, hi, interior) in zip(a.shape, config, strict=True):
        dilated = n + max(n - 1, 0) * interior
        shape.append(max(lo, 0) + dilated + max(hi, 0))
    out = np.zeros(tuple(shape), dtype=a.dtype)
    index = tuple(
        slice(max(lo, 0), max(lo, 0) + max(n - 1, 0) * (interior + 1) + 1, interior + 1)
        for n, (lo, _, interior) in zip(a.shape, config, strict=True)
    )
    out[index] = a
    crop = tuple(slice(-lo if lo < 0 else 0, s + hi if hi < 0 else s) for s, (lo, hi, _) in zip(shape, config, strict=True))
    return out[crop]


@rule("cumsum")
def _cumsum(it: _Interpreter, eqn: Any, x: SecretTensor, *, axis: int, reverse: bool, **_: Any) -> Any:
    def fn(p: np.ndarray) -> np.ndarray:
        q = np.flip(p, axis) if reverse else p
        c = np.cumsum(q, axis=axis, dtype=p.dtype)
        return np.flip(c, axis) if reverse else c

    return it.job.op("cumsum", [x], lambda ctx, ins: ins[0].map(fn), x.shape, x.fxp)


# ---- reductions and products ---------------------------------------------------------------
@rule("reduce_sum")
def _reduce_sum(it: _Interpreter, eqn: Any, x: SecretTensor, *, axes: Any, **_: Any) -> Any:
    return x.sum(axis=tuple(int(a) for a in axes))


@rule("reduce_max", "reduce_min")
def _reduce_max(it: _Interpreter, eqn: Any, x: SecretTensor, *, axes: Any, **_: Any) -> Any:
    op = "max" if eqn.primitive.name == "reduce_max" else "min"
    for a in sorted((int(a) for a in axes), reverse=True):
        x = apply(op, x, axis=a)
    return x


@rule("argmax")
def _argmax(it: _Interpreter, eqn: Any, x: SecretTensor, *, axes: Any, index_dtype: Any, **_: Any) -> Any:
    return apply("argmax", x, axis=int(axes[0]))


@rule("dot_general")
def _dot_general(it: _Interpreter, eqn: Any, a: Any, b: Any, *, dimension_numbers: Any, **_: Any) -> Any:
    """Transpose both sides to (batch, free, contract) / (batch, contract, free), reshape to
    3-d (or 2-d) and use one secure matmul; the reshapes are local."""
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = (tuple(int(d) for d in t) for t in (lc, rc, lb, rb))
    ash, bsh = np.shape(a) if not isinstance(a, SecretTensor) else a.shape, np.shape(b) if not isinstance(b, SecretTensor) else b.shape
    lf = tuple(d for d in range(len(ash)) if d not in lc and d not in lb)
    rf = tuple(d for d in range(len(bsh)) if d not in rc and d not in rb)
    batch = tuple(ash[d] for d in lb)
    m = math.prod(ash[d] for d in lf)
    k = math.prod(ash[d] for d in lc)
    n = math.prod(bsh[d] for d in rf)
    a2 = _transpose_any(a, lb + lf + lc)
    b2 = _transpose_any(b, rb + rc + rf)
    lead = (math.prod(batch),) if batch else ()
    a2 = _reshape_any(a2, lead + (m, k))
    b2 = _reshape_any(b2, lead + (k, n))
    out = a2 @ b2
    return _reshape_any(out, _out_shape(eqn))


def _transpose_any(x: Any, perm: tuple[int, ...]) -> Any:
    if perm == tuple(range(len(perm))):
        return x
    return x.transpose(perm) if isinstance(x, SecretTensor) else np.transpose(x, perm)


def _reshape_any(x: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(x, SecretTensor):
        return x if x.known_shape == shape else x.reshape(shape)
    return np.reshape(x, shape)


# ---- calls and loops -----------------------------------------------------------------------
@rule("pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint")
def _call(it: _Interpreter, eqn: Any, *args: Any, **params: Any) -> Any:
    from jax.extend.core import ClosedJaxpr

    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = params.get(key)
        if sub is None:
            continue
        if isinstance(sub, ClosedJaxpr):
            return it.run_closed(sub, args)
        return it.run(sub, [], args)
    raise UnsupportedOperation(f"{eqn.primitive.name} without a sub-jaxpr has no secure rule")


@rule("scan")
def _scan(it: _Interpreter, eqn: Any, *args: Any, jaxpr: Any, num_consts: int, num_carry: int, length: int, reverse: bool, **_: Any) -> Any:
    """A loop of static length, unrolled: each step's ops join the one graph."""
    consts, carry, xs = list(args[:num_consts]), list(args[num_consts : num_consts + num_carry]), args[num_consts + num_carry :]
    ys: list[list[Any]] = []
    for t in reversed(range(length)) if reverse else range(length):
        outs = it.run_closed(jaxpr, consts + carry + [x[t] for x in xs])
        carry = outs[:num_carry]
        ys.append(outs[num_carry:])
    if reverse:
        ys.reverse()
    stacked = []
    for j in range(len(eqn.outvars) - num_carry):
        column = [y[j] for y in ys]
        if not column:
            stacked.append(np.zeros(_out_shape(eqn, num_carry + j), dtype=eqn.outvars[num_carry + j].aval.dtype))
        elif _secret(*column):
            stacked.append(np.stack(column))
        else:
            stacked.append(np.stack([np.asarray(c) for c in column]))
    return carry + stacked


@rule("cond")
def _cond(it: _Interpreter, eqn: Any, index: Any, *args: Any, branches: Any, **_: Any) -> Any:
    if isinstance(index, SecretTensor):
        raise UnsupportedOperation("cond on a secret predicate has no secure rule (use jnp.where)")
    i = min(max(int(np.asarray(index)), 0), len(branches) - 1)
    return it.run_closed(branches[i], list(args))


@rule("while")
def _while(it: _Interpreter, eqn: Any, *args: Any, cond_jaxpr: Any, body_jaxpr: Any, cond_nconsts: int, body_nconsts: int, **_: Any) -> Any:
    cconsts, bconsts = list(args[:cond_nconsts]), list(args[cond_nconsts : cond_nconsts + body_nconsts])
    state = list(args[cond_nconsts + body_nconsts :])
    while True:
        (go,) = it.run_closed(cond_jaxpr, cconsts + state)
        if isinstance(go, SecretTensor):
            raise UnsupportedOperation("a while loop whose condition depends on a secret has no secure rule")
        if not bool(np.asarray(go)):
            return state
        state = it.run_closed(body_jaxpr, bconsts + state)


del _name
