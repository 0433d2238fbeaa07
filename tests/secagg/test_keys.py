"""Clients' public keys: low-order keys are refused naming their owner; with the cluster PKI a
server that substitutes a client's keys is caught by the clients, naming the client."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpcactors import AggregationError, ClusterConfig, ConfigError
from mpcactors._certs import (
    CertificateAuthority,
    PartyCredentials,
    generate_certs,
    issue_party_cert,
    make_ca,
)
from mpcactors._config import TlsConfig
from mpcactors.secagg import (
    ClientState,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    ServerState,
    Stage,
    secure_aggregate,
)
from mpcactors.secagg._client import advertised_keys_message

from ._cluster import SERVER, run_cluster
from ._sim import expected_sum, simulate, survivors, wire
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


# -- keys signed with the parties' cluster certificates ------------------------------------------


def pki(parties: list[str]) -> tuple[CertificateAuthority, dict[str, PartyCredentials]]:
    ca = make_ca("test-cluster")
    creds = {}
    for p in parties:
        key, cert = issue_party_cert(ca, p)
        creds[p] = PartyCredentials(p, key, cert, ca.cert)
    return ca, creds


def signed(n: int, **kw: Any) -> tuple[SecAggParams, dict[str, Any], dict[str, PartyCredentials]]:
    params, vectors = make(n, **kw)
    params = dataclasses.replace(params, signed_keys=True)
    return params, vectors, pki(sorted(vectors))[1]


def roster_for(params: SecAggParams, vectors: dict[str, Any], creds: dict[str, PartyCredentials]):
    """Run honestly through ADVERTISE_KEYS; return the clients and the server's rosters."""
    server = SecAggServer(params, list(vectors))
    clients = {c: SecAggClient(params, c, v, creds[c]) for c, v in vectors.items()}
    for c, cl in clients.items():
        assert server.receive(c, wire(cl.start()))
    return clients, server.close_stage()


@pytest.mark.parametrize("check", [False, True])
def test_signed_keys_give_the_exact_sum_with_dropouts(check: bool) -> None:
    params, vectors, creds = signed(5, consistency_check=check)
    drops = {"client02": Stage.SHARE_KEYS.value}
    server, _, log = simulate(params, vectors, dropout_after=drops, credentials=creds)
    assert server.state is ServerState.DONE and server.result is not None
    assert np.array_equal(server.result, expected_sum(params, vectors, survivors(vectors, drops)))
    assert isinstance(log[("client00", "advertise_keys")]["key_sig"], bytes)


def test_a_server_that_substitutes_a_key_is_caught_naming_the_party() -> None:
    params, vectors, creds = signed(5)
    clients, rosters = roster_for(params, vectors, creds)
    roster = rosters["client00"]
    mine = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    victim = next(v for v in sorted(roster["keys"]) if v != "client00")
    keys = dict(roster["keys"], **{victim: [roster["keys"][victim][0], mine]})
    with pytest.raises(AggregationError, match=rf"relayed for '{victim}' are not signed by '{victim}'"):
        clients["client00"].receive(wire(dict(roster, keys=keys)))
    assert clients["client00"].state is ClientState.FAILED


def test_a_server_cannot_sign_for_a_party_with_its_own_ca_or_another_party() -> None:
    params, vectors, creds = signed(5)
    clients, rosters = roster_for(params, vectors, creds)
    roster = rosters["client00"]
    victim = next(v for v in sorted(roster["keys"]) if v != "client00")
    c_pk, s_pk = roster["keys"][victim]
    text = advertised_keys_message(params, victim, c_pk, s_pk, None)
    # a rogue CA issuing a certificate that names the victim
    rogue = PartyCredentials(victim, *issue_party_cert(make_ca("rogue"), victim), creds[victim].ca)
    forged = dict(roster["attest"], **{victim: list(rogue.sign(text))})
    with pytest.raises(AggregationError, match=rf"'{victim}'.*not issued by the cluster CA"):
        clients["client00"].receive(wire(dict(roster, attest=forged)))
    # another (genuine) party's certificate signing the victim's keys
    other = next(v for v in sorted(vectors) if v not in (victim, "client00"))
    borrowed = dict(roster["attest"], **{victim: list(creds[other].sign(text))})
    clients, rosters = roster_for(params, vectors, creds)
    roster = rosters["client00"]
    with pytest.raises(AggregationError, match=rf"'{victim}'.*names CN=\['{other}'\]"):
        clients["client00"].receive(wire(dict(roster, attest=borrowed)))


def test_signature_keys_of_the_consistency_check_are_attested_too() -> None:
    params, vectors, creds = signed(5, consistency_check=True)
    clients, rosters = roster_for(params, vectors, creds)
    roster = rosters["client00"]
    assert set(roster["attest"]) == set(vectors)  # every signer's keys, to check its sig_pk
    fake = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(AggregationError, match="relayed for 'client03'"):
        clients["client00"].receive(wire(dict(roster, sig_keys=dict(roster["sig_keys"], client03=fake))))


def test_a_roster_without_attestations_is_refused() -> None:
    params, vectors, creds = signed(3)
    clients, rosters = roster_for(params, vectors, creds)
    stripped = {k: v for k, v in rosters["client00"].items() if k != "attest"}
    with pytest.raises(AggregationError, match="attest"):
        clients["client00"].receive(wire(stripped))
    with pytest.raises(AggregationError, match="certified key"):
        SecAggClient(params, "client00", vectors["client00"])  # no credentials


@pytest.mark.parametrize("n, t", [(4, 2), (5, 2), (6, 3), (10, 5)])
def test_consistency_check_needs_a_threshold_above_half(n: int, t: int) -> None:
    params, vectors = make(n, threshold=t, consistency_check=True)
    with pytest.raises(ConfigError, match=rf"threshold {t} with {n} clients.*> n/2 \(at least {n // 2 + 1}\)"):
        SecAggServer(params, list(vectors))
    SecAggServer(dataclasses.replace(params, threshold=n // 2 + 1), list(vectors))
    SecAggServer(dataclasses.replace(params, consistency_check=False), list(vectors))  # no check


@pytest.mark.trio
async def test_secure_sum_signs_keys_when_the_cluster_has_a_pki(tmp_path: Path) -> None:
    clients = ["c1", "c2", "c3"]
    cfg = ClusterConfig.local([SERVER, *clients])
    generate_certs(cfg, tmp_path)
    cfg = cfg.replace(
        tls=TlsConfig(tmp_path / "ca.pem"),
        parties=tuple(
            dataclasses.replace(p, cert=tmp_path / f"{p.name}.pem", key=tmp_path / f"{p.name}.key")
            for p in cfg.parties
        ),
    )
    vectors = {c: np.full(8, float(i)) for i, c in enumerate(clients, 1)}

    async def fn(node: Any) -> Any:
        return await secure_aggregate(
            node, job="pki", vector=vectors.get(node.party), server=SERVER, clients=clients,
            threshold=2, consistency_check=True,
        )  # fmt: skip

    out = await run_cluster([SERVER, *clients], fn, cfg)
    assert np.array_equal(out[SERVER].result, np.full(8, 6.0)), out
