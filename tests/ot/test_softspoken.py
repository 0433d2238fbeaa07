"""SoftSpoken OT extension (k = 1, 2, 4): the GGM set-up, the IKNP correlation, the sender's view."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mpcactors.ot._softspoken as ss
from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ot import OtError
from mpcactors.ot._softspoken import (
    SoftReceiver,
    SoftSender,
    soft_receiver_setup,
    soft_sender_setup,
)

RNG = np.random.default_rng(5)


def _setup(label: bytes = b"t", k: int = ss.K) -> tuple[SoftSender, SoftReceiver, int]:
    res, rounds = run_local(
        {"s": soft_sender_setup("r", label=label, k=k), "r": soft_receiver_setup("s", label=label, k=k)}
    )
    return res["s"], res["r"], rounds


@pytest.fixture(scope="module", params=[1, 2, 4], ids=lambda k: f"k{k}")
def pair(request: pytest.FixtureRequest) -> tuple[SoftSender, SoftReceiver]:
    snd, rcv, rounds = _setup(k=request.param)
    assert rounds == 3  # two of public-key base OTs, one of GGM corrections (empty at k = 1)
    assert snd.k == rcv.k == request.param and snd.u_width == rcv.u_width == 128 // request.param
    return snd, rcv


def _delta_index(snd: SoftSender) -> np.ndarray:
    bits = snd._s_bits.reshape(snd.u_width, snd.k).astype(np.int64)
    return (bits << np.arange(snd.k)).sum(axis=1)


def test_the_sender_holds_every_leaf_but_the_one_at_delta(pair: tuple[SoftSender, SoftReceiver]) -> None:
    snd, rcv = pair
    d = _delta_index(snd)
    assert len(set(d.tolist())) > 1  # Delta_i is random per VOLE, not a constant
    for i in range(snd.u_width):
        for y in range(1, 1 << snd.k):
            assert np.array_equal(snd._known[i, y - 1], rcv._leaves[i, d[i] ^ y])
        missing = rcv._leaves[i, d[i]]
        assert not any(np.array_equal(missing, k) for k in snd._known[i])


@pytest.mark.parametrize("m", [1, 13, 1000, 70001, 300000])
def test_rows_are_the_iknp_correlation(pair: tuple[SoftSender, SoftReceiver], m: int) -> None:
    """``Q_j = T_j ^ (r_j * s)`` for every row, across the kernel's column steps."""
    snd, rcv = pair[0].derive(b"m%d" % m), pair[1].derive(b"m%d" % m)
    r = RNG.integers(0, 2, m).astype(bool)
    for _ in range(2):  # the streams advance: a second batch is as correct as the first
        u, t = rcv.choice_columns(r)
        assert u.shape == (128 // snd.k, -(-m // 8)) and t.shape == (m, 16)
        q = snd.rows_from_columns(u, m)
        flip = np.where(r[:, None], np.uint8(0xFF), np.uint8(0)) & snd.delta[None, :]
        np.testing.assert_array_equal(q, t ^ flip)
        assert snd.rows_done == rcv.rows_done


def test_sessions_are_independent(pair: tuple[SoftSender, SoftReceiver]) -> None:
    """Two sessions from one set-up: each correct, with unrelated rows."""
    r = RNG.integers(0, 2, 4096).astype(bool)
    rows = []
    for sess in (b"a", b"b"):
        snd, rcv = pair[0].derive(sess), pair[1].derive(sess)
        u, t = rcv.choice_columns(r)
        q = snd.rows_from_columns(u, r.size)
        np.testing.assert_array_equal(q ^ t, np.where(r[:, None], np.uint8(0xFF), np.uint8(0)) & snd.delta)
        rows.append(t)
    assert np.mean(rows[0] == rows[1]) < 0.01  # chance 1/256 per byte


def _columns(rcv: SoftReceiver, r: np.ndarray) -> np.ndarray:
    u, _ = rcv.choice_columns(r)
    return np.unpackbits(u, axis=1, bitorder="little")[:, : r.size]


def _agreement(cols: np.ndarray, r: np.ndarray) -> float:
    """Largest deviation from 1/2 of the agreement of a column of ``U`` with the choice bits."""
    return float(np.max(np.abs((cols == r[None, :]).mean(axis=1) - 0.5)))


@pytest.mark.parametrize("broken", [False, True])
def test_the_senders_view_says_nothing_of_the_choices(pair: tuple[SoftSender, SoftReceiver], broken: bool) -> None:
    """Every column of ``U`` agrees with the choice bits at chance; a receiver whose four
    leaves of a VOLE coincide (their streams cancel in ``u_i``) is caught."""
    rcv = pair[1].derive(b"view")
    if broken:
        rcv = SoftReceiver(np.repeat(rcv._leaves[:, :1], 1 << rcv.k, axis=1), k=rcv.k)
    r = RNG.integers(0, 2, 1 << 14).astype(bool)
    dev = _agreement(_columns(rcv, r), r)
    # up to 128 columns of 16384 fair coins: sd 0.004, the max of 128 stays under 0.02
    assert (dev > 0.4) if broken else (dev < 0.02)


def test_a_malformed_setup_message_names_the_peer() -> None:
    def bad_receiver() -> Step[Any]:
        from mpcactors.ot._extension import receiver_base_keys

        yield from receiver_base_keys("s", ss.WIDTH, label=b"x")
        yield Exchange(send={"s": np.zeros((3, 16), dtype=np.uint8)})

    with pytest.raises(OtError, match=r"SoftSpoken set-up: expected .* from 'r'"):
        run_local({"s": soft_sender_setup("r", label=b"x"), "r": bad_receiver()})


def test_malformed_columns_raise(pair: tuple[SoftSender, SoftReceiver]) -> None:
    snd = pair[0].derive(b"bad")
    with pytest.raises(OtError, match=rf"expected \({snd.u_width}, 2\) uint8"):
        snd.rows_from_columns(np.zeros((snd.u_width + 1, 2), dtype=np.uint8), 16)


def test_a_k_that_does_not_divide_a_row_is_refused() -> None:
    for bad in (0, 3, 16, True, "2"):
        with pytest.raises(ValueError, match=r"SoftSpoken k must be one of \[1, 2, 4, 8\]"):
            run_local({"s": soft_sender_setup("r", k=bad), "r": soft_receiver_setup("s", k=2)})  # type: ignore[arg-type]


def test_k8_sets_up_and_correlates() -> None:
    snd, rcv, _ = _setup(b"k8", k=8)
    r = RNG.integers(0, 2, 2048).astype(bool)
    u, t = rcv.choice_columns(r)
    assert u.shape == (16, 256)
    np.testing.assert_array_equal(snd.rows_from_columns(u, r.size) ^ t, np.where(r[:, None], np.uint8(0xFF), np.uint8(0)) & snd.delta)


def test_parties_with_different_k_fail_the_setup_naming_the_peer() -> None:
    with pytest.raises(OtError, match=r"SoftSpoken set-up: expected \(32, 3, 2, 16\) uint8 from 'r', got \(64, 1, 2, 16\)"):
        run_local({"s": soft_sender_setup("r", label=b"m", k=4), "r": soft_receiver_setup("s", label=b"m", k=2)})
