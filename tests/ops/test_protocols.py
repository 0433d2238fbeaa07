"""The kernel interface, checked against numpy for every protocol configuration (conftest.CONFIGS):
semi2k with 2, 3 and 4 holders plus a dealer, semi2k trusted-first-party, rep3."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcactors._errors import ConfigError, ShapeError
from mpcactors.ops._comm import gather
from mpcactors.ops._ot_triples import matrix_triple_rounds
from mpcactors.ops._registry import make_protocol
from mpcactors.ops._ring import decode, encode

from .conftest import CONFIGS, Cluster, ring, signed

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
u64 = st.integers(0, 2**64 - 1)


def rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64)


# ---- share / reveal ---------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["arith", "bool"]))
def test_share_then_reveal_is_identity(cluster: Cluster, data: st.DataObject, kind: str) -> None:
    value = data.draw(hnp.arrays(np.uint64, shapes, elements=u64))
    owner = data.draw(st.sampled_from(cluster.parties))
    shares = cluster.share(value, owner=owner, kind=kind)
    for p, s in shares.items():
        assert s.shape == value.shape and s.kind == kind
        assert s.held == (p in cluster.holders)
    np.testing.assert_array_equal(cluster.reveal(shares), value)


def test_share_negative_values(cluster: Cluster) -> None:
    value = ring([[-1, -(2**63), 2**63 - 1], [0, -12345, 7]])
    np.testing.assert_array_equal(signed(cluster.reveal(cluster.share(value))), signed(value))


def test_shares_look_random(cluster: Cluster) -> None:
    """No holder's local share equals the secret (a sharing bug would often leave it in clear)."""
    value = ring(np.arange(1, 65))
    for p, s in cluster.share(value).items():
        for part in s.parts:
            assert np.count_nonzero(part == value) < 4, p


def test_reveal_to_one_party(cluster: Cluster) -> None:
    value = rand(np.random.default_rng(1), (3, 2))
    shares = cluster.share(value)
    for to in cluster.parties:
        out, rounds = cluster.run(lambda pr, ctx, to=to: pr.reveal(ctx, shares[pr.party], to))
        assert rounds == 1
        np.testing.assert_array_equal(out[to], value)
        assert all(out[p] is None for p in cluster.parties if p != to)


def test_share_and_reveal_cost_one_round(cluster: Cluster) -> None:
    value = rand(np.random.default_rng(2), (4,))
    shares, rounds = cluster.run(
        lambda pr, ctx: pr.share(ctx, "bob", value if pr.party == "bob" else None, None)
    )
    assert rounds == 1
    out, rounds = cluster.run(lambda pr, ctx: pr.reveal(ctx, shares[pr.party]))
    assert rounds == 1
    np.testing.assert_array_equal(out["alice"], value)


def test_share_checks_the_announced_shape(cluster: Cluster) -> None:
    value = rand(np.random.default_rng(3), (2, 3))
    with pytest.raises(ShapeError, match="shape"):
        cluster.run(
            lambda pr, ctx: pr.share(ctx, "alice", value if pr.party == "alice" else None, (3, 2))
        )


# ---- local arithmetic ---------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_linear_ops_match_numpy(cluster: Cluster, data: st.DataObject) -> None:
    shape = data.draw(shapes)
    x = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    y = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    c = data.draw(hnp.arrays(np.uint64, shape[-1:] if shape else (), elements=u64))
    sx, sy = cluster.share(x), cluster.share(y, owner=cluster.parties[-1])
    P = cluster.protos
    checks = {
        "add": ({p: P[p].add(sx[p], sy[p]) for p in P}, x + y),
        "sub": ({p: P[p].sub(sx[p], sy[p]) for p in P}, x - y),
        "neg": ({p: P[p].neg(sx[p]) for p in P}, -x),
        "add_public": ({p: P[p].add_public(sx[p], c) for p in P}, x + c),
        "mul_public": ({p: P[p].mul_public(sx[p], c) for p in P}, x * c),
        "public": ({p: P[p].public(y) for p in P}, y),
    }
    for name, (shares, want) in checks.items():
        np.testing.assert_array_equal(cluster.reveal(shares), want, err_msg=name)


def test_matmul_public_both_sides(cluster: Cluster) -> None:
    rng = np.random.default_rng(4)
    x, c_right, c_left = rand(rng, (3, 4)), rand(rng, (4, 2)), rand(rng, (5, 3))
    sx = cluster.share(x)
    P = cluster.protos
    right = {p: P[p].matmul_public(sx[p], c_right) for p in P}
    left = {p: P[p].matmul_public(sx[p], c_left, left=True) for p in P}
    np.testing.assert_array_equal(cluster.reveal(right), x @ c_right)
    np.testing.assert_array_equal(cluster.reveal(left), c_left @ x)


