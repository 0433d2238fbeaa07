"""FLModel: federated training of any model, in the god's-view style.

Theory of operation
-------------------
Every party of the job runs the same program; it names the server (which holds the global model
and aggregates) and the clients (``device_list``, which hold rows), and passes each client's
data (``x=[x_alice, x_bob]`` or ``{party: array or loader}``; a loader runs only at its party).

``fit`` runs rounds r = 0, 1, ...: the server samples clients (``fraction_fit``, seeded by the
round), sends the global weights w_r (a flat float64 vector) to the sampled ones and a short
"skip" to the others, and every sampled client

1. loads w_r into its model and, with validation data, evaluates it;
2. trains ``local_epochs`` over its rows (``batch_size``; FedProx adds mu (w - w_r) to the
   gradient), with a seed derived from (seed, round, party);
3. clips its update d_k = w_k - w_r to L2 norm ``clip_norm`` and contributes
   ``[n_k d_k, n_k, n_k loss_k, m_k metric_k..., m_k]`` to the round's aggregation.

The server gets only the sum S over the survivors (secure aggregation by default), computes the
sample-weighted mean update S[:P] / S[P] and lets the strategy (FedAvg, FedProx, FedAdam) move
the model. The validation metrics that arrive with round r describe w_r, so they complete the
record of round r - 1; after the last round an evaluation-only aggregation completes the last
record. Callbacks run on complete records; one returning True stops training. The server writes
a checkpoint after every round; ``resume=True`` continues from the latest one, and because
sampling and local batch orders depend only on (seed, round, party), a resumed run ends with
the same weights as an uninterrupted one. At the end the server sends the final weights to every
client still reachable, so ``fit`` returns them at every party (the history only at the server).

A client's local evaluation and training run in a worker thread (``anyio.to_thread``), so its
node's event loop keeps the links alive (heartbeats, other jobs) however long training takes;
``stage_timeout_s`` must still cover it (the server's first aggregation stage waits for it).

The server's loop lives in ``_server.py``, the client's in ``_client.py``; this module holds the
god's-view object that dispatches to them.

A client that fails during a round (crash, lost link, silent) is simply not in that round's
sum; the round completes when at least ``threshold`` clients survive, otherwise it fails with
AggregationError and nothing is revealed. A client the server cannot reach when sending the
model is left out of the following rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ConfigError, ShapeError
from .._log import get_logger
from ._adapter import ModelAdapter
from ._aggregator import PlainAggregator, SecureAggregator
from ._callbacks import Callback, History
from ._client import client_evaluate, client_loop
from ._server import serve_evaluate, serve_fit
from ._strategy import FedAvg, Strategy

__all__ = ["FLModel"]

Aggregator = SecureAggregator | PlainAggregator
DataSpec = Sequence[Any] | Mapping[str, Any] | None


class FLModel:
    """A model trained federatedly by ``device_list`` with ``server`` aggregating.

    Args:
        job: the running job (``async def main(job)``), or anything with ``party``,
            ``parties``, ``id`` and ``link``.
        server: the party that holds the global model and aggregates.
        device_list: the clients, the parties holding rows.
        model: a :class:`ModelAdapter`, or a function returning one (called at every party;
            the server's initial weights are the ones used).
        aggregator: :class:`SecureAggregator` (default) or the INSECURE :class:`PlainAggregator`.
        strategy: :class:`FedAvg` (default), :class:`FedProx` or :class:`FedAdam`.
        name: names this model's channels inside the job (several FLModels need distinct ones).
        broadcast_dtype: "float64" (default) or "float32": the dtype of the global weights sent
            to the clients each round; float32 halves the download (the clients then train from
            the weights rounded to float32; the server keeps float64).

    Raises:
        ConfigError: a party that is not in the job, the server among the clients, repeats.
    """

    def __init__(
        self,
        job: Any,
        *,
        server: str,
        device_list: Sequence[str],
        model: ModelAdapter | Callable[[], ModelAdapter],
        aggregator: Aggregator | None = None,
        strategy: Strategy | None = None,
        name: str = "fl",
        broadcast_dtype: str = "float64",
    ) -> None:
        if broadcast_dtype not in ("float64", "float32"):
            raise ConfigError(f"must be 'float64' or 'float32', not {broadcast_dtype!r}", key="broadcast_dtype")
        self.broadcast_dtype = np.dtype(broadcast_dtype)
        parties = tuple(job.parties)
        clients = list(device_list)
        unknown = sorted({server, *clients} - set(parties))
        if unknown:
            raise ConfigError(f"{unknown} are not parties of job {job.id!r} {list(parties)}", key="device_list")
        if server in clients:
            raise ConfigError(f"the server {server!r} cannot also be a client", key="device_list")
        if len(set(clients)) != len(clients) or not clients:
            raise ConfigError(f"clients must be distinct and not empty: {clients}", key="device_list")
        self._job = job
        self.server = server
        self.device_list = tuple(clients)
        self.party: str = job.party
        self.aggregator: Aggregator = aggregator if aggregator is not None else SecureAggregator()
        self.strategy: Strategy = strategy if strategy is not None else FedAvg()
        self.name = name
        built = model() if callable(model) and not isinstance(model, ModelAdapter) else model
        if not isinstance(built, ModelAdapter):
            raise ConfigError(
                f"model must implement the ModelAdapter protocol (get_weights, set_weights, fit, "
                f"evaluate, predict, metric_names), not {type(built).__name__}", key="model"
            )
        self.model: ModelAdapter = built
        self._shapes = [tuple(np.shape(w)) for w in built.get_weights()]
        self._calls = 0
        self._log = get_logger(party=self.party, job=job.id, op="fl", model=name)
        if not self.aggregator.secure and self.party == server:
            self._log.warning("FLModel with INSECURE plain aggregation: the server sees every update")

    # ---- data --------------------------------------------------------------------------------
    def _own(self, spec: DataSpec, what: str) -> Any:
        """This party's entry of a per-client data spec (loaders run here only)."""
        if spec is None:
            return None
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(self.device_list))
            if unknown:
                raise ConfigError(f"{what} names {unknown}, which are not clients {list(self.device_list)}", key=what)
            value = spec.get(self.party)
        else:
            if len(spec) != len(self.device_list):
                raise ConfigError(
                    f"{what} has {len(spec)} entries for {len(self.device_list)} clients "
                    f"{list(self.device_list)}", key=what,
                )  # fmt: skip
            value = spec[self.device_list.index(self.party)] if self.party in self.device_list else None
        return value() if callable(value) else value

    def _client_data(self, x: DataSpec, y: DataSpec, what: str) -> tuple[Any, Any] | None:
        if self.party not in self.device_list:
            return None
        xs, ys = self._own(x, f"{what}x"), self._own(y, f"{what}y")
        if xs is None or ys is None:
            raise ConfigError(f"client {self.party!r} has no {what or 'training '}data", key=f"{what}x")
        if len(xs) != len(ys):
            raise ShapeError(f"client {self.party!r}: {what}x has {len(xs)} rows but {what}y has {len(ys)}")
        if len(xs) == 0:
            raise ShapeError(f"client {self.party!r}: {what}x has no rows")
        return xs, ys

    # ---- public API --------------------------------------------------------------------------
    async def fit(
        self,
        x: DataSpec,
        y: DataSpec,
        *,
        epochs: int,
        local_epochs: int = 1,
        batch_size: int | None = None,
        validation_data: tuple[DataSpec, DataSpec] | None = None,
        fraction_fit: float = 1.0,
        min_fit_clients: int = 2,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        dropout_after: Mapping[int, Mapping[str, str]] | None = None,
    ) -> History:
        """Train for ``epochs`` communication rounds; every party of the job calls it.

        Args:
            x, y: per-client rows: a list aligned with ``device_list`` or ``{client: value}``;
                a value may be a loader (called only at its client).
            epochs: communication rounds (SecretFlow's ``epochs``).
            local_epochs: passes over its rows a client makes per round.
            batch_size: local minibatch size; None is full batch.
            validation_data: ``(x_val, y_val)`` per client, same forms: federated evaluation of
                the model after every round (``val_*`` metrics in the records).
            fraction_fit: share of the reachable clients sampled per round (at least
                ``min_fit_clients``, and at least the threshold).
            seed: fixes sampling and the clients' batch orders.
            callbacks: e.g. :class:`EarlyStopping` (run at the server).
            checkpoint_dir: the server writes ``round-NNNNN.npz`` here after every round.
            resume: continue from the latest checkpoint in ``checkpoint_dir``, if any.
            dropout_after: test hook: ``{round: {client: stage}}`` makes that client go silent
                after that secure-aggregation stage (see ``mpcactors.secagg.DROPOUT_POINTS``).

        Returns:
            :class:`History`: the final weights at every party, the round records at the server.

        Raises:
            AggregationError: a round had fewer survivors than the threshold.
            ShapeError: a client's data or model does not fit (names the party).
            ConfigError: bad arguments.
        """
        for key, v in (("epochs", epochs), ("local_epochs", local_epochs), ("min_fit_clients", min_fit_clients)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"must be a positive integer, not {v!r}", key=key)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"must be None or a positive integer, not {batch_size!r}", key="batch_size")
        if not 0 < fraction_fit <= 1:
            raise ConfigError(f"must be in (0, 1], not {fraction_fit!r}", key="fraction_fit")
        if resume and checkpoint_dir is None:
            raise ConfigError("resume=True needs a checkpoint_dir", key="resume")
        self._calls += 1
        tag = f"{self.name}/fit{self._calls}"
        if self.party == self.server:
            return await serve_fit(self, tag, epochs, fraction_fit, min_fit_clients, seed,
                                    validation_data is not None, list(callbacks),
                                    Path(checkpoint_dir) if checkpoint_dir is not None else None, resume)  # fmt: skip
        data = self._client_data(x, y, "")
        val = self._client_data(*validation_data, "validation_") if validation_data is not None else None
        if data is None:  # a party of the job that takes no part
            return History(self.model.get_weights())
        return await client_loop(self, tag, data, val, local_epochs, batch_size, seed, dropout_after or {})

    async def evaluate(self, x: DataSpec, y: DataSpec) -> dict[str, float] | None:
        """Federated evaluation of the current global model on the clients' rows.

        The clients' metrics are aggregated like updates (securely by default), weighted by
        their row counts. Returns the metrics at the server and every client (None at other
        parties).
        """
        self._calls += 1
        tag = f"{self.name}/eval{self._calls}"
        if self.party == self.server:
            return await serve_evaluate(self, tag)
        data = self._client_data(x, y, "")
        if data is None:
            return None
        return await client_evaluate(self, tag, data)

    def predict(self, x: Any, *, at: str | None = None) -> np.ndarray | None:
        """The model's predictions on this party's ``x`` (a loader runs here only).

        With ``at``, only that party predicts; the others return None. No communication.
        """
        if at is not None and at not in self._job.parties:
            raise ConfigError(f"{at!r} is not a party of job {self._job.id!r}", key="at")
        if at is not None and at != self.party:
            return None
        return self.model.predict(x() if callable(x) else x)

    # ---- helpers shared by the server and client loops ---------------------------------------
    def channel(self, peer: str, tag: str) -> Any:
        return self._job.link.channel(peer, self._job.id, f"{tag}/model")

    @property
    def link(self) -> Any:
        return self._job.link

    @property
    def job_id(self) -> str:
        return str(self._job.id)

    @property
    def n_weights(self) -> int:
        return int(sum(math.prod(s) for s in self._shapes))

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return list(self._shapes)

    def wait_s(self) -> float:
        """How long a client waits for the server's next message (a whole round)."""
        return 8 * self.aggregator.stage_timeout_s
