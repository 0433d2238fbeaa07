"""semi2k without a dealer at other SoftSpoken k (bits per small VOLE): same results, fewer bytes.

k = 2 is what the protocol suites run; here k = 1 (IKNP) and k = 4 (for slow links) run the ops
that make correlations by OT, with two and three holders, against numpy; the bytes follow
``U = 16 / k`` per OT; the config key and a disagreement between parties are clear errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors._config import ClusterConfig, load_config

from .._nodes import job_errors

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("holders", [2, 3])
@pytest.mark.parametrize("k", [1, 4])
def test_ops_agree_with_numpy_at_k(k: int, holders: int) -> None:
    parties = ["alice", "bob", "carol"][:holders]
    a, b = RNG.standard_normal((24, 16)), RNG.standard_normal((16, 8))
    u, v = RNG.standard_normal(300), RNG.standard_normal(300)
    i, j = RNG.integers(-(2**40), 2**40, 200), RNG.integers(-(2**20), 2**20, 200)

    async def program(job):
        x = await job.input(parties[0], lambda: a)
        y = await job.input(parties[-1], lambda: b)
        p = await job.input(parties[0], lambda: u)
        q = await job.input(parties[-1], lambda: v)
        m = await job.input(parties[0], lambda: i, dtype=int)
        n = await job.input(parties[-1], lambda: j, dtype=int)
        sig = mpc.sigmoid(p) if holders == 2 else p  # sigmoid's many sub-ops: two holders suffice
        return await job.reveal([x @ y, p * q, p < q, sig, m * n])

    out = mpc.simulate(program, parties=parties, protocol="semi2k", dealer="none", softspoken_k=k, timeout=120)
    for mm, prod, lt, sig, ints in out.values():
        np.testing.assert_allclose(mm, a @ b, atol=1e-3)
        np.testing.assert_allclose(prod, u * v, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(lt, dtype=bool), u < v)
        np.testing.assert_allclose(sig, 1 / (1 + np.exp(-u)) if holders == 2 else u, atol=2e-3)
        np.testing.assert_array_equal(ints, (i * j).astype(np.int64))  # exact, mod 2^64


def test_u_bytes_follow_k() -> None:
    """An integer product sends 16 n (openings) + 64 n 16 / k (U) + 288 n (tau) bytes per holder."""
    n = 1 << 14
    x0, y0 = RNG.integers(-1000, 1000, n), RNG.integers(-1000, 1000, n)
    sent = {}
    for k in (1, 2, 4):

        async def program(job):
            x = await job.input("alice", lambda: x0, dtype=int)
            y = await job.input("bob", lambda: y0, dtype=int)
            def handed() -> int:  # framed or still queued: the writer may not have run yet
                s = job.statistics()
                return s.bytes_sent + s.bytes_queued

            before = handed()
            # After the reveal, alice's openings have reached bob (he held z, so he had them):
            # they are counted whatever her link's writer is doing. Read right after `await z`
            # they could still be on their way to the link (CI saw that twice).
            revealed = await job.reveal(x * y)
            return handed() - before, revealed

        out = mpc.simulate(program, parties=["alice", "bob"], protocol="semi2k", dealer="none", softspoken_k=k)
        np.testing.assert_array_equal(out["alice"][1], x0 * y0)
        sent[k] = out["alice"][0]
        model = 16 * n + 64 * n * 16 // k + 288 * n
        # + framing, + at most two messages of 8 n bytes in flight at one end or the other: her
        # input share (not yet counted before) and her share of the reveal (counted or not)
        assert model <= sent[k] <= 1.01 * model + 16 * n + 1024, (k, sent[k], model)
    assert sent[1] > sent[2] > sent[4]


def test_config_key_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    base = 'cluster = "c"\nprotocol = "semi2k"\n[parties.alice]\naddress = "127.0.0.1:1"\n[parties.bob]\naddress = "127.0.0.1:2"\n'
    path.write_text(base)
    assert load_config(path).softspoken_k == 2
    path.write_text("softspoken_k = 4\n" + base)
    assert load_config(path).softspoken_k == 4
    for bad in ("3", "true", '"4"'):
        path.write_text(f"softspoken_k = {bad}\n" + base)
        with pytest.raises(mpc.ConfigError, match=r"softspoken_k.*must be 1, 2, 4 or 8"):
            load_config(path)

    async def program(job):
        return None

    with pytest.raises(mpc.ConfigError, match=r"\[softspoken_k\] SoftSpoken k must be one of \[1, 2, 4, 8\]"):
        mpc.simulate(program, protocol="semi2k", dealer="none", softspoken_k=16)


def test_the_config_accepts_exactly_the_k_the_protocol_has() -> None:
    """``_config`` imports no protocol code, so it keeps its own copy of SoftSpoken's k."""
    from mpcactors._config import SOFTSPOKEN_KS
    from mpcactors.ot._softspoken import KS

    assert SOFTSPOKEN_KS == KS


