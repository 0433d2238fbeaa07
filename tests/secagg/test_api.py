"""The public surface of mpcactors.secagg, pinned so it only grows on purpose."""

from __future__ import annotations

import inspect

from mpcactors import secagg


def test_exported_names() -> None:
    assert sorted(secagg.__all__) == sorted(
        [
            "DROPOUT_POINTS",
            "AggregationReport",
            "ClientState",
            "FedAvgConfig",
            "FedAvgResult",
            "Quantizer",
            "RoundInfo",
            "SecAggClient",
            "SecAggParams",
            "SecAggServer",
            "ServerState",
            "Stage",
            "federated_averaging",
            "logistic_predict",
            "plain_sum",
            "secure_aggregate",
            "secure_sum",
        ]
    )
    for name in secagg.__all__:
        assert hasattr(secagg, name)


def test_secure_sum_signature() -> None:
    params = inspect.signature(secagg.secure_sum).parameters
    assert list(params) == [
        "node", "job", "vector", "server", "clients", "threshold", "clip", "frac_bits",
        "ring_bits", "neighbours", "consistency_check", "stage_timeout_s", "tag", "dropout_after",
    ]  # fmt: skip
    assert all(p.kind is p.KEYWORD_ONLY for n, p in params.items() if n != "node")
    assert list(inspect.signature(secagg.secure_aggregate).parameters) == list(params)
