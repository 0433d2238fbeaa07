"""The jaxpr rewrites of mpcactors.jit: each rule fires where it should, and the rewritten program
gives what plain JAX gives, in plain JAX (every input, not only 0/1 labels) and on secret data.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors.cli import load_program

jax = pytest.importorskip("jax")
jnp = jax.numpy

from mpcactors._jit import _live
from mpcactors._jit_rewrite import rewrite

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GUIDE = load_program(str(EXAMPLES / "jax_logistic_regression.py"), "main").__globals__
HAND = load_program(str(EXAMPLES / "logistic_regression.py"), "main").__globals__
RNG = np.random.default_rng(5)
X = RNG.uniform(-3, 3, (6, 4)).astype(np.float32)
P = RNG.uniform(0.5, 2, (6, 4)).astype(np.float32)  # positive: divisors


def rewritten(fn, *args, binary=()):
    """(live primitive names of the rewritten jaxpr, rules fired, rewritten outputs, plain outputs)."""
    closed = jax.make_jaxpr(fn)(*args)
    new, fired = rewrite(closed, binary)
    from jax.extend.core import jaxpr_as_fun

    got = jaxpr_as_fun(new)(*args)
    want = jax.tree_util.tree_leaves(fn(*args))
    names = [eqn.primitive.name for eqn in _live(new.jaxpr)]
    return names, fired, [np.asarray(g) for g in got], [np.asarray(w) for w in want]


def close(got, want, tol=1e-5):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: 1 / (1 + jnp.exp(-x)),
        lambda x: 1.0 / (jnp.exp(-x) + 1.0),
        lambda x: 3.0 / (1 + jnp.exp(-x)),
        lambda x: x / (1 + jnp.exp(-x)),  # a secret numerator: x * sigmoid(x)
    ],
    ids=["1/(1+e)", "1/(e+1)", "c/(1+e)", "x/(1+e)"],
)
def test_sigmoid_forms_become_the_secure_sigmoid(fn):
    names, fired, got, want = rewritten(fn, X)
    assert fired["sigmoid"] == 1
    assert "logistic" in names and "exp" not in names and "div" not in names
    close(got, want)


def test_one_reciprocal_per_divisor_and_powers_of_it():
    names, fired, got, want = rewritten(lambda x, p: (1 / p, p**-2, x / p, x * p**-3), X, P)
    assert names.count("div") == 1
    assert fired["reciprocal"] >= 3
    close(got, want, 1e-4)


def test_gradient_of_the_sigmoid_needs_no_exp_and_reuses_it():
    fn = jax.grad(lambda x: jnp.sum(1 / (1 + jnp.exp(-x)) * x))
    names, fired, got, want = rewritten(fn, X)
    assert fired["sigmoid-derivative"] == 1
    assert "exp" not in names and "div" not in names and names.count("logistic") == 1
    close(got, want)


def test_common_subexpressions_are_computed_once():
    names, fired, got, want = rewritten(lambda x, p: (jnp.exp(x) * p, jnp.exp(x) + jnp.log(p), jnp.log(p)), X, P)
    assert fired["cse"] >= 2
    assert names.count("exp") == 1 and names.count("log") == 1
    close(got, want, 1e-5)


def test_public_constants_fold_and_cost_nothing():
    def fn(x):
        w = jnp.zeros(4)
        z = x @ w  # a zero public matrix: zeros
        return x * 1.0 + z[:, None], jnp.negative(-x), x * -1.0, x * 0.0 + jnp.broadcast_to(jnp.float32(2.0), x.shape) * 1.0

    names, fired, got, want = rewritten(fn, X)
    assert fired["fold"] >= 5
    assert "dot_general" not in names and "broadcast_in_dim" not in names
    assert set(names) <= {"neg", "add"}  # nothing that communicates is left
    close(got, want)


def test_secret_terms_that_cancel_exactly_fold_to_a_public_constant():
    def fn(x, p):
        h = jnp.full(x.shape, 0.5)
        return h * x + (1 - h) * (1 - x), 2.0 * (x - p) - (x + x) + 2 * p, 3.0 * x - x

    names, fired, got, want = rewritten(fn, X, P)
    assert fired["fold"] >= 2
    assert sorted(names) == ["mul", "sub"]  # only 3x - x is left (2x: not rewritten, it costs the same)
    close(got, want, 1e-5)


def test_products_are_factored_and_reassociated_latest_factor_last():
    def fn(x, p):
        late = 1 / (1 + x * x)  # a reciprocal: the last to be ready
        return -(late * p) + late * x, (late * p) * x * 0.5

    _, fired, got, want = rewritten(fn, X, P)
    assert fired["factor"] == 1 and fired["reassociate"] >= 1
    close(got, want, 1e-5)


@pytest.mark.parametrize("labels", ["binary", "soft"])
def test_the_guide_gradient_rewritten_equals_plain_jax_for_every_label(labels):
    """The rewrites are identities: they hold for labels that are not 0/1 too."""
    x, y = GUIDE["synthetic"](64, 5)
    if labels == "soft":
        y = np.random.default_rng(1).uniform(0.2, 0.8, y.shape)
    x, y = x.astype(np.float32), y.astype(np.float32)
    names, fired, got, want = rewritten(GUIDE["logit_regression"], x, y)
    assert {"fold", "cse", "sigmoid", "reciprocal", "sigmoid-derivative", "factor", "reassociate"} <= set(fired)
    assert "exp" not in names and "log" not in names
    # epoch 1 (w = 0) is public up to the labels, and label_prob = 0.5 y + 0.5 (1 - y) = 0.5 folds:
    # no reciprocal and no sigmoid there
    assert names.count("div") == 2 and names.count("logistic") == 2
    close(got, want, 1e-4)


def test_a_factor_and_its_reciprocal_cancel():
    names, fired, got, want = rewritten(lambda x, p: (p * (x / p) * x, -((x + 1) / p) * p), X, P)
    assert fired["cancel"] == 2 and "div" not in names
    close(got, want, 1e-5)


def _guide_data(labels):
    x, y = GUIDE["synthetic"](64, 5)
    if labels == "soft":
        y = np.random.default_rng(1).uniform(0.2, 0.8, y.shape)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_binary_labels_split_the_guide_gradient_into_its_cases_without_a_division(dtype):
    """With y declared 0/1, d/dw of -log(s y + (1 - s)(1 - y)) is x^T (s - y): no reciprocal
    (integer labels too: the split follows y through its conversion to float)."""
    x, y = _guide_data("binary")
    y = y.astype(dtype)
    names, fired, got, want = rewritten(GUIDE["logit_regression"], x, y, binary=(False, True))
    assert fired["case-split"] >= 2 and fired["cancel"] >= 4
    assert "div" not in names and "log" not in names and "exp" not in names
    assert names.count("logistic") == 2
    closed = rewrite(jax.make_jaxpr(GUIDE["logit_regression"])(x, y), (False, True))[0].jaxpr
    public = set(closed.constvars)
    from jax.extend.core import Literal

    products = [e for e in _live(closed) if e.primitive.name == "mul"]
    assert products and all(any(isinstance(v, Literal) or v in public for v in e.invars) for e in products)
    close(got, want, 1e-4)


def test_the_case_split_needs_the_declaration_to_be_true():
    """The split program is exact for 0/1 labels only: soft labels give another result, which is
    why ``job.input(..., binary=True)`` checks every value at the owner."""
    x, y = _guide_data("soft")
    closed = jax.make_jaxpr(GUIDE["logit_regression"])(x, y)
    split, fired = rewrite(closed, (False, True))
    assert fired["case-split"] == 2
    from jax.extend.core import jaxpr_as_fun

    (got,) = jaxpr_as_fun(split)(x, y)
    assert np.abs(np.asarray(got) - np.asarray(GUIDE["logit_regression"](x, y))).max() > 5e-4  # 10^-7 when exact
    close(jaxpr_as_fun(rewrite(closed)[0])(x, y), [GUIDE["logit_regression"](x, y)], 1e-4)


def test_a_case_split_happens_only_where_it_shortens_the_path():
    """log(s y + (1 - s)(1 - y)) as a value: two logs cost the rounds of one, so no split."""
    y = (RNG.uniform(size=(6, 4)) > 0.5).astype(np.float32)
    s = RNG.uniform(0.1, 0.9, (6, 4)).astype(np.float32)
    names, fired, got, want = rewritten(lambda s, y: jnp.sum(jnp.log(s * y + (1 - s) * (1 - y))), s, y, binary=(False, True))
    assert "case-split" not in fired and names.count("log") == 1
    close(got, want, 1e-4)


# ---- on secret data ----------------------------------------------------------------------------
async def _run_lr(job, x, y, rewrite_on, binary=False, hand=False):
    a = await job.input("alice", lambda: x)
    b = await job.input("bob", lambda: y, binary=binary)
    s0 = job.statistics()
    w = HAND["train"](a, b) if hand else await mpc.jit(GUIDE["logit_regression"], rewrite=rewrite_on)(a, b)
    await w
    s1 = job.statistics()
    return await job.reveal(w), s1.rounds - s0.rounds, s1.ops - s0.ops


@pytest.mark.parametrize(
    ("protocol", "parties", "opts"),
    [("rep3", ["alice", "bob", "carol"], {}), ("semi2k", ["alice", "bob"], {"dealer": "trusted-first-party"})],
    ids=["rep3", "semi2k"],
)
def test_secure_guide_program_fewer_rounds_same_weights(protocol, parties, opts):
    x, y = GUIDE["synthetic"](200, 5)
    y = np.where(np.arange(200) % 3 == 0, 0.7, y)  # some soft labels: the rewrites must not assume 0/1
    want = np.asarray(GUIDE["logit_regression"](x.astype(np.float32), y.astype(np.float32)))
    runs = {}
    for flag in (True, False):
        runs[flag] = mpc.simulate(functools.partial(_run_lr, x=x, y=y, rewrite_on=flag), parties=parties, protocol=protocol, **opts)["alice"]
    (w_on, rounds_on, ops_on), (w_off, rounds_off, ops_off) = runs[True], runs[False]
    np.testing.assert_allclose(w_on, want, atol=2e-3)
    np.testing.assert_allclose(w_off, want, atol=5e-3)
    assert rounds_on < rounds_off and ops_on < ops_off


@pytest.mark.parametrize(
    ("protocol", "parties", "opts"),
    [("rep3", ["alice", "bob", "carol"], {}), ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"})],
    ids=["rep3", "semi2k"],
)
def test_binary_labels_bring_the_guide_program_within_the_hand_written_rounds(protocol, parties, opts):
    """Issue 17's target: rounds at most the hand-written gradient's + 20%, same weights."""
    x, y = GUIDE["synthetic"](200, 5)
    want = np.asarray(GUIDE["logit_regression"](x.astype(np.float32), y.astype(np.float32)))

    def run(**kw):
        return mpc.simulate(functools.partial(_run_lr, x=x, y=y, rewrite_on=True, **kw), parties=parties, protocol=protocol, **opts)["alice"]

    (w_split, rounds_split, _), (_, rounds_plain, _), (w_hand, rounds_hand, _) = run(binary=True), run(), run(hand=True)
    np.testing.assert_allclose(w_split, want, atol=2e-3)
    np.testing.assert_allclose(w_hand, want, atol=2e-3)
    assert rounds_split <= 1.2 * rounds_hand < rounds_plain


def test_dead_equations_add_no_ops_to_the_graph():
    """The forward loss's ``log`` that ``jax.grad`` leaves in the jaxpr is never computed."""

    def with_dead(x):
        _ = jnp.sum(jnp.log(x))
        return x * x

    async def main(job, fn):
        x = await job.input("alice", lambda: P)
        s0 = job.statistics().ops
        out = await mpc.jit(fn, rewrite=False)(x)
        await out
        return job.statistics().ops - s0

    dead = mpc.simulate(functools.partial(main, fn=with_dead))["alice"]
    live = mpc.simulate(functools.partial(main, fn=lambda x: x * x))["alice"]
    assert dead == live


