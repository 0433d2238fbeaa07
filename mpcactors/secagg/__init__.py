"""Secure aggregation (Bonawitz et al. 2017, with the SecAgg+ graph of Bell et al. 2020) and
federated averaging on mpcactors.

Every party calls :func:`secure_sum` (or :func:`secure_aggregate` for a report); the server gets
the sum of the clients' vectors, nobody gets anything else. :func:`federated_averaging` trains a
logistic regression on horizontally partitioned data through it. The sans-IO state machines
(:class:`SecAggClient`, :class:`SecAggServer`) are public for custom drivers and tests.
"""

from __future__ import annotations

from ._client import ClientState, SecAggClient
from ._fedavg import FedAvgConfig, FedAvgResult, RoundInfo, federated_averaging, logistic_predict
from ._masking import Quantizer
from ._protocol import SecAggParams, Stage
from ._runner import DROPOUT_POINTS, AggregationReport, plain_sum, secure_aggregate, secure_sum
from ._server import SecAggServer, ServerState

__all__ = [
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
