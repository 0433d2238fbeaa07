"""The sans-IO machines end to end: exact sums with dropouts at every stage, threshold aborts,
and the client's refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mpcactors import AggregationError, ConfigError
from mpcactors.secagg import (
    ClientState,
    Quantizer,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    ServerState,
    Stage,
)

from ._sim import START, expected_sum, simulate, survivors, wire

DROP_POINTS = [
    START,
    Stage.ADVERTISE_KEYS.value,
    Stage.SHARE_KEYS.value,
    Stage.MASKED_INPUT.value,
    Stage.CONSISTENCY_CHECK.value,
]
THRESHOLD = {3: 2, 5: 3, 10: 6}


def make(
    n: int, *, threshold: int | None = None, length: int = 64, seed: int = 0, **kw: object
) -> tuple[SecAggParams, dict[str, np.ndarray]]:
    q = kw.pop("quantizer", Quantizer(clip=8.0, frac_bits=16, ring_bits=32))
    t = threshold or THRESHOLD[n]
    params = SecAggParams(job="job-1", tag="round-0", threshold=t, quantizer=q, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    vectors = {f"client{i:02d}": rng.uniform(-10, 10, size=length) for i in range(n)}
    return params, vectors


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("ring_bits", [32, 64])
def test_sum_equals_plain_sum_of_quantised_inputs(n: int, ring_bits: int) -> None:
    params, vectors = make(n, quantizer=Quantizer(clip=8.0, frac_bits=16, ring_bits=ring_bits))
    server, clients, _ = simulate(params, vectors)
    assert server.state is ServerState.DONE
    assert server.result is not None
    assert np.array_equal(server.result, expected_sum(params, vectors, vectors))
    assert all(c.state is ClientState.DONE for c in clients.values())
    # and within the quantisation error of the float sum
    plain = sum(np.clip(v, -8, 8) for v in vectors.values())
    assert np.max(np.abs(server.result - plain)) <= n * params.quantizer.step / 2


@pytest.mark.parametrize("n, drops", [(3, 1), (5, 1), (5, 2), (10, 1), (10, 2)])
@pytest.mark.parametrize("stage", DROP_POINTS)
def test_sum_survives_dropouts_at_each_stage(n: int, drops: int, stage: str) -> None:
    params, vectors = make(n, seed=n * 10 + drops, consistency_check=stage == "consistency_check")
    dropped = random.Random(f"{n}{drops}{stage}").sample(sorted(vectors), drops)
    plan = {c: stage for c in dropped}
    server, _, _ = simulate(params, vectors, dropout_after=plan)
    included = survivors(vectors, plan)
    assert server.result is not None
    assert np.array_equal(server.result, expected_sum(params, vectors, included))
    assert server.members[Stage.MASKED_INPUT] == included
    if stage == Stage.SHARE_KEYS.value:  # the recovery path: dropped clients' masks were rebuilt
        assert included != set(server.members[Stage.SHARE_KEYS])


# k - 2 >= t: the three drops below can never starve one secret of its shares.
@pytest.mark.parametrize("k, t", [(4, 2), (6, 3), (8, 4)])
def test_secagg_plus_sparse_graph_with_mixed_dropouts(k: int, t: int) -> None:
    params, vectors = make(12, threshold=t, neighbours=k, seed=k)
    names = sorted(vectors)
    plan = {names[0]: START, names[3]: "share_keys", names[7]: "masked_input"}
    server, _, log = simulate(params, vectors, dropout_after=plan)
    assert server.result is not None
    assert np.array_equal(server.result, expected_sum(params, vectors, survivors(vectors, plan)))
    # each client sealed shares for exactly its k neighbours, not for everyone
    sealed = [m["ciphertexts"] for (c, s), m in log.items() if s == "share_keys"]
    assert all(len(cts) == k for cts in sealed)


def test_server_own_vector_is_added() -> None:
    params, vectors = make(3)
    own = np.linspace(-1, 1, 64)
    server, _, _ = simulate(params, vectors, own=own, dropout_after={"client01": "share_keys"})
    q = params.quantizer
    want = expected_sum(params, vectors, {"client00", "client02"}) + q.dequantise(
        q.quantise(own)[0]
    )
    assert server.result is not None
    assert np.allclose(server.result, want, atol=1e-12)


def test_no_party_ever_has_both_shares_revealed() -> None:
    params, vectors = make(10, threshold=3, neighbours=6, seed=3)
    names = sorted(vectors)
    plan = {names[1]: "share_keys", names[2]: "share_keys", names[5]: "masked_input"}
    server, clients, log = simulate(params, vectors, dropout_after=plan)
    assert server.result is not None
    b_revealed = set().union(*(m["b_shares"] for (c, s), m in log.items() if s == "unmasking"))
    sk_revealed = set().union(*(m["sk_shares"] for (c, s), m in log.items() if s == "unmasking"))
    assert b_revealed and sk_revealed  # both kinds were needed in this run
    assert not b_revealed & sk_revealed
    assert sk_revealed <= {names[1], names[2]}
    for c in clients.values():
        if c.revealed is not None:
            alive, dropped = c.revealed
            assert not alive & dropped


@pytest.mark.parametrize(
    "n, plan, where",
    [
        (3, {"client00": START, "client01": START}, "advertise_keys"),
        (
            5,
            {"client00": "advertise_keys", "client01": "advertise_keys", "client02": START},
            "share_keys",
        ),
        (
            5,
            {"client01": "share_keys", "client03": "share_keys", "client04": "share_keys"},
            "masked_input",
        ),
        (
            5,
            {"client00": "masked_input", "client02": "masked_input", "client04": "masked_input"},
            "unmasking",
        ),
    ],
)
def test_below_threshold_aborts_and_reveals_nothing(
    n: int, plan: dict[str, str], where: str
) -> None:
    params, vectors = make(n)
    with pytest.raises(
        AggregationError, match=rf"only \d client\(s\) answered {where}, below the threshold"
    ):
        simulate(params, vectors, dropout_after=plan)


def test_below_threshold_server_fails_and_clients_get_the_reason() -> None:
    params, vectors = make(5)
    server = SecAggServer(params, list(vectors))
    clients = {c: SecAggClient(params, c, v) for c, v in vectors.items()}
    for c in ("client00", "client01"):
        server.receive(c, wire(clients[c].start()))
    with pytest.raises(AggregationError, match="only 2 client"):
        server.close_stage()
    assert server.state is ServerState.FAILED and server.result is None
    aborts = server.abort_messages("too few clients")
    with pytest.raises(AggregationError, match="server aborted the aggregation: too few clients"):
        clients["client00"].receive(wire(aborts["client00"]))
    assert clients["client00"].state is ClientState.FAILED


def test_too_few_shares_for_one_survivor_aborts_before_any_unmasking() -> None:
    # k = 2, t = 3: a survivor's self-mask seed lives only with itself and its two ring
    # neighbours. Drop both neighbours after MASKED_INPUT: 10 clients still answer UNMASKING,
    # but that survivor's b cannot be rebuilt, so the whole aggregation must abort.
    params, vectors = make(12, threshold=3, neighbours=2)
    server = SecAggServer(params, list(vectors))
    clients = {c: SecAggClient(params, c, v) for c, v in vectors.items()}
    for c, cl in clients.items():
        server.receive(c, wire(cl.start()))
    out = server.close_stage()
    order = out["client00"]["order"]
    gone = {order[4], order[6]}
    for stage in (Stage.SHARE_KEYS, Stage.MASKED_INPUT):
        for c, msg in out.items():
            server.receive(c, wire(clients[c].receive(wire(msg))))
        out = server.close_stage()
    for c, msg in out.items():  # UNMASKING requests
        if c not in gone:
            server.receive(c, wire(clients[c].receive(wire(msg))))
    with pytest.raises(
        AggregationError, match=rf"too few shares to remove the masks of .*{order[5]}"
    ):
        server.close_stage()
    assert server.result is None and server.state is ServerState.FAILED


def _run_until(params: SecAggParams, vectors: dict[str, np.ndarray], stop: Stage):
    """Run honestly until the server is about to send ``stop``'s messages; return them."""
    server = SecAggServer(params, list(vectors))
    clients = {c: SecAggClient(params, c, v) for c, v in vectors.items()}
    for c, cl in clients.items():
        server.receive(c, wire(cl.start()))
    while True:
        out = server.close_stage()
        if server.stage is stop:
            return server, clients, out
        for c, msg in out.items():
            server.receive(c, wire(clients[c].receive(wire(msg))))


