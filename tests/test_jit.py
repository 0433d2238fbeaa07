"""mpcactors.jit: JAX programs on secret data give what plain JAX gives (within fixed point).

Every case runs the same function in plain JAX (float32) on the revealed inputs and compares.
The primitive cases share one job per protocol (their rounds merge, so the job costs about the
rounds of the deepest case); shapes are drawn from a seeded generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors.cli import load_program

jax = pytest.importorskip("jax")
jnp = jax.numpy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def draw(seed: int) -> tuple[np.ndarray, ...]:
    """Inputs of random shapes: x, y (m, n), w (n, k), b (2, m, n), integers i (m, n)."""
    rng = np.random.default_rng(seed)
    m, n, k = (int(d) for d in rng.integers(2, 6, size=3))
    return (
        rng.uniform(-2, 2, (m, n)),
        rng.uniform(0.5, 3, (m, n)),  # positive: divisors, logs, square roots
        rng.uniform(-1, 1, (n, k)),
        rng.uniform(-1, 1, (2, m, n)),
        rng.integers(-3, 4, (m, n)),
    )


X, Y, W, B3, I = draw(17)
M, N, K = X.shape + W.shape[1:]
PUBLIC = np.random.default_rng(18).uniform(-1, 1, (N, K))


@jax.custom_vjp
def clip_gradient(x):
    return x * 1.0


clip_gradient.defvjp(lambda x: (x * 1.0, None), lambda _, g: (jnp.clip(g, -0.5, 0.5),))


@jax.jit
def inner(x, w):
    return jnp.tanh(x @ w)


def _loss(x, w):
    return jnp.sum(jax.nn.sigmoid(x @ w) ** 2) + jnp.sum(clip_gradient(x @ w))


# name -> (function of the secret inputs x, y, w, b3, i)
CASES = {
    "arithmetic": lambda x, y, w, b, i: (x + y, x - 2.5 * y, x * y, -x, x / y, x / 4.0, 3.0 - x),
    "broadcasting": lambda x, y, w, b, i: (x + y[0], x * y[:, :1], b + x, 2.0 + b),
    "dot_general": lambda x, y, w, b, i: (
        x @ w,
        jnp.dot(x[0], w),
        jnp.einsum("bmn,nk->bmk", b, w),
        jnp.einsum("bmn,bmn->b", b, b),
        jnp.tensordot(x, y, axes=2),
        x @ np.linspace(-1, 1, w.shape[0] * 2).reshape(-1, 2),
    ),
    "reductions": lambda x, y, w, b, i: (
        jnp.sum(x, axis=0),
        jnp.mean(b, axis=(0, 2)),
        jnp.max(x, axis=1),
        jnp.min(b),
        jnp.argmax(x, axis=1),
    ),
    "structure": lambda x, y, w, b, i: (
        x.reshape(-1),
        x.T,
        jnp.expand_dims(x, 1),
        jnp.squeeze(x[:1]),
        x[1:, ::2],
        x[::-1],
        jnp.concatenate([x, y], axis=1),
        jnp.pad(x, ((1, 0), (0, 2))),
        jnp.pad(x, ((0, 1), (1, 1)), constant_values=0.5),
        jnp.array_split(x.reshape(-1), 3)[1],
        jnp.cumsum(x, axis=1),
        jnp.broadcast_to(x[0], (3, x.shape[1])),
        jax.lax.pad(x, 0.0, ((1, -1, 1), (0, 2, 0))),
        jax.lax.dynamic_slice(x, (1, 0), (1, 2)),
        jax.grad(lambda a: jnp.sum(a[1:, ::2] * a[:1, ::2]))(x),
    ),
    "select_and_compare": lambda x, y, w, b, i: (
        jnp.where(x > 0, x, y),
        x < y,
        x <= 0.25,
        x >= 0.5,
        i == 1,
        i != 0,
        jnp.maximum(x, y),
        jnp.minimum(x, 0.0),
        jnp.clip(x, -1.0, 1.0),
        jnp.abs(x),
    ),
    "nonlinear": lambda x, y, w, b, i: (
        jnp.exp(x),
        jnp.log(y),
        jax.nn.sigmoid(x),
        jnp.tanh(x),
        jnp.sqrt(y),
        jax.lax.rsqrt(y),
        x**3,
        y**-2,
        1 / (1 + jnp.exp(-x)),
        jax.nn.relu(x),
        jax.nn.softplus(x),
    ),
    "calls_and_loops": lambda x, y, w, b, i: (
        inner(x, w),
        jax.jit(lambda a: jax.nn.relu(a) * 2)(x),
        clip_gradient(x),
        jax.lax.fori_loop(0, 3, lambda _, c: c * 0.5 + x, y),
        jax.grad(_loss, argnums=1)(x, w),
        jax.grad(lambda a: jnp.sum(jnp.where(a > 0, a * a, -a)))(x),
        jax.grad(lambda a: jnp.sum(jnp.max(a, axis=1)))(x),
        i * 2 + i,
        jax.checkpoint(lambda a: jnp.tanh(a) * a)(x),
        jax.lax.cond(True, lambda a: a * 2, lambda a: -a, x),
        jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 0.5 + y, c[1] + 1), (x, 0))[0],
    ),
    "more_elementwise": lambda x, y, w, b, i: (
        jnp.exp2(x),
        jnp.expm1(x),
        jnp.log1p(y),
        jnp.sign(x),
        jnp.square(x),
        jax.lax.pow(y, 0.5),
        jax.lax.pow(y, 3.0),
        jax.lax.clamp(-1.0, x, 1.0),
        jax.lax.stop_gradient(x) + jnp.isfinite(x),
        jax.lax.reduce_precision(x, 8, 23),
        jax.lax.optimization_barrier(x),
        jnp.array(x, copy=True),
        jnp.where(i > 0, i, -i).astype(jnp.float32) / 2,
    ),
}

# Rules that no case above reaches (their JAX front ends emit other primitives in this version).
UNREACHED = {"closed_call", "core_call", "custom_vjp_call_jaxpr", "pjit", "remat", "checkpoint", "copy_p", "expand_dims"}


def _primitives(jaxpr, out):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, ClosedJaxpr):
                    _primitives(sub.jaxpr, out)
                elif isinstance(sub, Jaxpr):
                    _primitives(sub, out)


def test_every_rule_has_a_case():
    from mpcactors._jit import RULES

    specs = [jax.ShapeDtypeStruct(a.shape, jnp.int32 if a is I else jnp.float32) for a in (X, Y, W, B3, I)]
    seen: set[str] = set()
    for fn in CASES.values():
        _primitives(jax.make_jaxpr(fn)(*specs).jaxpr, seen)
    assert set(RULES) - seen - UNREACHED == set()


def _plain(fn, data):
    x, y, w, b, i = data
    out = fn(x.astype(np.float32), y.astype(np.float32), w.astype(np.float32), b.astype(np.float32), i.astype(np.int32))
    return [np.asarray(o) for o in out]


async def _run_cases(job, data, names):
    x = job.input("alice", lambda: data[0])
    y = job.input("bob", lambda: data[1])
    w = job.input("carol", lambda: data[2])
    b = job.input("alice", lambda: data[3])
    i = job.input("bob", lambda: data[4], dtype=int)
    outs = {name: await mpc.jit(CASES[name])(x, y, w, b, i) for name in names}
    return await job.reveal(outs)


def _check(got, data):
    for name, secure_outs in got.items():
        for k, (secure, plain) in enumerate(zip(secure_outs, _plain(CASES[name], data), strict=True)):
            assert np.shape(secure) == plain.shape, (name, k)
            np.testing.assert_allclose(
                np.asarray(secure, dtype=np.float64), plain.astype(np.float64), atol=2e-3, rtol=2e-3, err_msg=f"{name}[{k}]"
            )


@pytest.mark.parametrize(
    ("protocol", "parties", "opts"),
    [("rep3", ["alice", "bob", "carol"], {}), ("semi2k", ["alice", "bob", "carol"], {"dealer": "trusted-first-party"})],
    ids=["rep3", "semi2k"],
)
def test_every_supported_primitive_matches_plain_jax(protocol, parties, opts):
    data = (X, Y, W, B3, I)
    got = mpc.simulate(_run_cases, parties=parties, protocol=protocol, args=(data, list(CASES)), **opts)["alice"]
    _check(got, data)


@pytest.mark.parametrize("seed", [1, 2])
def test_linear_and_structural_primitives_on_more_random_shapes(seed):
    data = draw(seed)
    names = ["broadcasting", "dot_general", "structure"]
    got = mpc.simulate(_run_cases, protocol="semi2k", parties=["alice", "bob", "carol"], dealer="trusted-first-party", args=(data, names))
    _check(got["bob"], data)


def test_an_unsupported_primitive_names_itself_and_the_line():
    def uses_sin(x):
        return jnp.sin(x) + 1.0

    async def main(job):
        x = job.input("alice", lambda: X)
        return await job.reveal(await mpc.jit(uses_sin)(x))

    with pytest.raises(mpc.JobAborted, match=r"UnsupportedOperation: mpcactors.jit\(.*uses_sin\): the JAX primitive 'sin' has no secure rule \(at .*test_jit.py:\d+"):
        mpc.simulate(main)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: jax.lax.cond(x[0, 0] > 0, lambda a: a, lambda a: -a, x),
        lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 5.0, lambda c: c * 2, x),
        lambda x: x.astype(jnp.int32),
    ],
    ids=["secret-cond", "secret-while", "real-to-int"],
)
def test_secret_control_flow_is_a_clear_error(fn):
    async def main(job):
        x = await job.input("alice", lambda: X)
        await mpc.jit(fn)(x)

    with pytest.raises(mpc.JobAborted, match=r"UnsupportedOperation: mpcactors.jit\(<lambda>\): .* has no secure rule.* \(at "):
        mpc.simulate(main)


def test_public_arguments_fold_in_and_no_secret_means_plain_jax():
    def affine(x, w, bias, scale=2.0):
        return scale * (x @ w) + bias

    async def main(job):
        x = job.input("alice", lambda: X)
        secure = await mpc.jit(affine)(x, PUBLIC, np.ones(K), scale=3.0)
        plain = await mpc.jit(affine)(X, PUBLIC, np.ones(K))
        return await job.reveal({"secure": secure, "plain": plain})

    out = mpc.simulate(main)["bob"]
    np.testing.assert_allclose(out["secure"], 3.0 * (X @ PUBLIC) + 1, atol=1e-3)
    np.testing.assert_allclose(out["plain"], 2.0 * (X @ PUBLIC) + 1, rtol=1e-5)


def test_independent_jitted_calls_merge_their_rounds():
    async def one(job, calls):
        xs = [job.input("alice", lambda k=k: X * (k + 1) / 4) for k in range(calls)]
        outs = [await mpc.jit(jnp.exp)(x) for x in xs]
        await job.reveal(outs)
        return job.statistics().rounds

    single = mpc.simulate(one, args=(1,))["alice"]
    triple = mpc.simulate(one, args=(3,))["alice"]
    assert triple == single


# ---- the examples: SPU's programs as the guide writes them ------------------------------------
PROTOCOLS = [("rep3", {}), ("semi2k", {"dealer": "carol"})]


@pytest.mark.parametrize(("protocol", "opts"), PROTOCOLS, ids=["rep3", "semi2k"])
def test_bank_accounts_as_the_guide_writes_it(protocol, opts):
    main = load_program(str(EXAMPLES / "bank_accounts.py"), "main")
    mod = main.__globals__
    got = mpc.simulate(main, parties=["alice", "bob", "carol"], protocol=protocol, **opts)
    want = mod["deduct"](mod["load_accounts"](), mod["load_amount"]())
    assert got["bob"] == got["carol"] == [{"id": None, "deposit": None}] * len(want)  # revealed to alice only
    assert [int(a["id"]) for a in got["alice"]] == [int(a["id"]) for a in want]
    np.testing.assert_allclose([a["deposit"] for a in got["alice"]], [float(a["deposit"]) for a in want], atol=1e-3)


@pytest.mark.parametrize(("protocol", "opts"), PROTOCOLS, ids=["rep3", "semi2k"])
def test_logit_regression_as_the_guide_writes_it(protocol, opts):
    main = load_program(str(EXAMPLES / "jax_logistic_regression.py"), "main")
    mod = main.__globals__
    x, y = mod["load_dataset"]()  # the guide's breast-cancer data (scikit-learn is in the test extra)
    w = mpc.simulate(main, parties=["alice", "bob", "carol"], protocol=protocol, **opts)["alice"]
    w_plain = np.asarray(mod["logit_regression"](x, y))
    np.testing.assert_allclose(w, w_plain, atol=2e-3)
    assert abs(mod["auc"](y, w, x) - mod["auc"](y, w_plain, x)) < 1e-3


@pytest.mark.parametrize("binary", [False, True], ids=["labels", "labels-declared-0/1"])
def test_mlp_gradient_equals_plain_jax(binary):
    main = load_program(str(EXAMPLES / "jax_mlp.py"), "main")
    mod = main.__globals__
    params = mod["init_params"]()
    x, y = mod["load_dataset"](rows=24)

    async def grads(job):
        xs = job.input("alice", lambda: x)
        ys = job.input("bob", lambda: y, binary=binary)  # one-hot classes
        return await job.reveal(await mpc.jit(jax.grad(mod["loss"]))(params, xs, ys))

    got = mpc.simulate(grads)["carol"]
    want = jax.grad(mod["loss"])(params, x, y)
    for key in want:
        np.testing.assert_allclose(got[key], np.asarray(want[key]), atol=2e-3, err_msg=key)
