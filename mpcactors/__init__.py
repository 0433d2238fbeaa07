"""mpcactors: an async actor runtime for secure multi-party computation."""

from __future__ import annotations

from ._config import ClusterConfig, load_config
from ._errors import (
    AggregationError,
    AuthenticationError,
    ConfigError,
    JobAborted,
    JobError,
    JobTimeout,
    LinkError,
    MpcError,
    PeerLost,
    PeerUnavailable,
    ProtocolError,
    PsiError,
    ShapeError,
)

__version__ = "0.1.0"

__all__ = [
    "AggregationError",
    "AuthenticationError",
    "ClusterConfig",
    "ConfigError",
    "JobAborted",
    "JobError",
    "JobTimeout",
    "LinkError",
    "MpcError",
    "PeerLost",
    "PeerUnavailable",
    "ProtocolError",
    "PsiError",
    "ShapeError",
    "load_config",
]
