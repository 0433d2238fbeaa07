"""OT layer: base OT, IKNP extension (random, chosen, correlated), KKRT OPRF, sender's view."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

import mpcactors.ot
import mpcactors.ot._extension as ext_mod
from mpcactors.ops._comm import Exchange, run_local
from mpcactors.ot import (
    OtError,
    base_ot_receive,
    base_ot_send,
    cot_receive,
    cot_send,
    ext_receiver_setup,
    ext_sender_setup,
    extend_receive,
    extend_send,
    kkrt_receiver_setup,
    kkrt_sender_setup,
    oprf_receive,
    oprf_send,
    ot_receive,
    ot_send,
    rot_receive,
    rot_send,
    transpose_bits,
)

RNG = np.random.default_rng(11)


def bits_ref(mat: np.ndarray) -> np.ndarray:
    return np.packbits(np.unpackbits(mat, axis=1, bitorder="little").T, axis=1, bitorder="little")


def test_exported_names_are_pinned() -> None:
    assert set(mpcactors.ot.__all__) == {
        "KKRT_WIDTH", "ExtReceiver", "ExtSender", "KkrtReceiver", "KkrtSender", "OtError",
        "PseudoRandomCode", "base_ot_receive", "base_ot_send", "coin_toss", "cot_receive",
        "cot_send", "ext_receiver_setup", "ext_sender_setup", "extend_receive", "extend_send",
        "kkrt_receiver_setup", "kkrt_sender_setup", "oprf_receive", "oprf_send", "ot_receive",
        "ot_send", "rot_receive", "rot_send", "transpose_bits",
    }


@pytest.mark.parametrize("shape", [(8, 1), (64, 16), (512, 3), (24, 64), (1024, 64)])
def test_transpose_matches_unpackbits(shape: tuple[int, int]) -> None:
    m = RNG.integers(0, 256, shape, dtype=np.uint8)
    t = transpose_bits(m)
    assert np.array_equal(t, bits_ref(m))
    if t.shape[0] % 8 == 0:
        assert np.array_equal(transpose_bits(t), m)


def test_base_ot_receiver_gets_exactly_the_chosen_keys() -> None:
    c = RNG.integers(0, 2, 200)
    res, rounds = run_local({"a": base_ot_send("b", 200), "b": base_ot_receive("a", c)})
    k0, k1 = res["a"]
    kc = res["b"]
    assert rounds == 2
    assert np.array_equal(np.where(c[:, None] == 1, k1, k0), kc)
    other = np.where(c[:, None] == 1, k0, k1)
    assert not np.any(np.all(other == kc, axis=1))
    assert len({bytes(k) for k in np.concatenate([k0, k1])}) == 400


def test_base_ot_rejects_invalid_points() -> None:
    recv = base_ot_receive("a", np.zeros(4))
    next(recv)
    with pytest.raises(OtError, match="not a valid Ed25519"):
        recv.send({"a": b"\x01" + bytes(31)})  # the identity
    send = base_ot_send("b", 2)
    next(send)
    next(send)
    with pytest.raises(OtError, match="expected 2 points"):
        send.send({"b": bytes(32)})
    send = base_ot_send("b", 1)
    next(send)
    next(send)
    with pytest.raises(OtError, match="not a valid"):
        send.send({"b": b"\xff" * 32})


@pytest.fixture(scope="module")
def iknp() -> tuple[Any, Any]:
    res, _ = run_local({"s": ext_sender_setup("r"), "r": ext_receiver_setup("s")})
    return res["s"], res["r"]


@pytest.mark.parametrize("m", [1, 7, 1000, 70000])
def test_random_ot(iknp: tuple[Any, Any], m: int) -> None:
    snd, rcv = iknp
    c = RNG.integers(0, 2, m)
    res, _ = run_local({"s": rot_send("r", snd, m, 24), "r": rot_receive("s", rcv, c, 24)})
    x0, x1 = res["s"]
    x = res["r"]
    assert x.shape == (m, 24)
    assert np.array_equal(np.where(c[:, None] == 1, x1, x0), x)
    assert not np.any(np.all(np.where(c[:, None] == 1, x0, x1) == x, axis=1))


def test_chosen_and_correlated_ot(iknp: tuple[Any, Any]) -> None:
    snd, rcv = iknp
    m = 3000
    c = RNG.integers(0, 2, m)
    m0 = RNG.integers(0, 256, (m, 40), dtype=np.uint8)
    m1 = RNG.integers(0, 256, (m, 40), dtype=np.uint8)
    res, _ = run_local({"s": ot_send("r", snd, m0, m1), "r": ot_receive("s", rcv, c, 40)})
    assert np.array_equal(res["r"], np.where(c[:, None] == 1, m1, m0))
    delta = RNG.integers(0, 2**64, m, dtype=np.uint64)
    res, _ = run_local({"s": cot_send("r", snd, delta), "r": cot_receive("s", rcv, c)})
    assert np.array_equal(res["r"], res["s"] + np.where(c == 1, delta, np.uint64(0)))


def test_kkrt_oprf() -> None:
    res, rounds = run_local({"s": kkrt_sender_setup("r"), "r": kkrt_receiver_setup("s")})
    assert rounds == 2
    snd, rcv = res["s"], res["r"]
    m = 5000
    x = RNG.integers(0, 256, (m, 16), dtype=np.uint8)
    res, _ = run_local({"s": oprf_send("r", snd, m), "r": oprf_receive("s", rcv, x)})
    first, q = res["s"]
    out = res["r"]
    rows = np.arange(m)
    assert np.array_equal(snd.evaluate(q, rows, first, x), out)
    y = x.copy()
    y[:, 3] ^= 0x10
    assert not np.any(np.all(snd.evaluate(q, rows, first, y) == out, axis=1))
    # a row's PRF differs from another row's on the same input
    assert not np.any(np.all(snd.evaluate(q, np.roll(rows, 1), first, x) == out, axis=1))


# ---- the sender's view does not depend on the choice bits -------------------------------------

def recording(gen: Generator[Exchange, Any, Any], log: list[Any]) -> Generator[Exchange, Any, Any]:
    """Forward a step, keeping every message it receives (its view)."""
    reply = None
    try:
        while True:
            ex = gen.send(reply) if reply is not None else next(gen)
            reply = yield ex
            log.append(reply)
    except StopIteration as stop:
        return stop.value


def sender_view(choices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U, Q, s)`` of a fresh extension: the received rows, the computed rows and s."""
    res, _ = run_local({"s": ext_sender_setup("r"), "r": ext_receiver_setup("s")})
    snd, rcv = res["s"], res["r"]
    codes = np.where(choices[:, None] == 1, np.uint8(0xFF), np.uint8(0)).repeat(16, axis=1)
    log: list[Any] = []
    res, _ = run_local({"s": recording(extend_send("r", snd, len(choices)), log),
                        "r": extend_receive("s", rcv, codes.astype(np.uint8))})
    u = np.concatenate([m["r"] for m in log if m])
    s = np.unpackbits(snd.delta, bitorder="little").astype(bool)
    return u, res["s"], s


