"""Federated learning of any model: ``FLModel(...).fit / .evaluate / .predict``.

One god's-view program names the server and the clients holding rows; every party runs it (in
``mpcactors.simulate`` or as processes with ``mpcactors run`` / ``node.run``). Updates are summed
with secure aggregation by default (:class:`SecureAggregator`); strategies FedAvg, FedProx and
FedAdam; models through the :class:`ModelAdapter` protocol (numpy here; scikit-learn in
:class:`SklearnModel`, JAX in :class:`JaxModel`, each importing its framework only when built).
See docs/FL.md.
"""

from __future__ import annotations

from typing import Any

from ._adapter import ModelAdapter, NumpyModel, linear_regression, logistic_regression
from ._aggregator import PlainAggregator, SecureAggregator
from ._callbacks import Callback, EarlyStopping, History, RoundRecord
from ._checkpoint import latest_checkpoint, load_checkpoint
from ._model import FLModel
from ._strategy import FedAdam, FedAvg, FedProx

__all__ = [
    "Callback",
    "EarlyStopping",
    "FLModel",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "History",
    "JaxModel",
    "ModelAdapter",
    "NumpyModel",
    "PlainAggregator",
    "RoundRecord",
    "SecureAggregator",
    "SklearnModel",
    "latest_checkpoint",
    "linear_regression",
    "load_checkpoint",
    "logistic_regression",
]


def __getattr__(name: str) -> Any:
    # the framework adapters import scikit-learn / JAX; only load them when asked for
    if name == "SklearnModel":
        from ._sklearn import SklearnModel

        return SklearnModel
    if name == "JaxModel":
        from ._jax import JaxModel

        return JaxModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