def test_rewrite_false_interprets_the_jaxpr_as_traced():
    def fn(x):
        return 1 / (1 + jnp.exp(-x))

    async def main(job, flag):
        x = await job.input("alice", lambda: X / 3)
        r0 = job.statistics().rounds
        out = await mpc.jit(fn, rewrite=flag)(x)
        await out
        return await job.reveal(out), job.statistics().rounds - r0

    (on, rounds_on), (off, rounds_off) = (mpc.simulate(functools.partial(main, flag=f))["alice"] for f in (True, False))
    np.testing.assert_allclose(on, fn(X / 3), atol=2e-3)
    np.testing.assert_allclose(off, fn(X / 3), atol=2e-3)
    assert rounds_on < rounds_off  # the sigmoid, against exp then a reciprocal


def test_every_primitive_case_rewritten_equals_plain_jax():
    """The rewritten jaxprs of tests/test_jit.py's cases, run by plain JAX, give what JAX gives."""
    from tests.test_jit import B3, CASES, I, W, X, Y

    args = (*(a.astype(np.float32) for a in (X, Y, W, B3)), I.astype(np.int32))
    for name, fn in CASES.items():
        _, _, got, want = rewritten(fn, *args)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_allclose(
                np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64), rtol=1e-5, atol=1e-5, err_msg=f"{name}[{k}]"
            )
