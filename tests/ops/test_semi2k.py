"""semi2k specifics: dealer configuration, who sends what to whom (bytes), the dealer's view, the
two truncations, and the trusted-first-party warning."""

from __future__ import annotations

import numpy as np
import pytest
from structlog.testing import capture_logs

from mpcactors._errors import ConfigError, ProtocolError
from mpcactors.ops._comm import Exchange
from mpcactors.ops._registry import make_protocol
from mpcactors.ops._semi2k import Semi2k

from .conftest import Cluster, ring, signed

N = 1000
WORD = 8


def dealer_cluster(holders: int = 2) -> Cluster:
    names = ("alice", "bob", "carol", "dave", "erin")[: holders + 1]
    return Cluster("semi2k", names, names[-1])


# ---- configuration -----------------------------------------------------------------------------------
def test_no_dealer_means_two_holders_by_ot_and_no_warning() -> None:
    """With no dealer named (or dealer = "none") the parties make their own correlations, two
    with each other and more by pairs; no trusted-first-party warning is logged."""
    for dealer in (None, "none"):
        with capture_logs() as logs:
            proto = make_protocol("semi2k", "alice", ("alice", "bob"), dealer=dealer)
        assert logs == []
        assert isinstance(proto, Semi2k) and proto.dealerless and not proto.insecure
        assert proto.holders == ("alice", "bob")
    with capture_logs() as logs:
        proto = make_protocol("semi2k", "carol", ("alice", "bob", "carol"))
    assert logs == []
    assert isinstance(proto, Semi2k) and proto.dealerless and proto.holders == ("alice", "bob", "carol")


def test_dealer_must_be_a_party_and_leave_two_holders() -> None:
    with pytest.raises(ConfigError, match="'zoe' is not a party"):
        make_protocol("semi2k", "alice", ("alice", "bob", "carol"), dealer="zoe")
    with pytest.raises(ConfigError, match="at least 2"):
        make_protocol("semi2k", "alice", ("alice", "bob"), dealer="bob")
    with pytest.raises(ConfigError, match="not one of"):
        Semi2k("mallory", ("alice", "bob", "carol"), dealer="carol")


def test_holders_exclude_the_dealer() -> None:
    proto = make_protocol("semi2k", "carol", ("alice", "bob", "carol"), dealer="carol")
    assert proto.holders == ("alice", "bob") and not proto.holds
    assert not proto.insecure


def test_trusted_first_party_warns_and_is_named_insecure() -> None:
    with capture_logs() as logs:
        proto = make_protocol("semi2k", "bob", ("alice", "bob"), dealer="trusted-first-party")
    assert proto.insecure and proto.holders == ("alice", "bob")
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "insecure" in logs[0]["event"] and logs[0]["dealer"] == "alice"


# ---- the dealer's view and traffic -----------------------------------------------------------------------
def test_dealer_holds_placeholders_only() -> None:
    c = dealer_cluster()
    sx = c.share(ring(np.arange(6).reshape(2, 3)))
    assert not sx["carol"].held and sx["carol"].shape == (2, 3)
    out, _ = c.run(lambda pr, ctx: pr.mul(ctx, sx[pr.party], sx[pr.party]))
    assert out["carol"].parts == () and out["carol"].shape == (2, 3)
    mm, _ = c.run(lambda pr, ctx: pr.matmul(ctx, sx[pr.party], sx[pr.party].map(np.transpose)))
    assert mm["carol"].parts == () and mm["carol"].shape == (2, 2)


@pytest.mark.parametrize("holders", [2, 3])
def test_mul_traffic_dealer_sends_one_correction(holders: int) -> None:
    """One round; the dealer sends exactly one array, to the last holder; holders send e_i, f_i."""
    c = dealer_cluster(holders)
    x = np.arange(N, dtype=np.uint64)
    sx = c.share(x)
    out, rounds = c.run(lambda pr, ctx: pr.mul(ctx, sx[pr.party], sx[pr.party]))
    assert rounds == 1
    dealer, last = c.parties[-1], c.holders[-1]
    assert c.sent[dealer] == [(last, N * WORD)]
    for h in c.holders:
        assert sorted(c.sent[h]) == sorted((p, 2 * N * WORD) for p in c.holders if p != h)
    np.testing.assert_array_equal(c.reveal(out), x * x)


def test_matmul_correction_has_the_result_shape() -> None:
    c = dealer_cluster()
    a, b = ring(np.ones((30, 20))), ring(np.ones((20, 10)))
    sa, sb = c.share(a), c.share(b)
    c.run(lambda pr, ctx: pr.matmul(ctx, sa[pr.party], sb[pr.party]))
    assert c.sent["carol"] == [("bob", 30 * 10 * WORD)]


