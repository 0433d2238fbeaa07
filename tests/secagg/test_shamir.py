from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcactors.secagg._shamir import (
    PRIME,
    SHARE_BYTES,
    reconstruct_many,
    share_from_bytes,
    share_many,
    share_to_bytes,
)


@settings(max_examples=40, deadline=None)
@given(
    secrets=st.lists(st.integers(0, 2**256 - 1), min_size=1, max_size=3),
    n=st.integers(2, 8),
    data=st.data(),
)
def test_any_threshold_subset_reconstructs(secrets: list[int], n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    shares = share_many(secrets, xs, t)
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=n, unique=True))
    assert reconstruct_many({x: shares[x] for x in subset}, t) == secrets


def test_fewer_than_threshold_shares_do_not_reconstruct() -> None:
    secret = int.from_bytes(os.urandom(32), "big")
    shares = share_many([secret], [1, 2, 3, 4, 5], 3)
    with pytest.raises(ValueError, match="need 3 shares"):
        reconstruct_many({1: shares[1], 2: shares[2]}, 3)
    # Pretending t = 2 with two shares of a degree-2 polynomial gives garbage, not the secret.
    for a, b in itertools.combinations([1, 2, 3, 4, 5], 2):
        assert reconstruct_many({a: shares[a], b: shares[b]}, 2) != [secret]


def test_shares_are_field_elements_and_roundtrip_as_bytes() -> None:
    shares = share_many([2**256 - 1, 0], [1, 7, 9], 2)
    for values in shares.values():
        for v in values:
            assert 0 <= v < PRIME
            b = share_to_bytes(v)
            assert len(b) == SHARE_BYTES and share_from_bytes(b) == v
    with pytest.raises(ValueError):
        share_from_bytes(b"\xff" * SHARE_BYTES)  # >= p
    with pytest.raises(ValueError):
        share_from_bytes(b"\x00" * 3)


@pytest.mark.parametrize(
    "secrets, xs, t",
    [
        ([2**256], [1, 2], 1),
        ([-1], [1, 2], 1),
        ([1], [1, 1], 1),
        ([1], [0, 2], 1),
        ([1], [1, 2], 3),
    ],
)
def test_bad_arguments_are_refused(secrets: list[int], xs: list[int], t: int) -> None:
    with pytest.raises(ValueError):
        share_many(secrets, xs, t)
