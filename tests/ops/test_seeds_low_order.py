"""Seed agreement: a peer's low-order X25519 key is a ProtocolError naming the peer."""

from __future__ import annotations

import pytest

from mpcactors._errors import ProtocolError
from mpcactors.ops._seeds import agree_seeds

# Points of order 1, 2, 4 and 8 on Curve25519 and their twist (the list libsodium rejects).
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ((1 << 255) - 19 - 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize("pk", LOW_ORDER, ids=range(len(LOW_ORDER)))
def test_low_order_public_key_is_a_protocol_error_naming_the_peer(pk: bytes) -> None:
    step = agree_seeds("alice", ["alice", "bob"], b"job")
    next(step)
    with pytest.raises(ProtocolError, match="'bob'.*low-order") as info:
        step.send({"bob": {"pk": pk, "contrib": bytes(32)}})
    assert info.value.peer == "bob"