def distinguishes(choices_a: np.ndarray, choices_b: np.ndarray) -> bool:
    """A distinguisher on the sender's view: do two choice vectors give different statistics?

    Statistics (6 sigma bounds for m * 128 fair coins): the share of ones in ``U``, and in
    ``U ^ Q`` on the columns where ``s_i = 0`` (there ``Q`` is the sender's own PRG column, so
    that share is 1/2 exactly when the receiver also masked with the other key's PRG).
    """
    stats = []
    for ch in (choices_a, choices_b):
        u, q, s = sender_view(ch)
        ub = np.unpackbits(u, axis=1, bitorder="little")
        vb = np.unpackbits(u ^ q, axis=1, bitorder="little")[:, ~s]
        stats.append((ub.mean(), vb.mean(), ub.size, vb.size))
    (ua, va, nu, nv), (ub_, vb_, _, _) = stats
    return bool(abs(ua - ub_) > 6 * np.sqrt(0.5 / nu) or abs(va - vb_) > 6 * np.sqrt(0.5 / nv))


def test_sender_view_is_independent_of_choices() -> None:
    zeros = np.zeros(4096, dtype=np.int64)
    ones = np.ones(4096, dtype=np.int64)
    assert not distinguishes(zeros, ones)
    assert not distinguishes(zeros, RNG.integers(0, 2, 4096))


@pytest.mark.parametrize("broken", ["no mask", "one seed"])
def test_distinguisher_catches_a_broken_receiver(monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    """The same test fails on a receiver that does not mask with both seeds' PRG."""
    if broken == "no mask":
        monkeypatch.setattr(ext_mod, "mask_rows", lambda g0, g1, out: np.bitwise_and(g0, 0, out=out))
    else:  # U = G(k^0) ^ c: the sender knows half of the columns' masks
        monkeypatch.setattr(ext_mod, "mask_rows", lambda g0, g1, out: np.copyto(out, g0) or out)
    zeros = np.zeros(4096, dtype=np.int64)
    ones = np.ones(4096, dtype=np.int64)
    assert distinguishes(zeros, ones)