def test_parties_with_different_k_fail_the_job_naming_the_setting() -> None:
    async def program(job):
        return await job.reveal(job.input("alice", np.ones(2)) * job.input("bob", np.ones(2)))

    configs = {
        p: ClusterConfig.local(["alice", "bob"], protocol="semi2k", dealer="none", softspoken_k=k)
        for p, k in (("alice", 2), ("bob", 4))
    }
    errors = job_errors(configs, lambda _: program, job="k")
    assert set(errors) == {"alice", "bob"}
    for e in errors.values():
        assert "disagree on softspoken_k" in str(e) and "=2" in str(e) and "=4" in str(e), e


def test_k_is_compared_only_where_it_is_used() -> None:
    """rep3 and semi2k with a dealer make no OTs: parties whose files differ in k still run."""
    parties = ["alice", "bob", "carol"]
    x0 = np.arange(4.0)

    async def program(job):
        return await job.reveal(job.input("alice", x0) * job.input("bob", x0))

    for protocol, dealer in (("rep3", None), ("semi2k", "carol")):
        configs = {
            p: ClusterConfig.local(parties, protocol=protocol, dealer=dealer, softspoken_k=k)
            for p, k in zip(parties, (2, 4, 1), strict=True)
        }
        assert job_errors(configs, lambda _: program, job=f"k-{protocol}") == {}, protocol


def test_a_big_matrix_triple_by_ot_warns_with_its_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a dealer a matrix triple's OT traffic grows with m k n: past WARN_MATRIX_BYTES
    each holder logs how much it will send before it starts (here the bar is lowered)."""
    from structlog.testing import capture_logs

    import mpcactors.ops._ot_triples as ot_triples

    a, b = RNG.standard_normal((48, 16)), RNG.standard_normal((16, 8))

    async def program(job):
        x = await job.input("alice", lambda: a)
        y = await job.input("bob", lambda: b)
        return await job.reveal(x @ y)

    for bar, warned in ((10**10, False), (10**5, True)):
        monkeypatch.setattr(ot_triples, "WARN_MATRIX_BYTES", bar)
        with capture_logs() as logs:
            out = mpc.simulate(program, parties=["alice", "bob"], protocol="semi2k", dealer="none")
        np.testing.assert_allclose(out["alice"], a @ b, atol=1e-4)
        found = [e for e in logs if e["event"] == "large_matrix_triple_by_ot"]
        assert bool(found) == warned, logs
        if warned:
            # 64 k n OTs (n < m) of m = 48 words: 8 bytes of U + 36/64 of 8 bytes per word of tau
            model = 64 * 16 * 8 * (8 + 48 * 8 * 36 / 64)
            assert {e["party"] for e in found} == {"alice", "bob"}
            for e in found:
                assert e["bytes_per_holder"] == int(model) and e["shape"] == "(48, 16) @ (16, 8)", e
                assert e["job"] == "sim" and e["op"] and e["peer"] in ("alice", "bob"), e
