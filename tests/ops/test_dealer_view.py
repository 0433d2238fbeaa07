"""The semi2k dealer's view of a revealed product (issue 10, point 1), attacked.

The dealer knows every holder's triple shares (a_i, b_i, c_i): it expands them from the seeds it
shares with each holder. A revealed product's raw shares are z_i = c_i + e b_i + a_i f (+ e f at
holder 0), so a dealer that receives them can solve for the opened e = x - a, f = y - b and
learn both factors. The attack below does exactly that, with only what the dealer has: its own
seeds and the messages it receives. It recovers the factors from the old reveal (a deliberately
broken variant that sends raw shares) and nothing from the real one, whose shares are
re-randomised by a zero sharing from the holders' pairwise seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ops._context import OpContext
from mpcactors.ops._dealer import Dealt, draw
from mpcactors.ops._semi2k import Semi2k

from .conftest import Cluster, ring, signed

U = np.uint64
BOUND = 300  # |x|, |y| <= BOUND: the attacker enumerates one factor
N = 64


class OldReveal(Semi2k):
    """The reveal before the fix: raw shares, no re-randomisation."""

    def _zero_share(self, ctx: OpContext, shape: tuple[int, ...], xor: bool) -> np.ndarray:
        return np.zeros(shape, dtype=U)


def _recording(gen: Step[Any], log: list[Mapping[str, Any]]) -> Step[Any]:
    """Forward ``gen``'s exchanges and keep every message it receives."""
    reply = None
    try:
        while True:
            ex: Exchange = gen.send(reply) if reply is not None else next(gen)
            reply = yield ex
            log.append(dict(reply))
    except StopIteration as stop:
        return stop.value


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverse mod 2^64 of odd a (Newton: each step doubles the correct low bits)."""
    inv = a.copy()
    for _ in range(6):
        inv = inv * (U(2) - a * inv)
    return inv


def _dealt_triple(c: Cluster, dealer: str, path: tuple[object, ...], shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Every holder's (a_i, b_i, c_i) as the dealer expands them for the op at ``path``."""
    ctx = OpContext(dealer, c.parties, c._seeds[dealer], path)
    specs = [Dealt(shape, "add"), Dealt(shape, "add"), Dealt(shape, "add", corrected=True)]
    last = c.holders[-1]
    a, b, cc = {}, {}, {}
    for h in c.holders:
        g = ctx.prg(h)
        a[h], b[h] = draw(g, specs[0]), draw(g, specs[1])
        if h != last:
            cc[h] = draw(g, specs[2])
    total_a, total_b = sum(a.values(), U(0)), sum(b.values(), U(0))
    cc[last] = total_a * total_b - sum((cc[h] for h in c.holders if h != last), U(0))
    return a, b, cc, total_a, total_b


def _attack(c: Cluster, dealer: str, path: tuple[object, ...], z: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    """Solve for (x, y) from the received z_i and the dealt triple. Returns (found, x, y):
    ``found`` marks elements with exactly one consistent small (x, y)."""
    a, b, cc, ta, tb = _dealt_triple(c, dealer, path, (N,))
    holders = c.holders
    last = holders[-1]
    u = z[last] - cc[last]  # = e b_L + a_L f: linear in the unknowns

    def consistent(e: np.ndarray, f: np.ndarray) -> np.ndarray:
        ok = np.ones(e.shape, dtype=bool)
        for i, h in enumerate(holders):
            want = cc[h] + e * b[h] + a[h] * f + (e * f if i == 0 else U(0))
            ok &= want == z[h]
        return ok

    cand = ring(np.arange(-BOUND, BOUND + 1))[:, None]
    found = np.zeros(N, dtype=bool)
    xs, ys = np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
    odd_a, odd_b = (a[last] & U(1)) == U(1), (b[last] & U(1)) == U(1)
    # a_L odd: enumerate x, solve f; else b_L odd: enumerate y, solve e.
    e = cand - ta
    f = (u - e * b[last]) * _inverse(a[last] | U(1))
    via_x = (e, f)
    f2 = cand - tb
    e2 = (u - a[last] * f2) * _inverse(b[last] | U(1))
    via_y = (e2, f2)
    for (ee, ff), usable in ((via_x, odd_a), (via_y, ~odd_a & odd_b)):
        x, y = signed(ee + ta), signed(ff + tb)
        ok = consistent(ee, ff) & (np.abs(x) <= BOUND) & (np.abs(y) <= BOUND) & usable
        unique = ok.sum(axis=0) == 1
        idx = ok.argmax(axis=0)
        cols = np.arange(N)
        take = unique & ~found
        xs[take], ys[take] = x[idx, cols][take], y[idx, cols][take]
        found |= take
    return found, xs, ys


@pytest.mark.parametrize("holders", [2, 3])
@pytest.mark.parametrize("broken", [True, False], ids=["old-reveal", "re-randomised"])
def test_dealer_cannot_solve_for_the_factors_of_a_revealed_product(
    holders: int, broken: bool
) -> None:
    names = ("alice", "bob", "carol", "dave")[: holders + 1]
    dealer = names[-1]
    c = Cluster("semi2k", names, dealer, seed=holders)
    if broken:
        c.protos = {p: OldReveal(p, names, dealer=dealer) for p in names}
    rng = np.random.default_rng(holders)
    x = rng.integers(-BOUND, BOUND + 1, N)
    y = rng.integers(-BOUND, BOUND + 1, N)
    sx, sy = c.share(ring(x), owner="alice"), c.share(ring(y), owner=c.holders[-1])

    ctxs = c.contexts()
    mul_path = ctxs[dealer].path
    prod, _ = run_local({p: c.protos[p].mul(ctxs[p], sx[p], sy[p]) for p in names})
    ctxs = c.contexts()
    seen: list[Mapping[str, Any]] = []
    steps = {p: c.protos[p].reveal(ctxs[p], prod[p]) for p in names}
    steps[dealer] = _recording(steps[dealer], seen)
    opened, _ = run_local(steps)
    np.testing.assert_array_equal(signed(opened[dealer]), x * y)  # both variants are correct

    (received,) = seen
    found, gx, gy = _attack(c, dealer, mul_path, {h: received[h] for h in c.holders})
    if broken:  # the attack works: about 3/4 of the elements (a_L or b_L odd), all right
        assert found.mean() > 0.5, found.mean()
        np.testing.assert_array_equal(gx[found], x[found])
        np.testing.assert_array_equal(gy[found], y[found])
    else:  # the dealer's view is a uniform sharing of x y: no candidate is consistent
        assert not found.any(), found.sum()


def test_revealed_shares_are_uniform_given_the_value() -> None:
    """Revealing the same public value twice: the shares the dealer receives differ entirely
    (the raw shares of a public value are (v, 0): the old reveal sent those)."""
    names = ("alice", "bob", "carol")
    c = Cluster("semi2k", names, "carol")
    v = ring(np.arange(1, N + 1))
    pub = c.local(lambda pr: pr.public(v))
    views = []
    for _ in range(2):
        ctxs = c.contexts()
        seen: list[Mapping[str, Any]] = []
        steps = {p: c.protos[p].reveal(ctxs[p], pub[p]) for p in names}
        steps["carol"] = _recording(steps["carol"], seen)
        out, _ = run_local(steps)
        np.testing.assert_array_equal(out["carol"], v)
        views.append(seen[0])
    for h in ("alice", "bob"):
        assert np.count_nonzero(views[0][h] == views[1][h]) < 2
        assert np.count_nonzero(views[0][h] == 0) + np.count_nonzero(views[0][h] == v) < 2