def test_client_refuses_a_second_unmasking_request() -> None:
    params, vectors = make(5)
    _, clients, out = _run_until(params, vectors, Stage.UNMASKING)
    c = clients["client00"]
    c.receive(wire(out["client00"]))
    dropped_view = dict(out["client00"], members=["client00", "client01", "client02"])
    with pytest.raises(AggregationError, match="'unmasking' in state done"):
        c.receive(wire(dropped_view))


@pytest.mark.parametrize(
    "members, match",
    [
        (["client01", "client02", "client03"], "refuses"),  # U3 without this client
        (["client00", "client01"], "U3 has 2 clients"),  # below threshold
        (["client00", "client01", "nobody"], "unknown parties"),  # not within U2
    ],
)
def test_client_refuses_bad_survivor_lists(members: list[str], match: str) -> None:
    params, vectors = make(5)
    _, clients, out = _run_until(params, vectors, Stage.UNMASKING)
    with pytest.raises(AggregationError, match=match):
        clients["client00"].receive(wire(dict(out["client00"], members=members)))
    assert clients["client00"].revealed is None


def test_client_refuses_tampered_or_misrouted_shares() -> None:
    params, vectors = make(5)
    _, clients, out = _run_until(params, vectors, Stage.MASKED_INPUT)
    msg = out["client00"]
    sender = min(msg["ciphertexts"])
    other = sorted(msg["ciphertexts"])[1]
    swapped = dict(msg["ciphertexts"], **{sender: msg["ciphertexts"][other]})
    with pytest.raises(AggregationError, match="do not authenticate"):
        clients["client00"].receive(wire(dict(msg, ciphertexts=swapped)))


