"""semi2k without a dealer makes matrix triples by lattice HE (``matrix_triples``; issue 12).

``_he_triples.py`` is checked at the protocol level in ``test_he_triples.py``; here the route:
matmuls agree with numpy in ``simulate`` with two and three holders when HE is forced, ``auto``
picks HE for big shapes and OT for the skinny ones of logistic regression, and the setting is a
checked config key that the parties must agree on.
"""

from __future__ import annotations

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors._config import ClusterConfig, parse_config
from mpcactors.ops import _he_triples as he
from mpcactors.ops._ot_triples import matrix_route, uses_he

from .._nodes import job_errors

needs_he = pytest.mark.skipif(not he.available(), reason="TenSEAL (the he extra) does not import")


@needs_he
@pytest.mark.parametrize("holders", [2, 3])
def test_matmuls_by_he_agree_with_numpy(holders: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """2-d, vector and stacked products; every triple goes by HE (counted)."""
    rng = np.random.default_rng(holders)
    a, b = rng.uniform(-3, 3, (24, 16)), rng.uniform(-3, 3, (16, 9))
    v = rng.uniform(-3, 3, 16)
    s, t = rng.uniform(-3, 3, (2, 5, 4)), rng.uniform(-3, 3, (4, 3))
    calls: list[tuple[int, ...]] = []
    real = he.he_cross_terms

    def counted(peer, x, y, prg):  # type: ignore[no-untyped-def]
        calls.append(x.shape + y.shape)
        return real(peer, x, y, prg)

    monkeypatch.setattr(he, "he_cross_terms", counted)
    parties = ["alice", "bob", "carol"][:holders]

    async def program(job):  # type: ignore[no-untyped-def]
        x, y = job.input("alice", a), job.input(parties[-1], b)
        u = job.input(parties[-1], v)
        p, q = job.input("alice", s), job.input("bob", t)
        return await job.reveal({"mm": x @ y, "vec": u @ y, "stack": p @ q})

    out = mpc.simulate(program, parties, protocol="semi2k", dealer="none", matrix_triples="he")
    for got in out.values():
        np.testing.assert_allclose(got["mm"], a @ b, atol=1e-3)
        np.testing.assert_allclose(got["vec"], v @ b, atol=1e-3)
        np.testing.assert_allclose(got["stack"], s @ t, atol=1e-3)
    pairs = holders * (holders - 1) // 2
    assert len(calls) == 2 * pairs * (1 + 1 + 2)  # two holders per pair, one per 2-d matrix


def test_auto_picks_he_where_its_modelled_cost_is_lower(monkeypatch: pytest.MonkeyPatch) -> None:
    assert uses_he("auto", 256, 256, 256) and uses_he("auto", 1024, 1024, 1024)
    # logistic regression 10000 x 20: X w and X^T e by HE too (as fast as OT there, 0.6x the bytes)
    assert uses_he("auto", 10000, 20, 1) and uses_he("auto", 20, 10000, 1)
    # small products stay on OT (a triple's keys and one returned block cost more)
    assert not uses_he("auto", 3, 5, 7) and not uses_he("auto", 1000, 20, 1) and not uses_he("auto", 32, 32, 32)
    assert uses_he("he", 3, 5, 7) and not uses_he("ot", 1024, 1024, 1024)
    # a shape whose flood does not fit the parameters goes by OT even when HE is asked for (the
    # refusal itself: test_he_triples; the smallest real such shapes take seconds to plan)
    assert uses_he("he", 64, 64, 64)

    def refuse(plan, degree=he.DEGREE):  # type: ignore[no-untyped-def]
        raise ValueError("needs a flood of 2^200")

    monkeypatch.setattr(he, "flood_bits", refuse)
    assert not uses_he("he", 64, 64, 64)


def test_the_setting_is_checked_and_he_needs_tenseal(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(mpc.ConfigError, match=r"\[matrix_triples\] matrix_triples must be"):
        matrix_route("fhe")
    assert matrix_route("ot") == "ot"
    assert matrix_route("he", resolve=False) == "ot"  # a dealer makes the triples
    monkeypatch.setattr(he, "available", lambda: False)
    assert matrix_route("auto") == "ot"
    with pytest.raises(mpc.ConfigError, match=r"needs TenSEAL and zstandard \(pip install 'mpcactors\[he\]'\)"):
        matrix_route("he")
    with pytest.raises(mpc.ConfigError, match="needs TenSEAL"):
        mpc.simulate(_nothing, protocol="semi2k", dealer="none", matrix_triples="he")
    # with a dealer the key is only checked: no TenSEAL needed
    assert mpc.simulate(_nothing, ["alice", "bob", "carol"], protocol="semi2k", dealer="carol",
                        matrix_triples="he") == {"alice": None, "bob": None, "carol": None}


async def _nothing(job):  # type: ignore[no-untyped-def]
    return None


@pytest.mark.parametrize("key", ["matrix_triples", "mul_triples"])
def test_the_config_keys(key: str) -> None:
    """matrix_triples, and mul_triples for elementwise triples (test_he_simd.py)."""
    raw = {
        "cluster": "c",
        "protocol": "semi2k",
        "parties": {p: {"address": f"127.0.0.1:{9000 + i}"} for i, p in enumerate(("alice", "bob"))},
    }
    assert getattr(parse_config(raw), key) == "auto"
    assert getattr(parse_config({**raw, key: "ot"}), key) == "ot"
    with pytest.raises(mpc.ConfigError, match=rf"{key}.*must be one of 'auto', 'ot', 'he'"):
        parse_config({**raw, key: "HE"})


@needs_he
@pytest.mark.parametrize("key", ["matrix_triples", "mul_triples"])
def test_parties_on_different_routes_fail_the_job_naming_the_setting(key: str) -> None:
    """One party with TenSEAL asked for HE, the other for OT: both fail at set-up, saying so
    (a product would otherwise run two different protocols)."""

    async def program(job):  # type: ignore[no-untyped-def]
        return await job.reveal(job.input("alice", np.ones((2, 2))) @ job.input("bob", np.ones((2, 2))))

    configs = {
        p: ClusterConfig.local(["alice", "bob"], protocol="semi2k", dealer="none", **{key: m})
        for p, m in (("alice", "he"), ("bob", "ot"))
    }
    errors = job_errors(configs, lambda _: program, job="m")
    assert set(errors) == {"alice", "bob"}
    for e in errors.values():
        assert f"disagree on {key}" in str(e) and "'he'" in str(e) and "'ot'" in str(e), e