# ---- products ----------------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_mul_matches_numpy(cluster: Cluster, data: st.DataObject) -> None:
    shape = data.draw(shapes)
    x = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    y = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    sx, sy = cluster.share(x), cluster.share(y, owner=cluster.parties[-1])
    out, rounds = cluster.run(lambda pr, ctx: pr.mul(ctx, sx[pr.party], sy[pr.party]))
    assert rounds == cluster.rounds("mul")
    np.testing.assert_array_equal(cluster.reveal(out), x * y)


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((4,), (4,)),
        ((3, 4), (4,)),
        ((4,), (4, 2)),
        ((3, 4), (4, 5)),
        ((2, 3, 4), (4, 2)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((0, 4), (4, 3)),
        ((3, 0), (0, 2)),
        ((40, 90), (90, 70)),
    ],
)
def test_matmul_matches_numpy(cluster: Cluster, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    if cluster.ot and len(cluster.holders) > 2 and sa == (40, 90):
        # 16 s here: each pair runs OtSource's chunked matrix triple, which semi2k-2-ot runs on
        # this shape; the pairwise sums are checked on every other shape
        pytest.skip("three holders by pairs: the chunked two-holder triple is tested with semi2k-2-ot")
    rng = np.random.default_rng(5)
    a, b = rand(rng, sa), rand(rng, sb)
    sx, sy = cluster.share(a), cluster.share(b, owner=cluster.parties[-1])
    out, rounds = cluster.run(lambda pr, ctx: pr.matmul(ctx, sx[pr.party], sy[pr.party]))
    # without a dealer a matrix triple's OT traffic grows with m k n: big ones take more rounds,
    # or go by HE (one round per prime and one more) where TenSEAL is installed and it costs less
    route = getattr(cluster.protos[cluster.parties[0]], "matrix_triples", "ot")
    assert rounds == (matrix_triple_rounds(route, sa, sb) if cluster.ot else cluster.rounds("mul"))
    want = np.matmul(a, b)  # numpy's integer matmul wraps mod 2^64
    assert all(s.shape == want.shape for s in out.values())
    np.testing.assert_array_equal(cluster.reveal(out), want)


def test_k_independent_muls_cost_one_round(cluster: Cluster) -> None:
    rng = np.random.default_rng(6)
    xs = [rand(rng, (3,)) for _ in range(5)]
    ys = [rand(rng, (3,)) for _ in range(5)]
    sxs, sys_ = [cluster.share(x) for x in xs], [cluster.share(y) for y in ys]
    out, rounds = cluster.run(
        lambda pr, ctx: gather(
            pr.mul(ctx.child(i), sxs[i][pr.party], sys_[i][pr.party]) for i in range(5)
        )
    )
    assert rounds == cluster.rounds("mul")
    for i in range(5):
        np.testing.assert_array_equal(
            cluster.reveal({p: out[p][i] for p in cluster.parties}), xs[i] * ys[i]
        )


def test_chain_of_muls_costs_one_round_each(cluster: Cluster) -> None:
    x = ring([3, -2, 5])
    sx = cluster.share(x)

    def cube(pr, ctx):  # type: ignore[no-untyped-def]
        sq = yield from pr.mul(ctx.child(0), sx[pr.party], sx[pr.party])
        return (yield from pr.mul(ctx.child(1), sq, sx[pr.party]))

    out, rounds = cluster.run(cube)
    assert rounds == 2 * cluster.rounds("mul")
    np.testing.assert_array_equal(signed(cluster.reveal(out)), [27, -8, 125])


def test_ops_compose_in_lockstep(cluster: Cluster) -> None:
    """Kernel ops chained with `yield from` inside one step: every party is in every round, so
    a party idle in one op (truncation, reveal to one) cannot run ahead into the next."""
    f = 8
    x = ring([3 << f, -(5 << f), 7 << f])
    sx = cluster.share(x)
    last = cluster.parties[-1]

    def chain(pr, ctx):  # type: ignore[no-untyped-def]
        t = yield from pr.truncate(ctx.child(0), sx[pr.party], f)
        opened = yield from pr.reveal(ctx.child(1), t, to=last)
        sq = yield from pr.mul(ctx.child(2), t, t)
        bits = yield from pr.and_(ctx.child(3), pr.public(x, "bool"), pr.public(x, "bool"))
        one = yield from pr.bit_to_arith(ctx.child(4), pr.and_public(bits, np.uint64(1)))
        return opened, (yield from pr.reveal(ctx.child(5), pr.add(sq, one)))

    out, _ = cluster.run(chain)
    np.testing.assert_array_equal(signed(out[last][0]), [3, -5, 7])
    np.testing.assert_array_equal(signed(out[last][1]), [9, 25, 49])


def test_mismatched_shapes_raise_shape_error(cluster: Cluster) -> None:
    sx, sy = cluster.share(ring(np.zeros((2, 3)))), cluster.share(ring(np.zeros((3, 2))))
    with pytest.raises(ShapeError, match="mul"):
        cluster.run(lambda pr, ctx: pr.mul(ctx, sx[pr.party], sy[pr.party]))
    with pytest.raises(ShapeError, match="inner"):
        cluster.run(lambda pr, ctx: pr.matmul(ctx, sx[pr.party], sx[pr.party]))
    bx, by = (
        cluster.share(ring(np.zeros(3)), kind="bool"),
        cluster.share(ring(np.zeros(2)), kind="bool"),
    )
    with pytest.raises(ShapeError):
        cluster.run(lambda pr, ctx: pr.and_(ctx, bx[pr.party], by[pr.party]))
    with pytest.raises(TypeError, match="arith"):
        cluster.run(lambda pr, ctx: pr.mul(ctx, bx[pr.party], bx[pr.party]))


# ---- truncation and fixed point -------------------------------------------------------------------------
@SETTINGS
@given(data=st.data(), bits=st.integers(1, 40))
def test_truncate_within_one(cluster: Cluster, data: st.DataObject, bits: int) -> None:
    shape = data.draw(shapes)
    # Faithful truncation: floor(x / 2^d) + {0, 1} over the whole range |x| < 2^62.
    x = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**62), 2**62 - 1)))
    sx = cluster.share(ring(x))
    out, rounds = cluster.run(lambda pr, ctx: pr.truncate(ctx, sx[pr.party], bits))
    assert rounds == cluster.rounds("trunc")
    err = signed(cluster.reveal(out)) - (x >> bits)
    assert set(np.unique(err)) <= {0, 1}, err