def test_consistency_check_rejects_a_changed_or_unsigned_u3() -> None:
    params, vectors = make(5, consistency_check=True)
    _, clients, out = _run_until(params, vectors, Stage.UNMASKING)
    msg = out["client00"]
    assert len(msg["signatures"]) == 5
    with pytest.raises(AggregationError, match="U3 changed"):
        clients["client00"].receive(wire(dict(msg, members=sorted(vectors)[:4])))
    forged = dict(msg["signatures"], client01=msg["signatures"]["client02"])
    with pytest.raises(AggregationError, match="client01.*does not verify"):
        clients["client02"].receive(wire(dict(out["client02"], signatures=forged)))
    few = {k: msg["signatures"][k] for k in sorted(msg["signatures"])[:2]}
    with pytest.raises(AggregationError, match="only 2 clients signed"):
        clients["client03"].receive(wire(dict(out["client03"], signatures=few)))


def test_server_excludes_malformed_and_mismatched_clients() -> None:
    params, vectors = make(5)
    server = SecAggServer(params, list(vectors))
    clients = {c: SecAggClient(params, c, v) for c, v in vectors.items()}
    bad = wire(clients["client00"].start())
    bad["params"]["clip"] = 1.0
    assert not server.receive("client00", bad)
    assert "parameters" in server.excluded["client00"]
    stranger = SecAggClient(params, "stranger", vectors["client01"])
    assert not server.receive("stranger", wire(stranger.start()))
    first = {c: wire(clients[c].start()) for c in ("client01", "client02", "client03", "client04")}
    for c, msg in first.items():
        assert server.receive(c, msg)
    assert not server.receive("client01", first["client01"])  # duplicate
    out = server.close_stage()
    assert set(out) == {"client01", "client02", "client03", "client04"}
    for c, msg in out.items():
        server.receive(c, wire(clients[c].receive(wire(msg))))
    out = server.close_stage()
    for c, msg in out.items():
        reply = wire(clients[c].receive(wire(msg)))
        if c == "client01":
            reply["y"] = reply["y"].astype(np.uint64)
        server.receive(c, reply)
    assert "masked input from 'client01'" in server.excluded["client01"]
    out = server.close_stage()
    assert set(out) == {"client02", "client03", "client04"}


def test_parameter_validation() -> None:
    q = Quantizer(clip=1.0, frac_bits=8, ring_bits=32)
    for kw in (
        {"threshold": 1},
        {"threshold": 3, "neighbours": 3},
        {"threshold": 4, "neighbours": 2},
    ):
        with pytest.raises(ConfigError):
            SecAggParams(job="j", tag="t", quantizer=q, **kw)  # type: ignore[arg-type]
    params = SecAggParams(job="j", tag="t", threshold=3, quantizer=q)
    with pytest.raises(ConfigError, match="exceeds the number of clients"):
        SecAggServer(params, ["a", "b"])
    with pytest.raises(ConfigError, match="repeat"):
        SecAggServer(params, ["a", "b", "a"])
    with pytest.raises(AggregationError, match="differ in length"):
        simulate(params, {"a": np.zeros(3), "b": np.zeros(3), "c": np.zeros(4)})
