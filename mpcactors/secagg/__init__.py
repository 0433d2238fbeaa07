"""Secure aggregation (Bonawitz et al. 2017 / SecAgg+) and federated averaging on mpcactors."""

from __future__ import annotations

from ._client import ClientState, SecAggClient
from ._masking import Quantizer
from ._protocol import SecAggParams, Stage
from ._server import SecAggServer, ServerState

__all__ = [
    "ClientState",
    "Quantizer",
    "SecAggClient",
    "SecAggParams",
    "SecAggServer",
    "ServerState",
    "Stage",
]