def test_truncate_is_exact_on_multiples_and_rounds_up_with_the_fraction(cluster: Cluster) -> None:
    """e in {0, 1} is 1 with probability the dropped fraction: never for a multiple of 2^d (a
    zero stays exactly zero: an op summing selected terms relies on it), and ~3/4 of the time for
    a fraction of 3/4. Two holders without a dealer once rounded a multiple up with probability
    2^-d: for 2^15 multiples (a quarter of them zeros) and d = 12 that fails this test in all but
    3e-4 of runs. And 52,768 elements need more than one OT round (~31,000
    elements) per stage of three holders' random bits: the holders outside a stage once ran
    ahead into the next one (a lockstep error)."""
    n, d = 1 << 15, 12
    rng = np.random.default_rng(5)
    whole = rng.integers(-(2**40), 2**40, n) << d
    whole[: n // 4] = 0
    x = np.concatenate([whole, np.full(20000, 5 * 2**d + 3 * 2 ** (d - 2))])  # 5.75 after >> d
    sx = cluster.share(ring(x))
    out, _ = cluster.run(lambda pr, ctx: pr.truncate(ctx, sx[pr.party], d))
    got = signed(cluster.reveal(out))
    np.testing.assert_array_equal(got[:n], whole >> d)
    frac = float(np.mean(got[n:] - 5))
    assert 0.7 < frac < 0.8, frac


def test_fixed_point_mul_and_matmul(cluster: Cluster) -> None:
    """mul / matmul then truncate by fxp_bits: within a few units in the last place."""
    f = cluster.fxp_bits
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-8, 8, (6, 5)), rng.uniform(-8, 8, (6, 5))
    a, b = rng.uniform(-4, 4, (6, 7)), rng.uniform(-4, 4, (7, 3))
    sx, sy = cluster.share(encode(x, f)), cluster.share(encode(y, f))
    sa, sb = cluster.share(encode(a, f)), cluster.share(encode(b, f))

    def prog(pr, ctx):  # type: ignore[no-untyped-def]
        p = pr.party
        xy, ab = yield from gather(
            [pr.mul(ctx.child(0), sx[p], sy[p]), pr.matmul(ctx.child(1), sa[p], sb[p])]
        )
        return (
            yield from gather([pr.truncate(ctx.child(2), xy, f), pr.truncate(ctx.child(3), ab, f)])
        )

    out, rounds = cluster.run(prog)
    assert rounds == cluster.rounds("mul") + cluster.rounds("trunc")  # rep3: unfused truncation, 1 + 2
    got_xy = signed(cluster.reveal({p: out[p][0] for p in out}))
    got_ab = signed(cluster.reveal({p: out[p][1] for p in out}))
    # Against the exact product of the encoded inputs: the protocol's own error is <= 1 ulp.
    X, Y, A, B = (signed(encode(v, f)) for v in (x, y, a, b))
    assert np.max(np.abs(got_xy - ((X * Y) >> f))) <= 1
    assert np.max(np.abs(got_ab - ((A @ B) >> f))) <= 1
    # Against float64: plus the rounding of the inputs to 2^-f (|operands| <= 8, 7 terms).
    ulp = 2.0**-f
    assert np.max(np.abs(decode(ring(got_xy), f) - x * y)) <= (1 + 8) * ulp
    assert np.max(np.abs(decode(ring(got_ab), f) - a @ b)) <= (1 + 7 * 4) * ulp


