from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpcactors import AggregationError, ConfigError
from mpcactors.secagg import Quantizer
from mpcactors.secagg._masking import expand_mask, label, pair_seed, seal, unseal
from mpcactors.secagg._protocol import ring_neighbours


@pytest.mark.parametrize("ring_bits, frac_bits", [(64, 18), (32, 16), (24, 8)])
def test_quantise_roundtrip_within_half_a_step(ring_bits: int, frac_bits: int) -> None:
    q = Quantizer(clip=4.0, frac_bits=frac_bits, ring_bits=ring_bits)
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, size=1000)
    ring, clipped = q.quantise(x)
    assert ring.dtype == q.dtype and clipped == 0
    assert int(ring.max()) < 2**ring_bits
    assert np.max(np.abs(q.dequantise(ring) - x)) <= q.step / 2


def test_sums_of_quantised_vectors_wrap_and_decode() -> None:
    q = Quantizer(clip=2.0, frac_bits=16, ring_bits=32)
    rng = np.random.default_rng(2)
    xs = [rng.uniform(-3, 3, size=500) for _ in range(7)]
    total = np.zeros(500, dtype=q.dtype)
    for x in xs:
        total += q.quantise(x)[0]
    want = sum(np.clip(x, -2, 2) for x in xs)
    assert np.max(np.abs(q.dequantise(total) - want)) <= 7 * q.step / 2


def test_clipping_is_counted() -> None:
    q = Quantizer(clip=1.0, frac_bits=10, ring_bits=32)
    ring, clipped = q.quantise(np.array([-5.0, 0.5, 1.0, 2.0]))
    assert clipped == 2
    assert q.dequantise(ring).tolist() == [-1.0, 0.5, 1.0, 1.0]


def test_capacity_and_bad_parameters_are_refused() -> None:
    q = Quantizer(clip=1.0, frac_bits=16, ring_bits=32)
    q.check_capacity(2**14)
    with pytest.raises(ConfigError, match="overflows"):
        q.check_capacity(2**15)
    for kwargs in (
        {"clip": 0.0, "frac_bits": 8, "ring_bits": 32},
        {"clip": float("inf"), "frac_bits": 8, "ring_bits": 32},
        {"clip": 1.0, "frac_bits": 8, "ring_bits": 8},
        {"clip": 1.0, "frac_bits": 40, "ring_bits": 32},
        {"clip": 2.0**20, "frac_bits": 16, "ring_bits": 32},
    ):
        with pytest.raises(ConfigError):
            Quantizer(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(AggregationError, match="NaN"):
        q.quantise(np.array([1.0, np.nan]))


def test_pairwise_seeds_agree_and_masks_cancel() -> None:
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pub = lambda k: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    s_ab = pair_seed(a, pub(b), "mask", "job", "tag", "alice", "bob")
    assert s_ab == pair_seed(b, pub(a), "mask", "job", "tag", "alice", "bob")
    assert s_ab != pair_seed(b, pub(a), "mask", "job", "tag2", "alice", "bob")
    for dtype in (np.dtype(np.uint32), np.dtype(np.uint64)):
        m = expand_mask(s_ab, 1001, dtype)
        assert m.shape == (1001,) and m.dtype == dtype
        assert np.array_equal(m, expand_mask(s_ab, 1001, dtype))
        assert not np.any((m + (-m)).astype(bool))
    with pytest.raises(AggregationError):
        pair_seed(a, b"\x00" * 32, "mask")  # low-order point: all-zero shared secret


def test_sealed_shares_authenticate_sender_and_receiver() -> None:
    key = bytes(range(32))
    blob = seal(key, b"shares", label("shares", "j", "t", "alice", "bob"))
    assert unseal(key, blob, label("shares", "j", "t", "alice", "bob"), sender="alice") == b"shares"
    with pytest.raises(AggregationError, match="misrouted"):
        unseal(key, blob, label("shares", "j", "t", "carol", "bob"), sender="carol")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(AggregationError, match="tampered"):
        unseal(key, tampered, label("shares", "j", "t", "alice", "bob"), sender="alice")


@pytest.mark.parametrize("m, k", [(10, 2), (10, 4), (11, 6), (5, 4), (5, None), (3, 8)])
def test_ring_graph_is_symmetric_and_regular(m: int, k: int | None) -> None:
    order = [f"c{i}" for i in range(m)]
    g = ring_neighbours(order, k)
    degree = m - 1 if k is None or k >= m - 1 else k
    for u, near in g.items():
        assert u not in near and len(near) == degree
        for v in near:
            assert u in g[v]
