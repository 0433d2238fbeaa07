"""Server strategies: how the global model moves given the clients' mean update.

Theory of operation
-------------------
Every strategy sees one number per round from the clients, the sample-weighted mean update

    Delta_r = sum_k n_k (w_k - w_r) / sum_k n_k

over the clients whose update reached the aggregate (the secure sum gives the server only the
two sums, never one client's update). The strategy turns (w_r, Delta_r, its state) into w_{r+1}:

- :class:`FedAvg` (McMahan et al. 2017): w_{r+1} = w_r + eta Delta_r, eta = 1 by default, so
  w_{r+1} is the sample-weighted mean of the client models.
- :class:`FedProx` (Li et al. 2020, *Federated Optimization in Heterogeneous Networks*): FedAvg
  on the server; each client minimises F_k(w) + mu/2 |w - w_r|^2 locally (the adapter adds the
  term mu (w - w_r) to its gradient).
- :class:`FedAdam` (Reddi et al. 2021, *Adaptive Federated Optimization*, Algorithm 2): Delta_r
  is a pseudo-gradient for a server Adam without bias correction,
  m <- beta1 m + (1 - beta1) Delta_r;  v <- beta2 v + (1 - beta2) Delta_r^2;
  w_{r+1} = w_r + eta m / (sqrt(v) + tau).

Strategies are plain synchronous code over flat float64 vectors; their state (``state()`` /
``load_state()``) goes into the round checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import ConfigError

__all__ = ["FedAdam", "FedAvg", "FedProx", "Strategy"]


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"must be a positive number, not {value!r}", key=name)


@dataclasses.dataclass(slots=True)
class FedAvg:
    """Sample-weighted federated averaging (McMahan et al. 2017).

    Attributes:
        server_learning_rate: eta in w + eta * Delta (1.0: the weighted mean of client models).
    """

    server_learning_rate: float = 1.0

    def __post_init__(self) -> None:
        _positive("server_learning_rate", self.server_learning_rate)

    @property
    def proximal_mu(self) -> float:
        """The FedProx coefficient the clients use (0: plain local training)."""
        return 0.0

    def apply(self, weights: np.ndarray, mean_update: np.ndarray) -> np.ndarray:
        """w_{r+1} from w_r and the sample-weighted mean update."""
        return weights + self.server_learning_rate * mean_update

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        del state


@dataclasses.dataclass(slots=True)
class FedProx(FedAvg):
    """FedAvg with a proximal term mu/2 |w - w_r|^2 in every client's local objective (Li et
    al. 2020): limits client drift on non-IID data.

    Attributes:
        mu: the proximal coefficient (> 0).
    """

    mu: float = 0.01

    def __post_init__(self) -> None:
        FedAvg.__post_init__(self)
        _positive("mu", self.mu)

    @property
    def proximal_mu(self) -> float:
        return float(self.mu)


@dataclasses.dataclass(slots=True)
class FedAdam:
    """Server-side Adam on the mean update (Reddi et al. 2021, Algorithm 2, no bias correction).

    Attributes:
        learning_rate: server step eta.
        beta1, beta2: moment decay rates in [0, 1).
        tau: adaptivity (added to sqrt(v)).
    """

    learning_rate: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    _m: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _v: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        _positive("learning_rate", self.learning_rate)
        _positive("tau", self.tau)
        for name in ("beta1", "beta2"):
            b = getattr(self, name)
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1:
                raise ConfigError(f"must be in [0, 1), not {b!r}", key=name)

    @property
    def proximal_mu(self) -> float:
        return 0.0

    def apply(self, weights: np.ndarray, mean_update: np.ndarray) -> np.ndarray:
        if self._m is None or self._v is None or self._m.shape != weights.shape:
            self._m = np.zeros_like(weights)
            self._v = np.zeros_like(weights)
        self._m = self.beta1 * self._m + (1 - self.beta1) * mean_update
        self._v = self.beta2 * self._v + (1 - self.beta2) * mean_update**2
        return weights + self.learning_rate * self._m / (np.sqrt(self._v) + self.tau)

    def state(self) -> dict[str, np.ndarray]:
        if self._m is None or self._v is None:
            return {}
        return {"m": self._m.copy(), "v": self._v.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self._m = np.array(state["m"], dtype=np.float64) if "m" in state else None
        self._v = np.array(state["v"], dtype=np.float64) if "v" in state else None


Strategy = FedAvg | FedAdam