# ---- boolean ----------------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_boolean_ops_match_numpy(cluster: Cluster, data: st.DataObject) -> None:
    shape = data.draw(shapes)
    x = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    y = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    c = data.draw(hnp.arrays(np.uint64, shape, elements=u64))
    bx, by = cluster.share(x, kind="bool"), cluster.share(y, owner=cluster.parties[-1], kind="bool")
    out, rounds = cluster.run(lambda pr, ctx: pr.and_(ctx, bx[pr.party], by[pr.party]))
    assert rounds == cluster.rounds("and")
    np.testing.assert_array_equal(cluster.reveal(out), x & y)
    P = cluster.protos
    local = {
        "xor": ({p: P[p].xor(bx[p], by[p]) for p in P}, x ^ y),
        "xor_public": ({p: P[p].xor_public(bx[p], c) for p in P}, x ^ c),
        "and_public": ({p: P[p].and_public(bx[p], c) for p in P}, x & c),
        "shift": ({p: P[p].shift(bx[p], 5) for p in P}, x << np.uint64(5)),
        "public": ({p: P[p].public(c, "bool") for p in P}, c),
    }
    for name, (shares, want) in local.items():
        np.testing.assert_array_equal(cluster.reveal(shares), want, err_msg=name)


@SETTINGS
@given(data=st.data())
def test_a2b_summands_sum_to_x(cluster: Cluster, data: st.DataObject) -> None:
    x = data.draw(hnp.arrays(np.uint64, shapes, elements=u64))
    sx = cluster.share(x)
    summands = {p: cluster.protos[p].a2b_summands(sx[p]) for p in cluster.parties}
    k = len(summands[cluster.parties[0]])
    assert k == len(cluster.holders)
    total = np.zeros(x.shape, dtype=np.uint64)
    for j in range(k):
        shares = {p: summands[p][j] for p in cluster.parties}
        assert all(s.kind == "bool" for s in shares.values())
        total = total + cluster.reveal(shares)
    np.testing.assert_array_equal(total, x)


@SETTINGS
@given(data=st.data())
def test_bit_to_arith(cluster: Cluster, data: st.DataObject) -> None:
    bits = data.draw(hnp.arrays(np.uint64, shapes, elements=st.integers(0, 1)))
    b = cluster.share(bits, kind="bool")
    out, rounds = cluster.run(lambda pr, ctx: pr.bit_to_arith(ctx, b[pr.party]))
    assert rounds == cluster.rounds("b2a")
    assert all(s.kind == "arith" for s in out.values())
    np.testing.assert_array_equal(cluster.reveal(out), bits)


def test_bit_to_arith_ignores_high_bits_of_boolean_shares(cluster: Cluster) -> None:
    """Only bit 0 is converted, even when the shares' upper lanes are not zero."""
    words = rand(np.random.default_rng(8), (50,))
    b = cluster.share(words, kind="bool")
    out, _ = cluster.run(lambda pr, ctx: pr.bit_to_arith(ctx, b[pr.party]))
    np.testing.assert_array_equal(cluster.reveal(out), words & np.uint64(1))


def test_configs_cover_the_must_show_matrix() -> None:
    holders = sorted(
        len(Cluster(*cfg).holders)
        for cfg in CONFIGS.values()
        if cfg[0] == "semi2k" and cfg[2] != "trusted-first-party"
    )
    assert holders == [2, 2, 3, 3, 4]  # 2 and 3 holders with a dealer and with none (OT, by pairs)


# ---- configuration errors -------------------------------------------------------------------------
def test_unknown_protocol_names_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown protocol 'aby3'; known protocols: rep3, semi2k"
    ):
        make_protocol("aby3", "alice", ("alice", "bob", "carol"))


@pytest.mark.parametrize("bits", [-1, 63, 1.5, True])
def test_bad_fxp_bits(bits: object) -> None:
    with pytest.raises(ConfigError, match="fxp_bits"):
        make_protocol("rep3", "alice", ("alice", "bob", "carol"), fxp_bits=bits)  # type: ignore[arg-type]


def test_describe_names_protocol_parties_and_dealer() -> None:
    proto = make_protocol("semi2k", "alice", ("alice", "bob", "carol"), dealer="carol")
    assert proto.describe() == {
        "protocol": "semi2k",
        "parties": ["alice", "bob", "carol"],
        "dealer": "carol",
    }
