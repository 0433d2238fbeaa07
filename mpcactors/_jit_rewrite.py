"""Rewrites of a jaxpr before ``mpcactors.jit`` interprets it on secret data (docs/JIT.md "Rewrites").

Theory of operation
-------------------
On secret data an equation's price is its rounds and its work, not its flops: a product costs a
round, a reciprocal or an ``exp`` a dozen or two, a negation or a public constant nothing. JAX's
jaxprs (``jax.grad``'s above all) are written for float hardware, so they spend secure ops
where an exact identity would not. :func:`rewrite` rebuilds the jaxpr in one forward pass,
equation by equation, and every rewrite is an identity of real arithmetic that holds for every
input, except *case-split*, which holds for inputs whose owner declared them 0/1
(``job.input(..., binary=True)``, checked at the owner) and fires only for those:

- *inline*: calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ...) are inlined, so the
  rules see across function boundaries (only the primal is ever evaluated);
- *fold*: an equation whose inputs are all public (the jaxpr's inputs are the secret leaves,
  so everything else is public) is evaluated now and becomes a constant, and so does a sum of
  public multiples of secrets whose secret terms cancel (``0.5 b + 0.5 (1 - b)`` is ``0.5``);
  ``x * 1``, ``x * -1``, ``x + 0``, ``--x``, ``x ** 1`` are ``x`` or ``-x``; ``x * 0`` and a
  product with a zero public matrix are zeros (secret values are finite fixed-point numbers);
- *cse*: an equation with the same primitive, inputs and parameters as an earlier one reuses
  its result;
- *sigmoid*: ``c / (1 + exp(-x))`` is ``c * sigmoid(x)`` (the secure sigmoid: fewer rounds than
  ``exp`` then a reciprocal, and no ``exp`` overflow for large ``|x|``);
- *reciprocal*: ``a / g`` is ``a * (1 / g)`` and ``g ** -k`` is ``(1 / g) ** k``, with ``1 / g``
  made once per ``g`` (``jax.grad`` of ``1 / g`` asks for ``g ** -2`` beside it);
- *sigmoid-derivative*: ``p * s**2 * exp(-x)`` with ``s = sigmoid(x)`` is ``p * s * (1 - s)``
  (``exp(-x) / (1 + exp(-x))**2 = s (1 - s)``): no secure ``exp``, and ``s (1 - s)`` is ready
  long before ``p``;
- *cancel*: factors ``g`` and ``1 / g`` of one product chain are both dropped;
- *case-split*: for a binary input b, every elementwise value v that depends on b is also built
  at b = 1 and at b = 0 (v1, v0: the other rules simplify them, ``s y + (1 - s)(1 - y)`` is
  ``s`` or ``1 - s``, so its reciprocal cancels); where v is read by anything but an
  elementwise op (a matmul, a reduction, an output), it becomes ``v0 + b (v1 - v0)`` if that is
  ready sooner than v (by the depth estimate). For the guide's gradient this is the
  hand-written ``s - y``: no reciprocal;
- *factor*: ``a*c + a*d`` (and ``-(a*c) + a*d``, ``a*c - a*d``) is ``a * (c ± d)``: one product;
- *reassociate*: a chain of products and negations is flattened and multiplied back two
  shallowest factors first (depth: rounds behind a value, estimated from a table of op costs),
  all public factors as one on the shallowest, so the factor that is ready last is multiplied
  last: one round follows it instead of one per factor after it; a public scale ``(p @ a) * c``
  moves into ``(p * c) @ a`` first, so it joins such a product too.

*reassociate* and *factor* look through a product only when its result is used once (use
counts taken before the pass), so they never duplicate work; a negation (free) always. Dead equations are
skipped before the pass and dropped after it (:func:`live`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["live", "rewrite"]

# Rounds on the critical path behind a secret result (rep3, measured; only the order matters).
# fmt: off
_COST = {"mul": 2, "dot_general": 2, "div": 31, "logistic": 18, "exp": 13, "log": 26, "tanh": 18, "sqrt": 29,
         "rsqrt": 31, "integer_pow": 4, "lt": 10, "gt": 10, "le": 10, "ge": 10, "eq": 10, "ne": 10, "max": 12,
         "min": 12, "reduce_max": 20, "reduce_min": 20, "argmax": 20, "select_n": 2, "abs": 12, "sign": 12}
# fmt: on
_AFFINE = ("add", "add_any", "sub", "neg", "mul")
# Equations a case-split looks through: elementwise maps, and ops that only move elements.
_ELEMENTWISE = frozenset((
    "add", "add_any", "sub", "mul", "neg", "div", "exp", "exp2", "log", "log1p", "expm1", "logistic", "tanh",
    "sqrt", "rsqrt", "integer_pow", "square", "pow", "max", "min", "abs", "sign",
))  # fmt: skip
# ... and unary ones that also apply to the binary value itself (int labels become floats)
_RESHAPING = frozenset((
    "reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose", "slice", "rev", "copy", "convert_element_type",
))  # fmt: skip
_CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call")


def rewrite(closed: Any, binary: Sequence[bool] = ()) -> tuple[Any, collections.Counter[str]]:
    """Rewrite the closed jaxpr ``closed`` (module doc); return the new one and how often each rule fired.

    ``binary[i]`` says that input i holds only 0s and 1s (a fact its owner declared): the
    *case-split* rule may then use it.
    """
    from jax.extend.core import ClosedJaxpr, Jaxpr

    r = _Rewriter()
    r.count_uses(closed.jaxpr)
    invars = [r.fresh(v.aval) for v in closed.jaxpr.invars]
    for v, flag in zip(invars, binary, strict=False):
        if flag:
            r.cases[v] = (v, r.constant(np.ones(v.aval.shape), v.aval), r.constant(np.zeros(v.aval.shape), v.aval))
    outs = r.inline(closed.jaxpr, [r.constant(np.asarray(c), v.aval) for v, c in zip(closed.jaxpr.constvars, closed.consts, strict=True)], invars)
    outs = [r.settle(None, a) for a in outs]
    eqns = live(Jaxpr([], invars, outs, r.eqns, debug_info=closed.jaxpr.debug_info))
    used = {id(v) for e in eqns for v in e.invars} | {id(v) for v in outs}
    consts = [(v, c) for v, c in r.consts if id(v) in used]
    jaxpr = Jaxpr([v for v, _ in consts], invars, outs, eqns, debug_info=closed.jaxpr.debug_info)
    return ClosedJaxpr(jaxpr, [c for _, c in consts]), r.fired


def live(jaxpr: Any) -> list[Any]:
    """The equations whose results reach an output (no effects are kept for their own sake)."""
    from jax.extend.core import Var

    needed = {v for v in jaxpr.outvars if isinstance(v, Var)}
    keep = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars if isinstance(v, Var)):
            keep.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, Var))
    keep.reverse()
    return keep


# Public equations folded with numpy (JAX's eager ``bind`` compiles each primitive and shape
# with XLA first: ~50 ms each, a second for a program); everything else goes through ``bind``.
_NUMPY: dict[str, Callable[..., Any]] = {
    "neg": np.negative, "add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply,
    "exp": np.exp, "log": np.log, "logistic": lambda x: 1 / (1 + np.exp(-x)),
}  # fmt: skip


class _Rewriter:
    """One forward pass: every equation is simplified, folded, matched and emitted (module doc)."""

    def __init__(self) -> None:
        self.eqns: list[Any] = []
        self.consts: list[tuple[Any, np.ndarray]] = []
        self.value: dict[Any, np.ndarray] = {}  # constant var -> its value
        self.defn: dict[Any, Any] = {}  # emitted var -> the equation that made it
        self.depth: dict[Any, int] = {}  # emitted var -> estimated rounds behind it
        self.seen: dict[Any, list[Any]] = {}  # CSE key -> outvars
        self.recip: dict[Any, Any] = {}  # g -> 1/g
        self.recip_arg: dict[Any, Any] = {}  # 1/g -> g
        self.cases: dict[Any, tuple[Any, Any, Any]] = {}  # v -> (b, v at b = 1, v at b = 0), b binary
        self.settled: dict[Any, Any] = {}  # v -> what stands for it at a consumer (case-split)
        self.sigmoid_of: dict[Any, Any] = {}  # x -> sigmoid(x)
        self.uses: collections.Counter[Any] = collections.Counter()  # original var -> uses
        self.uses_of: dict[Any, int] = {}  # emitted var -> uses of the original vars it stands for
        self.forms: dict[Any, tuple[dict[Any, np.ndarray], np.ndarray]] = {}  # var -> affine form
        self.private: set[Any] = set()  # products made by the pass, used once by construction
        self.fired: collections.Counter[str] = collections.Counter()

    # ---- atoms ---------------------------------------------------------------------------------
    def fresh(self, aval: Any) -> Any:
        from jax.extend.core import Var

        return Var(aval)

    def constant(self, value: np.ndarray, aval: Any) -> Any:
        from jax.core import ShapedArray

        value = np.asarray(value, dtype=aval.dtype)
        var = self.fresh(ShapedArray(value.shape, value.dtype, weak_type=getattr(aval, "weak_type", False)))
        self.consts.append((var, value))
        self.value[var] = value
        return var

    def is_const(self, atom: Any) -> bool:
        return self.const(atom) is not None

    def const(self, atom: Any) -> np.ndarray | None:
        from jax.extend.core import Literal

        if isinstance(atom, Literal):
            return np.asarray(atom.val)
        return self.value.get(atom)

    def is_scalar(self, atom: Any, number: float) -> bool:
        c = self.const(atom)
        return c is not None and c.size > 0 and bool(np.all(c == number))

    def count_uses(self, jaxpr: Any) -> None:
        from jax.extend.core import Var

        for eqn in live(jaxpr):  # uses by dead equations do not count
            self.uses.update(v for v in eqn.invars if isinstance(v, Var))
        self.uses.update(v for v in jaxpr.outvars if isinstance(v, Var))

    def single_use(self, var: Any) -> bool:
        from jax.extend.core import Var

        return isinstance(var, Var) and self.uses_of.get(var, 2) <= 1

    # ---- the pass ------------------------------------------------------------------------------
    def inline(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        from jax.extend.core import Literal

        env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
        env.update(zip(jaxpr.invars, args, strict=True))

        def read(v: Any) -> Any:
            return v if isinstance(v, Literal) else env[v]

        for eqn in live(jaxpr):
            ins = [read(v) for v in eqn.invars]
            split = self.splits(eqn, ins) if self.cases else None
            if self.cases and split is None and eqn.primitive.name not in _CALLS:
                ins = [self.settle(eqn, a) for a in ins]
            outs = self.process(eqn, ins)
            self.count(eqn, ins, outs)
            for var, new in zip(eqn.outvars, outs, strict=True):
                env[var] = new
            if split is not None and not self.is_const(outs[0]) and not self.has_cases(outs[0]):
                b, ins1, ins0 = split
                one, zero = self.process(eqn, ins1), self.process(eqn, ins0)
                self.count(eqn, ins1, one)
                self.count(eqn, ins0, zero)
                self.cases[outs[0]] = (b, one[0], zero[0])
        return [read(v) for v in jaxpr.outvars]

    def count(self, eqn: Any, ins: list[Any], outs: list[Any]) -> None:
        """The uses of ``eqn``'s outputs are now uses of ``outs``, minus this equation's if it was
        an identity of its input (``x * 1`` is ``x``); a cse hit adds uses."""
        for var, new in zip(eqn.outvars, outs, strict=True):
            if not self.is_const(new):
                self.uses_of[new] = self.uses_of.get(new, 0) + self.uses[var] - sum(1 for a in ins if a is new)

    # ---- case-split on a binary value ------------------------------------------------------------
    def splits(self, eqn: Any, ins: list[Any]) -> tuple[Any, list[Any], list[Any]] | None:
        """For an elementwise (or reshaping) equation over values with cases on ONE binary ``b``:
        ``(b', its inputs at b = 1, at b = 0)``, where b' is b as this equation reshapes it."""
        name = eqn.primitive.name
        held = [a for a in ins if self.has_cases(a)]
        if not held or len(eqn.outvars) != 1:
            return None
        if name in _RESHAPING:
            if not self.has_cases(ins[0]) or len(held) > 1:
                return None
            b, one, zero = self.cases[ins[0]]
            (bb,) = self.process(eqn, [b, *ins[1:]])
            return bb, [one, *ins[1:]], [zero, *ins[1:]]
        if name not in _ELEMENTWISE or len({self.cases[a][0] for a in held}) != 1:
            return None
        shape = eqn.outvars[0].aval.shape
        if any(a.aval.shape != shape and getattr(self.const(a), "size", 0) != 1 for a in ins):
            return None
        b = self.cases[held[0]][0]
        return b, [self.cases[a][1] if self.has_cases(a) else a for a in ins], [self.cases[a][2] if self.has_cases(a) else a for a in ins]

    def has_cases(self, a: Any) -> bool:
        from jax.extend.core import Var

        return isinstance(a, Var) and a in self.cases

    def settle(self, eqn: Any, a: Any) -> Any:
        """What a consumer that does not propagate cases reads for ``a``: ``a`` itself, or, when
        its two cases are ready sooner than ``a``, ``v0 + b (v1 - v0)`` (*case-split*)."""
        from jax import lax

        if not self.has_cases(a):
            return a
        if a in self.settled:
            return self.settled[a]
        b, one, zero = self.cases[a]
        merged_depth = max(self.depth.get(one, 0), self.depth.get(zero, 0)) + _COST["mul"]
        out = a
        if merged_depth < self.depth.get(a, 0):
            self.fired["case-split"] += 1
            template = eqn if eqn is not None else self.defn[a]
            diff = self.emit(template, lax.sub_p, [one, zero], a.aval)
            out = self.emit(template, lax.add_p, [zero, self.emit(template, lax.mul_p, [b, diff], a.aval)], a.aval)
        self.settled[a] = out
        return out

    def process(self, eqn: Any, ins: list[Any]) -> list[Any]:
        """The atoms standing for ``eqn``'s outputs, given the atoms of its inputs."""
        from jax.extend.core import ClosedJaxpr

        name = eqn.primitive.name
        if eqn.effects:
            return self.emit_raw(eqn, ins)
        if all(self.is_const(a) for a in ins):
            return self.fold(eqn, ins)
        if name in _CALLS:
            sub = eqn.params.get("call_jaxpr", eqn.params.get("jaxpr"))
            if isinstance(sub, ClosedJaxpr):
                self.fired["inline"] += 1
                self.count_uses(sub.jaxpr)
                consts = [self.constant(np.asarray(c), v.aval) for v, c in zip(sub.jaxpr.constvars, sub.consts, strict=True)]
                return self.inline(sub.jaxpr, consts, ins)
        form = self.affine(name, ins) if name in _AFFINE else None
        if form is not None and not form[0]:  # every secret term cancelled: a public constant
            self.fired["fold"] += 1
            aval = eqn.outvars[0].aval
            return [self.constant(np.broadcast_to(form[1], aval.shape), aval)]
        rule = getattr(self, f"rule_{name}", None)
        out = rule(eqn, *ins, **eqn.params) if rule is not None else None
        outs = [out] if out is not None else self.emit_raw(eqn, ins)
        if form is not None and not self.is_const(outs[0]):
            self.forms.setdefault(outs[0], form)
        return outs

    def affine(self, name: str, ins: list[Any]) -> tuple[dict[Any, np.ndarray], np.ndarray] | None:
        """The result as ``sum(coef * secret) + public`` over at most 8 secret values, or None.

        Sums and public multiples of secrets are tracked so that terms which cancel exactly
        (``h*b + (1-h)*(1-b)`` with a public ``h = 0.5`` is ``0.5``) fold to a public constant.
        """
        forms = [self.form(a) for a in ins]
        if name == "neg":
            terms, c0 = forms[0]
            return {v: -c for v, c in terms.items()}, -c0
        if name == "mul":
            (ta, ca), (tb, cb) = forms
            if ta and tb:
                return None
            terms, c0, k = (ta, ca, cb) if ta else (tb, cb, ca)
            return {v: c * k for v, c in terms.items()}, c0 * k
        (ta, ca), (tb, cb) = forms
        sign = -1.0 if name == "sub" else 1.0
        terms = dict(ta)
        for v, c in tb.items():
            terms[v] = terms[v] + sign * c if v in terms else sign * c
        terms = {v: c for v, c in terms.items() if np.any(c != 0)}
        return (terms, ca + sign * cb) if len(terms) <= 8 else None

    def form(self, atom: Any) -> tuple[dict[Any, np.ndarray], np.ndarray]:
        c = self.const(atom)
        if c is not None:
            return {}, c
        return self.forms.get(atom) or ({atom: np.ones((), dtype=atom.aval.dtype)}, np.zeros((), dtype=atom.aval.dtype))

    def fold(self, eqn: Any, ins: list[Any]) -> list[Any]:
        self.fired["fold"] += 1
        name, values = eqn.primitive.name, [np.asarray(self.const(a)) for a in ins]
        aval = eqn.outvars[0].aval
        if name in _NUMPY or name == "div" and np.dtype(aval.dtype).kind == "f":
            with np.errstate(all="ignore"):
                out = (_NUMPY.get(name) or np.divide)(*[v.astype(aval.dtype) for v in values])
            return [self.constant(np.asarray(out, dtype=aval.dtype), aval)]
        if name == "broadcast_in_dim" and len(values) == 1:
            expanded = [1] * len(aval.shape)
            for src, dst in enumerate(eqn.params["broadcast_dimensions"]):
                expanded[int(dst)] = values[0].shape[src]
            return [self.constant(np.broadcast_to(values[0].reshape(expanded), aval.shape), aval)]
        if name == "integer_pow" and np.dtype(aval.dtype).kind == "f":
            return [self.constant(np.asarray(values[0], dtype=aval.dtype) ** float(eqn.params["y"]), aval)]
        outs = eqn.primitive.bind(*values, **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        return [self.constant(np.asarray(o), v.aval) for o, v in zip(outs, eqn.outvars, strict=True)]

    def emit_raw(self, eqn: Any, ins: list[Any]) -> list[Any]:
        """Append ``eqn`` on the new inputs (or reuse an identical earlier equation)."""
        from jax.extend.core import new_jaxpr_eqn

        key = self.cse_key(eqn, ins)
        if key is not None and key in self.seen:
            self.fired["cse"] += 1
            self.private.difference_update(self.seen[key])  # used twice now
            return self.seen[key]
        outs = [self.fresh(v.aval) for v in eqn.outvars]
        new = new_jaxpr_eqn(ins, outs, eqn.primitive, dict(eqn.params), eqn.effects, eqn.source_info, eqn.ctx)
        self.eqns.append(new)
        cost = 0
        if any(not self.is_const(a) for a in ins):
            secret_ins = [a for a in ins if not self.is_const(a)]
            cost = _COST.get(eqn.primitive.name, 0)
            if eqn.primitive.name in ("mul", "dot_general") and len(secret_ins) < 2:
                cost = 0 if eqn.primitive.name == "dot_general" else 1  # public products: a truncation at most
            cost += max(self.depth.get(a, 0) for a in secret_ins)
        for o in outs:
            self.defn[o] = new
            self.depth[o] = cost
        if key is not None:
            self.seen[key] = outs
        return outs

    def cse_key(self, eqn: Any, ins: list[Any]) -> Any:
        parts = []
        for a in ins:
            c = self.const(a)
            parts.append(("c", c.dtype.str, c.shape, c.tobytes()) if c is not None and c.size <= 16 else ("v", id(a)))
        try:
            key = (eqn.primitive, tuple(parts), tuple(sorted(eqn.params.items())))
            hash(key)
        except TypeError:
            return None
        return key

    def emit(self, template: Any, prim: Any, ins: list[Any], aval: Any, **params: Any) -> Any:
        """A new one-output equation ``prim(*ins)`` (through the rules again), at ``template``'s line."""
        from jax.extend.core import new_jaxpr_eqn

        if prim.name == "mul":
            params.setdefault("out_dtype", None)
        eqn = new_jaxpr_eqn(list(ins), [self.fresh(aval)], prim, params, template.effects, template.source_info, template.ctx)
        return self.process(eqn, list(ins))[0]

    def of(self, var: Any, name: str) -> Any:
        """The equation that made ``var`` if it is a ``name``, else None."""
        from jax.extend.core import Var

        eqn = self.defn.get(var) if isinstance(var, Var) else None
        return eqn if eqn is not None and eqn.primitive.name == name else None

    # ---- rules (each returns the output atom, or None to emit the equation as it is) ------------
    def rule_mul(self, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
        from jax import lax

        aval = eqn.outvars[0].aval
        for p, q in ((a, b), (b, a)):
            pc = self.const(p)
            if pc is not None and not self.is_const(q):
                if self.is_scalar(p, 0.0):
                    self.fired["fold"] += 1
                    return self.constant(np.zeros(aval.shape), aval)
                if self.is_scalar(p, 1.0) and q.aval.shape == aval.shape:
                    self.fired["fold"] += 1
                    return q
                if self.is_scalar(p, -1.0) and q.aval.shape == aval.shape:
                    self.fired["fold"] += 1
                    return self.emit(eqn, lax.neg_p, [q], aval)
                if pc.size == 1 and self.of(q, "dot_general") is not None and self.single_use(q):
                    out = self.scale_dot(eqn, q, p)
                    if out is not None:
                        return out
        return self.product(eqn, a, b)

    def scale_dot(self, eqn: Any, q: Any, c: Any) -> Any:
        """``(p @ a) * c`` with ``p`` a product is ``(p * c) @ a``, so ``c`` joins that product."""
        from jax import lax

        dot = self.of(q, "dot_general")
        left, right = dot.invars
        for i, side in enumerate((left, right)):
            inner = self.strip_neg(side)[1]
            if self.of(inner, "mul") is not None and self.single_use(inner) and self.single_use(side):
                self.fired["reassociate"] += 1
                scaled = self.emit(eqn, lax.mul_p, [side, c], side.aval)
                ins = [scaled, right] if i == 0 else [left, scaled]
                return self.emit(dot, dot.primitive, ins, eqn.outvars[0].aval, **dot.params)
        return None

    def product(self, eqn: Any, a: Any, b: Any) -> Any:
        """Flatten a chain of products and negations, apply *sigmoid-derivative*, and multiply the
        factors back shallowest first (a public scale on the shallowest secret factor), so the
        factor that is ready last is multiplied last: *reassociate*."""
        from jax import lax

        aval = eqn.outvars[0].aval
        factors: list[Any] = []
        scale = np.ones((), dtype=aval.dtype)
        sign = False

        def collect(v: Any) -> bool:
            nonlocal scale, sign
            c = self.const(v)
            if c is not None:
                if c.size == 1:
                    scale = scale * c.reshape(())
                    return True
                factors.append(v)
                return c.shape == aval.shape
            if v.aval.shape != aval.shape:
                return False
            neg = self.of(v, "neg")
            if neg is not None:  # a negation is free: looked through even when used twice
                sign = not sign
                return collect(neg.invars[0])
            if v in self.private or self.single_use(v):
                mul = self.of(v, "mul")
                if mul is not None:
                    return all(collect(x) for x in mul.invars)
            factors.append(v)
            return True

        if not (collect(a) and collect(b)):
            return None
        replaced = self.sigmoid_derivative(eqn, factors) | self.cancel(factors)
        if float(scale) < 0:
            sign, scale = not sign, -scale
        moves = (float(scale) != 1.0 or any(self.is_const(f) for f in factors)) and len(factors) > 1
        if not replaced and not moves and len(factors) <= 2:
            return None
        if len(factors) > 2 or moves:
            self.fired["reassociate"] += 1
        secret = sorted((f for f in factors if not self.is_const(f)), key=lambda f: self.depth.get(f, 0))
        public = [f for f in factors if self.is_const(f)]
        if not secret:
            return None
        for p in public:  # one public factor: one truncation
            scale = scale * self.const(p)
        if np.any(scale != 1.0):
            secret[0] = self.multiply(eqn, secret[0], self.constant(scale, aval))
        while len(secret) > 1:  # multiply the two shallowest (Huffman's order on depth)
            secret.sort(key=lambda f: self.depth.get(f, 0))
            secret[:2] = [self.multiply(eqn, secret[0], secret[1])]
        return self.emit(eqn, lax.neg_p, [secret[0]], aval) if sign else secret[0]

    def multiply(self, eqn: Any, a: Any, b: Any) -> Any:
        from jax import lax
        from jax.extend.core import new_jaxpr_eqn

        aval = eqn.outvars[0].aval
        (out,) = self.emit_raw(new_jaxpr_eqn([a, b], [self.fresh(aval)], lax.mul_p, {"out_dtype": None}, eqn.effects, eqn.source_info, eqn.ctx), [a, b])
        self.private.add(out)
        return out

    def strip_neg(self, var: Any) -> tuple[bool, Any]:
        neg = self.of(var, "neg")
        if neg is not None and (var in self.private or self.single_use(var)):
            return True, neg.invars[0]
        return False, var

    def cancel(self, factors: list[Any]) -> bool:
        """Factors ``g`` and ``1 / g`` both present: *cancel* them (``g (1 / g) = 1``)."""
        done = False
        for r in [f for f in factors if f in self.recip_arg]:
            g = self.recip_arg[r]
            if r in factors and g in factors:
                factors.remove(r)
                factors.remove(g)
                self.fired["cancel"] += 1
                done = True
        return done

    def sigmoid_derivative(self, eqn: Any, factors: list[Any]) -> bool:
        """Factors ``exp(-x)`` and ``s**2`` with ``s = sigmoid(x)`` become the factors ``s`` and ``1 - s``."""
        from jax import lax

        for i, f in enumerate(factors):
            exp = self.of(f, "exp")
            neg = self.of(exp.invars[0], "neg") if exp is not None else None
            s = self.sigmoid_of.get(neg.invars[0]) if neg is not None else None
            if s is None:
                continue
            for j, sq in enumerate(factors):
                pw = self.of(sq, "integer_pow")
                if pw is None or pw.invars[0] is not s or pw.params["y"] != 2:
                    continue
                self.fired["sigmoid-derivative"] += 1
                one = self.constant(np.ones(()), s.aval)
                # two factors, not their product: the pass multiplies them first (they are the
                # shallowest), and *cancel* can still find s
                factors[:] = [v for k, v in enumerate(factors) if k not in (i, j)] + [s, self.emit(eqn, lax.sub_p, [one, s], s.aval)]
                return True
        return False

    def rule_dot_general(self, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
        if self.is_scalar(a, 0.0) or self.is_scalar(b, 0.0):
            self.fired["fold"] += 1
            aval = eqn.outvars[0].aval
            return self.constant(np.zeros(aval.shape), aval)
        return None

    def rule_neg(self, eqn: Any, x: Any, **_: Any) -> Any:
        inner = self.of(x, "neg")
        if inner is not None:
            self.fired["fold"] += 1
            return inner.invars[0]
        return None

    def rule_add(self, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
        from jax import lax

        aval = eqn.outvars[0].aval
        for p, q in ((a, b), (b, a)):
            if self.is_scalar(p, 0.0) and not self.is_const(q) and q.aval.shape == aval.shape:
                self.fired["fold"] += 1
                return q
        return self.factor(eqn, a, b, lax.add_p)

    rule_add_any = rule_add

    def rule_sub(self, eqn: Any, a: Any, b: Any, **_: Any) -> Any:
        from jax import lax

        aval = eqn.outvars[0].aval
        if self.is_scalar(b, 0.0) and not self.is_const(a) and a.aval.shape == aval.shape:
            self.fired["fold"] += 1
            return a
        return self.factor(eqn, a, b, lax.sub_p)

    def factor(self, eqn: Any, a: Any, b: Any, op: Any) -> Any:
        """``±(k*c) ± (k*d)`` with a shared secret factor ``k`` is ``k * (±c ± d)``."""
        from jax import lax

        aval = eqn.outvars[0].aval
        (sa, pa), (sb, pb) = self.strip_neg(a), self.strip_neg(b)
        ma, mb = self.of(pa, "mul"), self.of(pb, "mul")
        if ma is None or mb is None or not (self.single_use(pa) and self.single_use(pb)):
            return None
        shared = [k for k in ma.invars if k in mb.invars and not self.is_const(k)]
        if not shared:
            return None
        k = shared[0]
        c = ma.invars[1] if ma.invars[0] is k else ma.invars[0]
        d = mb.invars[1] if mb.invars[0] is k else mb.invars[0]
        if k.aval.shape != aval.shape or c.aval.shape != aval.shape or d.aval.shape != aval.shape:
            return None
        sb = sb != (op is lax.sub_p)  # a - b = a + (-b)
        self.fired["factor"] += 1
        if sa and sb:
            rest = self.emit(eqn, lax.neg_p, [self.emit(eqn, lax.add_p, [c, d], aval)], aval)
        elif sa:
            rest = self.emit(eqn, lax.sub_p, [d, c], aval)
        elif sb:
            rest = self.emit(eqn, lax.sub_p, [c, d], aval)
        else:
            rest = self.emit(eqn, lax.add_p, [c, d], aval)
        return self.emit(eqn, lax.mul_p, [k, rest], aval)

    def rule_div(self, eqn: Any, a: Any, g: Any, **_: Any) -> Any:
        from jax import lax

        if self.is_const(g) or np.dtype(eqn.outvars[0].aval.dtype).kind != "f":
            return None
        if self.is_scalar(a, 1.0) and g.aval.shape == eqn.outvars[0].aval.shape:
            return self.reciprocal(eqn, g)
        self.fired["reciprocal"] += 1
        return self.emit(eqn, lax.mul_p, [a, self.reciprocal(eqn, g)], eqn.outvars[0].aval)

    def reciprocal(self, eqn: Any, g: Any) -> Any:
        """``1 / g``, once per ``g``; ``1 / (1 + exp(-x))`` is ``sigmoid(x)``."""
        from jax import lax
        from jax.extend.core import new_jaxpr_eqn

        if g in self.recip:
            self.fired["reciprocal"] += 1
            return self.recip[g]
        add = self.of(g, "add")
        if add is not None:
            for one, e in (add.invars, add.invars[::-1]):
                exp = self.of(e, "exp")
                neg = self.of(exp.invars[0], "neg") if exp is not None else None
                if self.is_scalar(one, 1.0) and neg is not None and neg.invars[0].aval.shape == g.aval.shape:
                    self.fired["sigmoid"] += 1
                    x = neg.invars[0]
                    s = self.emit(eqn, lax.logistic_p, [x], g.aval, accuracy=None)
                    self.sigmoid_of[x] = s
                    self.recip[g] = s
                    return s
        one = self.constant(np.ones(()), g.aval)
        (r,) = self.emit_raw(new_jaxpr_eqn([one, g], [self.fresh(g.aval)], lax.div_p, {}, eqn.effects, eqn.source_info, eqn.ctx), [one, g])
        self.recip[g] = r
        self.recip_arg[r] = g
        return r

    def rule_integer_pow(self, eqn: Any, x: Any, *, y: int, **_: Any) -> Any:
        from jax import lax

        if y == 1:
            self.fired["fold"] += 1
            return x
        if y >= 0 or np.dtype(x.aval.dtype).kind != "f":
            return None
        self.fired["reciprocal"] += 1
        r = self.reciprocal(eqn, x)
        return r if y == -1 else self.emit(eqn, lax.integer_pow_p, [r], eqn.outvars[0].aval, y=-y)

    def rule_logistic(self, eqn: Any, x: Any, **_: Any) -> Any:
        (s,) = self.emit_raw(eqn, [x])
        self.sigmoid_of.setdefault(x, s)
        return s
