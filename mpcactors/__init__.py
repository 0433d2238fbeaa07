"""mpcactors: an async actor runtime for secure multi-party computation.

One program names which party holds which input; every party runs it (``mpcactors run``) or all
run in one process (:func:`simulate`). See README.md and docs/.
"""

from __future__ import annotations

from ._config import ClusterConfig, LinkOptions, WanProfile, load_config
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
from ._functions import (
    absolute,
    argmax,
    concatenate,
    equal,
    exp,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    max,
    maximum,
    mean,
    min,
    minimum,
    ones,
    reciprocal,
    relu,
    rsqrt,
    sigmoid,
    sign,
    sqrt,
    stack,
    sum,
    tanh,
    where,
    zeros,
)
from ._jit import jit
from ._runtime import Node, open_node
from ._simulate import simulate, simulate_async
from .scheduler import Job, JobStatistics, SecretTensor

__version__ = "0.1.0"

__all__ = [
    "AggregationError",
    "AuthenticationError",
    "ClusterConfig",
    "ConfigError",
    "Job",
    "JobAborted",
    "JobError",
    "JobStatistics",
    "JobTimeout",
    "LinkError",
    "LinkOptions",
    "MpcError",
    "Node",
    "PeerLost",
    "PeerUnavailable",
    "ProtocolError",
    "PsiError",
    "SecretTensor",
    "ShapeError",
    "WanProfile",
    "absolute",
    "argmax",
    "concatenate",
    "equal",
    "exp",
    "greater",
    "greater_equal",
    "jit",
    "less",
    "less_equal",
    "load_config",
    "log",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "ones",
    "open_node",
    "reciprocal",
    "relu",
    "rsqrt",
    "sigmoid",
    "sign",
    "simulate",
    "simulate_async",
    "sqrt",
    "stack",
    "sum",
    "tanh",
    "where",
    "zeros",
]
