"""The EC layer: commutative X25519 blinding, injective key encoding, secret buckets."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcactors._errors import PsiError
from mpcactors.psi._ecdh import (
    POINT_BYTES,
    blind_batch,
    bucket_of,
    encode_key,
    hash_encoded,
    new_secret,
)


def test_double_blinding_commutes_and_separates_ids() -> None:
    ids = [encode_key([f"id{i}"]) for i in range(50)]
    h = hash_encoded(ids)
    a, b = new_secret(), new_secret()
    ab = blind_batch(b, blind_batch(a, h))
    ba = blind_batch(a, blind_batch(b, h))
    assert ab == ba
    values = {ab[i : i + 32] for i in range(0, len(ab), 32)}
    assert len(values) == 50
    # single blinding hides the hash, and another key gives other values
    assert blind_batch(a, h) != h
    assert blind_batch(a, h) != blind_batch(b, h)


def test_hash_clears_bit_255_and_is_deterministic() -> None:
    h = hash_encoded([encode_key([str(i)]) for i in range(200)])
    arr = np.frombuffer(h, dtype=np.uint8).reshape(-1, POINT_BYTES)
    assert np.all(arr[:, 31] < 0x80)
    assert h == hash_encoded([encode_key([str(i)]) for i in range(200)])


def test_encode_key_is_injective_across_column_splits() -> None:
    assert encode_key(["ab", "c"]) != encode_key(["a", "bc"])
    assert encode_key(["", "x"]) != encode_key(["x", ""])
    assert encode_key(["é"]) == encode_key(["é".encode()])  # str and its UTF-8 bytes agree
    assert encode_key(["é"]) != encode_key(["e\u0301"])  # no Unicode normalisation


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=5), min_size=1, max_size=4), st.lists(st.text(max_size=5), min_size=1, max_size=4))
def test_encode_key_property(a: list[str], b: list[str]) -> None:
    assert (encode_key(a) == encode_key(b)) == (a == b)


def test_blind_batch_rejects_bad_input() -> None:
    with pytest.raises(PsiError, match="multiple of 32"):
        blind_batch(new_secret(), b"\x01" * 33)
    with pytest.raises(PsiError, match="low-order"):
        blind_batch(new_secret(), os.urandom(32) + bytes(32))  # u = 0 is a low-order point
    assert blind_batch(new_secret(), b"") == b""


def test_bucket_of_is_keyed_and_in_range() -> None:
    h = hash_encoded([encode_key([str(i)]) for i in range(4000)])
    k1, k2 = os.urandom(32), os.urandom(32)
    b1 = bucket_of(k1, h, 16)
    assert b1.min() >= 0 and b1.max() < 16
    assert np.array_equal(b1, bucket_of(k1, h, 16))
    assert not np.array_equal(b1, bucket_of(k2, h, 16))
    assert np.bincount(b1, minlength=16).min() > 150  # roughly uniform (expected 250)
    assert np.all(bucket_of(k1, h, 1) == 0)
