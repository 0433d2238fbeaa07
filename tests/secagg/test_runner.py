"""secure_sum over real in-memory link nodes: every party in one process, each on its own node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np
import pytest

from mpcactors import AggregationError, ConfigError
from mpcactors.secagg import DROPOUT_POINTS, Quantizer, plain_sum, secure_aggregate, secure_sum

from ._cluster import SERVER, run_cluster


def names(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


def vectors_for(clients: list[str], length: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-100, 100, size=length) for c in clients}


def quantised_sum(vectors: dict[str, np.ndarray], included: Any, q: Quantizer) -> np.ndarray:
    total = np.zeros(len(next(iter(vectors.values()))), dtype=q.dtype)
    for c in included:
        total += q.quantise(vectors[c])[0]
    return q.dequantise(total)


def summing(
    vectors: dict[str, np.ndarray], clients: list[str], **kw: Any
) -> Callable[[Any], Awaitable[Any]]:
    drops = kw.pop("drops", {})

    async def fn(node: Any) -> Any:
        return await secure_aggregate(
            node, job="job-1", vector=vectors.get(node.party), server=SERVER, clients=clients,
            dropout_after=drops.get(node.party), **kw,
        )  # fmt: skip

    return fn


@pytest.mark.trio
@pytest.mark.parametrize("n", [3, 5, 10])
async def test_secure_sum_on_memory_nodes(n: int) -> None:
    clients = names(n)
    vectors = vectors_for(clients, seed=n)
    q = Quantizer(clip=128.0, frac_bits=16, ring_bits=32)
    out = await run_cluster(
        [SERVER, *clients],
        summing(vectors, clients, threshold=n // 2 + 1, clip=128.0, frac_bits=16, ring_bits=32),
    )
    assert np.array_equal(out[SERVER].result, quantised_sum(vectors, clients, q))
    assert all(out[c].result is None and out[c].role == "client" for c in clients)
    assert np.allclose(out[SERVER].result, sum(vectors.values()), atol=n * q.step)


@pytest.mark.trio
@pytest.mark.parametrize("drop", DROPOUT_POINTS)
@pytest.mark.parametrize("how_many", [1, 2])
async def test_dropouts_at_each_stage(drop: str, how_many: int, autojump_clock: Any) -> None:
    clients = names(6)
    vectors = vectors_for(clients, seed=len(drop) + how_many)
    dropped = clients[1 : 1 + how_many]
    out = await run_cluster(
        [SERVER, *clients],
        summing(vectors, clients, threshold=4 if drop == "consistency_check" else 3,
                stage_timeout_s=5.0, drops=dict.fromkeys(dropped, drop),
                consistency_check=drop == "consistency_check"),
    )  # fmt: skip
    early = drop in ("start", "advertise_keys", "share_keys")
    included = [c for c in clients if not (early and c in dropped)]
    report = out[SERVER]
    assert np.array_equal(
        report.result, quantised_sum(vectors, included, Quantizer(2.0**20, 18, 64))
    )
    assert set(report.members["masked_input"]) == set(included)
    assert all(out[c].dropped_out for c in dropped)
    assert not any(out[c].dropped_out for c in clients if c not in dropped)


@pytest.mark.trio
@pytest.mark.parametrize("drop", ["advertise_keys", "share_keys", "masked_input"])
async def test_below_threshold_every_party_fails_and_the_server_learns_nothing(
    drop: str, autojump_clock: Any
) -> None:
    clients = names(5)
    vectors = vectors_for(clients)
    dropped = clients[:3]
    out = await run_cluster(
        [SERVER, *clients],
        summing(
            vectors, clients, threshold=3, stage_timeout_s=5.0, drops=dict.fromkeys(dropped, drop)
        ),
    )
    assert isinstance(out[SERVER], AggregationError)
    assert "below the threshold 3" in str(out[SERVER]) and "no sum is revealed" in str(out[SERVER])
    if drop == "masked_input":
        # The survivors answered UNMASKING and left (a client does not wait for the outcome);
        # the server then found too few of them and revealed nothing.
        assert "answered unmasking" in str(out[SERVER])
        assert all(out[c].result is None and not out[c].dropped_out for c in clients[3:])
        return
    for c in clients[3:]:
        assert isinstance(out[c], AggregationError)
        assert "server aborted the aggregation" in str(out[c])
        assert "below the threshold 3" in str(out[c])


@pytest.mark.trio
@pytest.mark.parametrize(
    "server_does, timeout, error",
    [("sleep", 2.0, "silent for 4 s"), ("leave", 100.0, "lost the server")],
)
async def test_silent_or_lost_server_is_a_clear_client_error(
    server_does: str, timeout: float, error: str, autojump_clock: Any
) -> None:
    # "leave": the server's node closes (with its linger); the clients' long timeout makes
    # sure the link's PeerLost, not the clients' own timer, is what they report.
    clients = names(3)

    async def fn(node: Any) -> Any:
        if node.party == SERVER:
            if server_does == "sleep":
                await anyio.sleep(10)
            return None  # never serves
        return await secure_sum(node, job="j", vector=np.ones(4), server=SERVER, clients=clients,
                                threshold=2, stage_timeout_s=timeout)  # fmt: skip

    out = await run_cluster([SERVER, *clients], fn)
    for c in clients:
        assert isinstance(out[c], AggregationError) and error in str(out[c])


@pytest.mark.trio
async def test_secagg_plus_and_several_aggregations_in_one_job() -> None:
    clients = names(8)
    vectors = vectors_for(clients, length=30)
    q = Quantizer(2.0**20, 18, 64)

    async def fn(node: Any) -> Any:
        results = []
        for r in range(2):
            v = vectors.get(node.party)
            results.append(await secure_sum(
                node, job="job", vector=None if v is None else v * (r + 1), server=SERVER,
                clients=clients, threshold=3, neighbours=4, tag=f"round-{r}",
            ))  # fmt: skip
        return results

    out = await run_cluster([SERVER, *clients], fn)
    want = quantised_sum(vectors, clients, q)
    assert np.array_equal(out[SERVER][0], want)
    assert np.allclose(out[SERVER][1], 2 * want, atol=8 * q.step)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_secure_and_plain_sum_under_asyncio(anyio_backend: str) -> None:
    clients = names(3)
    vectors = vectors_for(clients)
    own = np.arange(50, dtype=np.float64)

    async def fn(node: Any) -> Any:
        mine = own if node.party == SERVER else vectors[node.party]
        s = await secure_sum(
            node, job="j", vector=mine, server=SERVER, clients=clients, threshold=2
        )
        p = await plain_sum(node, job="j", vector=mine, server=SERVER, clients=clients)
        return s, p

    out = await run_cluster([SERVER, *clients], fn)
    secure, plain = out[SERVER]
    assert np.allclose(plain, own + sum(vectors.values()))
    assert np.allclose(secure, plain, atol=4 * 2.0**-18)
    assert out["c0"] == (None, None)


@pytest.mark.trio
async def test_bad_arguments_fail_fast() -> None:
    async def fn(node: Any) -> Any:
        errors = []
        for kw in (
            {"clients": [SERVER, "c0"]},
            {"clients": ["c0", "nobody"]},
            {"clients": ["c0", "c1"], "dropout_after": "unmasking"},
            {"clients": ["c0", "c1"], "dropout_after": "consistency_check"},
            {"clients": ["c0", "c1"], "threshold": 3},
            {"clients": ["c0", "c1"], "stage_timeout_s": 0},
        ):
            args: dict[str, Any] = {"threshold": 2, **kw}
            try:
                await secure_sum(node, job="j", vector=np.ones(2), server=SERVER, **args)
            except ConfigError as exc:
                errors.append(exc.key)
        return errors

    out = await run_cluster([SERVER, "c0", "c1"], fn)
    assert out["c0"] == [
        "clients", "clients", "dropout_after", "dropout_after", "threshold", "stage_timeout_s"
    ]  # fmt: skip