def test_share_sends_data_to_at_most_one_holder() -> None:
    c = dealer_cluster(3)
    x = np.arange(N, dtype=np.uint64)
    for owner, receivers in (
        ("alice", 0),
        ("dave", 1),
    ):  # a holder keeps the rest; the dealer sends it
        sx, rounds = c.run(
            lambda pr, ctx, owner=owner: pr.share(
                ctx, owner, x if pr.party == owner else None, None
            )
        )
        assert rounds == 1
        big = [peer for peer, nbytes in c.sent[owner] if nbytes >= N * WORD]
        assert len(big) == receivers and len(c.sent[owner]) == len(c.parties) - 1
        np.testing.assert_array_equal(c.reveal(sx), x)


def test_bit_to_arith_sends_packed_bits() -> None:
    c = dealer_cluster()
    b = c.share(np.ones(N, dtype=np.uint64), kind="bool")
    c.run(lambda pr, ctx: pr.bit_to_arith(ctx, b[pr.party]))
    assert c.sent["alice"] == [("bob", N // 8)]
    assert c.sent["carol"] == [("bob", N * WORD)]


def test_reveal_to_the_dealer_only() -> None:
    c = dealer_cluster()
    x = ring([1, -2, 3])
    sx = c.share(x)
    out, rounds = c.run(lambda pr, ctx: pr.reveal(ctx, sx[pr.party], "carol"))
    assert rounds == 1 and out["alice"] is None and out["bob"] is None
    np.testing.assert_array_equal(out["carol"], x)


# ---- truncation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("holders", [2, 3])
def test_truncation_traffic(holders: int) -> None:
    """One round: holders open x + r among themselves; the dealer sends the last holder the two
    corrections (r_mid, r_msb) and nothing to anyone else (it never sees the opening)."""
    c = dealer_cluster(holders)
    sx = c.share(ring(np.arange(N)))
    _, rounds = c.run(lambda pr, ctx: pr.truncate(ctx, sx[pr.party], 18))
    assert rounds == 1
    dealer, last = c.parties[-1], c.holders[-1]
    assert c.sent[dealer] == [(last, 2 * N * WORD)]
    for h in c.holders:
        assert sorted(c.sent[h]) == sorted((p, N * WORD) for p in c.holders if p != h)


@pytest.mark.parametrize("holders", [2, 3])
@pytest.mark.parametrize("dealer", ["party", "trusted-first-party"])
def test_truncation_is_faithful_for_huge_values(holders: int, dealer: str) -> None:
    """No wrap-around failure even for |x| close to 2^62, where SecureML local truncation (the
    2-holder truncation before) failed for ~1/8 of the elements by ~2^(64-d)."""
    if dealer == "party":
        c = dealer_cluster(holders)
    else:
        c = Cluster("semi2k", ("alice", "bob", "carol")[:holders], "trusted-first-party")
    rng = np.random.default_rng(11)
    x = rng.integers(-(2**62), 2**62, 5000)
    x[:4] = [2**62 - 1, -(2**62), 2**61, -(2**61)]
    sx = c.share(ring(x))
    for bits in (1, 18, 40, 62):
        out, rounds = c.run(lambda pr, ctx, bits=bits: pr.truncate(ctx, sx[pr.party], bits))
        assert rounds == 1
        err = signed(c.reveal(out)) - (x >> bits)
        assert set(np.unique(err)) <= {0, 1}, bits


def test_dealt_truncation_rounds_up_with_the_fraction() -> None:
    """e in {0, 1} is 1 with probability ~ the dropped fraction: probabilistic rounding."""
    c = dealer_cluster(2)
    x = np.full(20000, 3 * 2**10 + 2**9 + 2**8, dtype=np.int64)  # 3.75 after >> 10
    sx = c.share(ring(x))
    out, _ = c.run(lambda pr, ctx: pr.truncate(ctx, sx[pr.party], 10))
    frac = np.mean(signed(c.reveal(out)) - 3)
    assert 0.7 < frac < 0.8


def test_truncate_rejects_bad_bit_counts() -> None:
    c = dealer_cluster()
    sx = c.share(ring([1]))
    for bits in (-1, 63):
        with pytest.raises(ValueError, match="bits"):
            c.run(lambda pr, ctx, bits=bits: pr.truncate(ctx, sx[pr.party], bits))


# ---- bad peers -------------------------------------------------------------------------------------
def test_malformed_masked_operand_is_a_protocol_error() -> None:
    c = dealer_cluster()
    sx = c.share(ring([1, 2, 3]))
    ctxs = c.contexts()
    step = c.protos["alice"].mul(ctxs["alice"], sx["alice"], sx["alice"])
    ex = next(step)
    assert isinstance(ex, Exchange) and ex.recv == {"bob"}
    with pytest.raises(ProtocolError, match="bob"):
        step.send({"bob": {"o": (np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.uint64))}})
