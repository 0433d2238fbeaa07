"""Clients' public keys: low-order keys are refused naming their owner; with the cluster PKI a
server that substitutes a client's keys is caught by the clients, naming the client."""

from __future__ import annotations

import pytest

from mpcactors import AggregationError
from mpcactors.secagg import SecAggClient, SecAggServer, Stage

from ._sim import wire
from .test_protocol import _run_until, make

LOW_ORDER = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


@pytest.mark.parametrize("name", ["c_pk", "s_pk"])
def test_server_excludes_a_client_advertising_a_low_order_key(name: str) -> None:
    params, vectors = make(3)
    server = SecAggServer(params, list(vectors))
    msg = wire(SecAggClient(params, "client00", vectors["client00"]).start())
    msg[name] = LOW_ORDER
    assert not server.receive("client00", msg)
    assert "client00" in server.excluded["client00"] and "low order" in server.excluded["client00"]


def test_client_names_the_owner_of_a_relayed_low_order_key() -> None:
    params, vectors = make(3)
    _, clients, out = _run_until(params, vectors, Stage.SHARE_KEYS)
    roster = out["client00"]
    keys = dict(roster["keys"], client01=[LOW_ORDER, roster["keys"]["client01"][1]])
    with pytest.raises(AggregationError, match="'client01'.*low order"):
        clients["client00"].receive(wire(dict(roster, keys=keys)))
