"""Drive the sans-IO secure-aggregation machines in-process, every message through the link's
real payload codec (so whatever the machines send is what the wire can carry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcactors.link._codec import decode_payload, encode_payload
from mpcactors.secagg import SecAggClient, SecAggParams, SecAggServer, ServerState, Stage

START = "start"  # drop out before sending anything


def wire(msg: Any) -> Any:
    """What the peer receives: encode, then decode from a fresh bytearray."""
    return decode_payload(bytearray(encode_payload(msg)), max_bytes=1 << 30)


def simulate(
    params: SecAggParams,
    vectors: Mapping[str, np.ndarray],
    *,
    dropout_after: Mapping[str, str] | None = None,
    own: np.ndarray | None = None,
    credentials: Mapping[str, Any] | None = None,
) -> tuple[SecAggServer, dict[str, SecAggClient], dict[tuple[str, str], Any]]:
    """Run one aggregation; ``dropout_after[c]`` = the last stage client c answers.

    Returns the server (its .result, .members), the clients and a log of every client message
    as received by the server, keyed by (client, stage).
    """
    drops = dict(dropout_after or {})
    server = SecAggServer(params, list(vectors), own)
    creds = credentials or {}
    clients = {c: SecAggClient(params, c, v, creds.get(c)) for c, v in vectors.items()}
    log: dict[tuple[str, str], Any] = {}
    gone = {c for c, s in drops.items() if s == START}

    def deliver(c: str, msg: dict[str, Any]) -> None:
        received = wire(msg)
        log[(c, msg["stage"])] = received
        server.receive(c, received)
        if drops.get(c) == msg["stage"]:
            gone.add(c)

    for c, client in clients.items():
        if c not in gone:
            deliver(c, client.start())
    while server.state is ServerState.COLLECTING:
        out = server.close_stage()
        for c, msg in out.items():
            if c not in gone:
                deliver(c, clients[c].receive(wire(msg)))
    return server, clients, log


def expected_sum(
    params: SecAggParams, vectors: Mapping[str, np.ndarray], included: Any
) -> np.ndarray:
    """The plain sum of the quantised inputs of ``included`` (what secure aggregation must give)."""
    q = params.quantizer
    total = np.zeros(len(next(iter(vectors.values()))), dtype=q.dtype)
    for c in included:
        total += q.quantise(vectors[c])[0]
    return q.dequantise(total)


def survivors(vectors: Mapping[str, Any], drops: Mapping[str, str]) -> set[str]:
    """Clients whose masked input is in the sum: those that answered MASKED_INPUT."""
    early = {START, Stage.ADVERTISE_KEYS.value, Stage.SHARE_KEYS.value}
    return {c for c in vectors if drops.get(c) not in early}
