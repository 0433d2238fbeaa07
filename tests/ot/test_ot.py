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


def _count_public_key_ots(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every public-key base-OT batch sent from now on."""
    counts: list[int] = []
    real_send = ext_mod.base_ot_send

    def counting_send(peer: str, n: int, *, label: bytes = b"") -> Any:
        counts.append(n)
        return real_send(peer, n, label=label)

    monkeypatch.setattr(ext_mod, "base_ot_send", counting_send)
    return counts


def checked_setup(width: int) -> tuple[Any, Any, int]:
    """An extension set-up of ``width``: ``(sender, receiver, rounds)``, having checked that the
    sender holds exactly ``k_i^{s_i}`` of the receiver's key pairs."""
    res, rounds = run_local({"s": ext_sender_setup("r", width), "r": ext_receiver_setup("s", width)})
    snd: Any = res["s"]
    rcv: Any = res["r"]
    k0, k1 = rcv._keys
    s = snd._s_bits.astype(bool)
    assert np.array_equal(np.where(s[:, None], k1, k0), snd._keys)
    return snd, rcv, rounds


def test_wide_setup_extends_128_public_key_base_ots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Width 512: 128 public-key OTs, then 512 random OTs by IKNP (3 rounds); the ext sender
    gets exactly ``k_j^{s_j}``, and the other keys differ and look random."""
    counts = _count_public_key_ots(monkeypatch)
    snd, rcv, rounds = checked_setup(512)
    assert counts == [128]
    assert rounds == 3
    k0, k1 = rcv._keys
    s = snd._s_bits.astype(bool)
    assert k0.shape == k1.shape == snd._keys.shape == (512, 16)
    other = np.where(s[:, None], k0, k1)
    assert not np.any(np.all(other == snd._keys, axis=1))
    assert len({bytes(k) for k in np.concatenate([k0, k1])}) == 1024
    ones = np.unpackbits(other).mean()  # 65536 bits: 6 sigma = 0.012
    assert abs(ones - 0.5) < 0.012
    # and the keys work: an extension over them gives correct OTs
    c = RNG.integers(0, 2, 300)
    codes = np.where(c[:, None] == 1, np.uint8(0xFF), np.uint8(0)).repeat(64, axis=1).astype(np.uint8)
    out: Any = run_local({"s": extend_send("r", snd, 300), "r": extend_receive("s", rcv, codes)})[0]
    assert np.array_equal(out["s"], out["r"] ^ (codes & snd.delta))


def test_narrow_setup_is_one_round_trip_of_public_key_ots(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = _count_public_key_ots(monkeypatch)
    _, _, rounds = checked_setup(128)
    assert counts == [128]
    assert rounds == 2


def test_wide_setup_labels_separate_domains() -> None:
    """The same inner keys under two labels give unrelated outer keys (and the inner base-OT
    label is not the outer label)."""
    base_a, rot_a = ext_mod._inner_labels(b"a")
    base_b, rot_b = ext_mod._inner_labels(b"b")
    assert len({base_a, rot_a, base_b, rot_b, b"a", b"b"}) == 6
    assert ext_mod._inner_labels(b"")[0] != b""


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
    assert rounds == 4  # coin toss and base offers, 128 public-key OTs (2), IKNP's U for 512 keys
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


def oprf_pair(snd: Any, rcv: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One OPRF run of ``x`` rows: (the receiver's outputs, the ``U`` the sender saw)."""
    seen: list[Any] = []
    res, _ = run_local({"s": recording(oprf_send("r", snd, len(x)), seen), "r": oprf_receive("s", rcv, x)})
    first, q = res["s"]
    assert np.array_equal(snd.evaluate(q, np.arange(len(x)), first, x), res["r"])
    return res["r"], np.concatenate([msg["r"] for msg in seen])


def test_kkrt_bases_are_kept_and_reused_in_one_round() -> None:
    """A set-up hands out its base OTs; a later set-up that both parties offer it to takes one
    round, and its session is fresh: other code, other column streams, other PRF."""
    res, rounds = run_local({"s": kkrt_sender_setup("r"), "r": kkrt_receiver_setup("s")})
    base_s, base_r = res["s"].new_base, res["r"].new_base
    assert rounds == 4 and base_s is not None and base_r is not None
    assert base_s.id == base_r.id and base_r.receiver and not base_s.receiver
    x = RNG.integers(0, 256, (3000, 16), dtype=np.uint8)
    outs, us, codes = [], [], []
    for _ in range(2):
        res, rounds = run_local({"s": kkrt_sender_setup("r", bases=[base_s]),
                                 "r": kkrt_receiver_setup("s", bases=[base_r])})
        assert rounds == 1 and res["s"].new_base is None and res["r"].new_base is None
        out, u = oprf_pair(res["s"], res["r"], x)
        outs.append(out)
        us.append(u)
        codes.append(res["r"].code(x))
    assert not np.any(np.all(outs[0] == outs[1], axis=1))  # a fresh PRF per session
    # no column stream repeats: with one, U_0 ^ U_1 would be C_0(x) ^ C_1(x), which the sender
    # can compute (the code keys are a public coin toss) -- and learn x's rows from
    assert not np.any(np.all(us[0] ^ us[1] == codes[0] ^ codes[1], axis=1))


def test_kkrt_without_a_common_base_sets_up_afresh() -> None:
    one, _ = run_local({"s": kkrt_sender_setup("r"), "r": kkrt_receiver_setup("s")})
    two, _ = run_local({"s": kkrt_sender_setup("r"), "r": kkrt_receiver_setup("s")})
    res, rounds = run_local({"s": kkrt_sender_setup("r", bases=[two["s"].new_base]),
                             "r": kkrt_receiver_setup("s", bases=[one["r"].new_base])})
    assert rounds == 4 and res["r"].new_base is not None
    assert res["r"].new_base.id == res["s"].new_base.id != one["r"].new_base.id
    x = RNG.integers(0, 256, (500, 16), dtype=np.uint8)
    oprf_pair(res["s"], res["r"], x)


def test_kkrt_setup_rejects_a_malformed_session_message() -> None:
    def hostile() -> Generator[Exchange, Any, None]:
        yield Exchange(send={"r": {"c": b"short", "b": []}}, recv=frozenset({"r"}))

    with pytest.raises(OtError, match="malformed session message"):
        run_local({"s": hostile(), "r": kkrt_receiver_setup("s")})


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


def sender_view(choices: np.ndarray, width: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U, Q, s)`` of a fresh extension: the received rows, the computed rows and s."""
    res, _ = run_local({"s": ext_sender_setup("r", width), "r": ext_receiver_setup("s", width)})
    snd, rcv = res["s"], res["r"]
    codes = np.where(choices[:, None] == 1, np.uint8(0xFF), np.uint8(0)).repeat(width // 8, axis=1)
    log: list[Any] = []
    res, _ = run_local({"s": recording(extend_send("r", snd, len(choices)), log),
                        "r": extend_receive("s", rcv, codes.astype(np.uint8))})
    u = np.concatenate([m["r"] for m in log if m])
    s = np.unpackbits(snd.delta, bitorder="little").astype(bool)
    return u, res["s"], s


def distinguishes(choices_a: np.ndarray, choices_b: np.ndarray, width: int = 128) -> bool:
    """A distinguisher on the sender's view: do two choice vectors give different statistics?

    Statistics (6 sigma bounds for m * width fair coins): the share of ones in ``U``, and in
    ``U ^ Q`` on the columns where ``s_i = 0`` (there ``Q`` is the sender's own PRG column, so
    that share is 1/2 exactly when the receiver also masked with the other key's PRG).
    """
    stats = []
    for ch in (choices_a, choices_b):
        u, q, s = sender_view(ch, width)
        ub = np.unpackbits(u, axis=1, bitorder="little")
        vb = np.unpackbits(u ^ q, axis=1, bitorder="little")[:, ~s]
        stats.append((ub.mean(), vb.mean(), ub.size, vb.size))
    (ua, va, nu, nv), (ub_, vb_, _, _) = stats
    return bool(abs(ua - ub_) > 6 * np.sqrt(0.5 / nu) or abs(va - vb_) > 6 * np.sqrt(0.5 / nv))


@pytest.mark.parametrize("width", [128, 512])
def test_sender_view_is_independent_of_choices(width: int) -> None:
    zeros = np.zeros(4096, dtype=np.int64)
    ones = np.ones(4096, dtype=np.int64)
    assert not distinguishes(zeros, ones, width)
    assert not distinguishes(zeros, RNG.integers(0, 2, 4096), width)


def setup_view(choices: np.ndarray) -> np.ndarray:
    """``U'`` the wide set-up's IKNP sender (the ext receiver) gets for the peer's bits."""
    log: list[Any] = []
    run_local({"r": recording(ext_mod._base_ots_by_extension_send("s", len(choices), b""), log),
               "s": ext_mod._base_ots_by_extension_receive("r", choices, b"")})
    (u,) = [m["s"] for m in log if m and isinstance(m["s"], np.ndarray)]
    return np.asarray(u)


@pytest.mark.parametrize("broken", [None, "no mask"])
def test_wide_setup_view_is_independent_of_choice_bits(monkeypatch: pytest.MonkeyPatch, broken: str | None) -> None:
    """The ext receiver's view of the set-up (``U'``) does not reveal the sender's ``s``; the
    same statistic catches a receiver that does not mask."""
    if broken:
        monkeypatch.setattr(ext_mod, "mask_rows", lambda g0, g1, out: np.bitwise_and(g0, 0, out=out))
    zeros = setup_view(np.zeros(4096, dtype=np.int64))
    ones = setup_view(np.ones(4096, dtype=np.int64))
    assert zeros.shape == ones.shape == (4096, 16)
    diff = abs(np.unpackbits(zeros).mean() - np.unpackbits(ones).mean())
    assert (diff > 6 * np.sqrt(0.5 / (4096 * 128))) == bool(broken)


@pytest.mark.parametrize("width", [128, 512])
@pytest.mark.parametrize("broken", ["no mask", "one seed"])
def test_distinguisher_catches_a_broken_receiver(monkeypatch: pytest.MonkeyPatch, broken: str, width: int) -> None:
    """The same test fails on a receiver that does not mask with both seeds' PRG."""
    real = ext_mod.mask_rows

    def mask(g0: np.ndarray, g1: np.ndarray, out: np.ndarray) -> np.ndarray:
        if g0.shape[0] != width:  # the wide set-up's inner 128-wide extension stays correct
            return real(g0, g1, out)
        if broken == "no mask":
            return np.bitwise_and(g0, 0, out=out)
        np.copyto(out, g0)  # U = G(k^0) ^ c: the sender knows half of the columns' masks
        return out

    monkeypatch.setattr(ext_mod, "mask_rows", mask)
    zeros = np.zeros(4096, dtype=np.int64)
    ones = np.ones(4096, dtype=np.int64)
    assert distinguishes(zeros, ones, width)
