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

A client that fails during a round (crash, lost link, silent) is simply not in that round's
sum; the round completes when at least ``threshold`` clients survive, otherwise it fails with
AggregationError and nothing is revealed. A client the server cannot reach when sending the
model is left out of the following rounds.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from .._errors import AggregationError, ConfigError, LinkError, ShapeError
from .._log import get_logger
from ._adapter import ModelAdapter, flatten, unflatten
from ._aggregator import PlainAggregator, SecureAggregator
from ._callbacks import Callback, History, RoundRecord
from ._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
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
            return await _serve_fit(self, tag, epochs, fraction_fit, min_fit_clients, seed,
                                    validation_data is not None, list(callbacks),
                                    Path(checkpoint_dir) if checkpoint_dir is not None else None, resume)  # fmt: skip
        data = self._client_data(x, y, "")
        val = self._client_data(*validation_data, "validation_") if validation_data is not None else None
        if data is None:  # a party of the job that takes no part
            return History(self.model.get_weights())
        return await _client_loop(self, tag, data, val, local_epochs, batch_size, seed, dropout_after or {})

    async def evaluate(self, x: DataSpec, y: DataSpec) -> dict[str, float] | None:
        """Federated evaluation of the current global model on the clients' rows.

        The clients' metrics are aggregated like updates (securely by default), weighted by
        their row counts. Returns the metrics at the server and every client (None at other
        parties).
        """
        self._calls += 1
        tag = f"{self.name}/eval{self._calls}"
        if self.party == self.server:
            return await _serve_evaluate(self, tag)
        data = self._client_data(x, y, "")
        if data is None:
            return None
        return await _client_evaluate(self, tag, data)

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


# ---- server -------------------------------------------------------------------------------------


def sample_clients(alive: Sequence[str], round_: int, seed: int, fraction: float,
                   minimum: int) -> list[str]:  # fmt: skip
    """The round's clients: ``max(minimum, ceil(fraction * n))`` of ``alive``, seeded by round."""
    k = min(len(alive), max(minimum, math.ceil(fraction * len(alive))))
    if k >= len(alive):
        return sorted(alive)
    rng = np.random.default_rng([seed, round_])
    return sorted(str(c) for c in rng.choice(sorted(alive), size=k, replace=False))


def client_seed(seed: int, round_: int, party: str) -> int:
    """The seed of ``party``'s local training in ``round_`` (independent of who else trains)."""
    return int(np.random.SeedSequence([seed, round_, zlib.crc32(party.encode())]).generate_state(1)[0])


async def _broadcast(fl: FLModel, tag: str, alive: list[str], messages: Mapping[str, Any]) -> None:
    """Send each client its message concurrently; unreachable clients leave ``alive``."""
    timeout = fl.aggregator.stage_timeout_s

    async def one(c: str) -> None:
        try:
            with anyio.fail_after(timeout):
                await fl.channel(c, tag).send(messages[c])
        except (LinkError, TimeoutError) as exc:
            fl._log.warning("client unreachable; left out from now on", client=c, error=repr(exc))
            alive.remove(c)

    async with anyio.create_task_group() as tg:
        for c in sorted(messages):
            tg.start_soon(one, c)


def _traffic(fl: FLModel) -> tuple[int, int]:
    stats = fl.link.statistics()
    sent = received = 0
    for c in fl.device_list:
        js = stats.jobs.get((c, fl.job_id))
        if js is not None:
            sent += js.bytes_sent
            received += js.bytes_received
    return sent, received


async def _serve_fit(fl: FLModel, tag: str, epochs: int, fraction: float, minimum: int, seed: int,
                     validate: bool, callbacks: list[Callback], ckpt: Path | None,
                     resume: bool) -> History:  # fmt: skip
    log, strategy = fl._log.bind(tag=tag), fl.strategy
    w = flatten(fl.model.get_weights())
    n_w, names = len(w), [f"val_{m}" for m in fl.model.metric_names]
    history: list[RoundRecord] = []
    start, resumed_from = 0, None
    if resume and ckpt is not None and (path := latest_checkpoint(ckpt)) is not None:
        ck = load_checkpoint(path)
        if [tuple(s) for s in ck.header["shapes"]] != fl.shapes:
            raise ShapeError(f"server {fl.party!r}: checkpoint {str(path)!r} holds weights of shapes "
                             f"{ck.header['shapes']}, the model has {fl.shapes}")  # fmt: skip
        w = flatten(ck.weights)
        strategy.load_state(ck.strategy_state)
        history = [RoundRecord.from_dict(d) for d in ck.header["history"]]
        start = resumed_from = ck.round + 1
        log.info("resuming", round=start, checkpoint=str(path))
    alive = list(fl.device_list)
    stopped = False
    final_w = w

    def complete(record: RoundRecord, weights: np.ndarray) -> bool:
        log.info("round done", round=record.round, samples=record.samples,
                 train_loss=record.train_loss, survivors=len(record.survivors), **record.metrics)  # fmt: skip
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_round_end(record, unflatten(weights, fl.shapes))) or stop
        return stop

    async def round_(r: int, train: bool) -> tuple[np.ndarray, RoundRecord | None, dict[str, float]]:
        t0, (s0, r0) = time.perf_counter(), _traffic(fl)
        sampled = sample_clients(alive, r, seed, fraction, minimum)
        need = fl.aggregator.threshold_for(len(sampled))
        if len(sampled) < need:
            raise AggregationError(f"round {r}: only {len(sampled)} clients reachable {sampled}, "
                                   f"the threshold is {need}")  # fmt: skip
        kind = "train" if train else "eval"
        sent = w.astype(fl.broadcast_dtype)
        msgs = {c: {"kind": kind, "round": r, "participants": sampled,
                    "weights": sent if c in sampled else None} for c in alive}  # fmt: skip
        await _broadcast(fl, tag, alive, msgs)
        agg = await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=None, server=fl.party,
                                            clients=sampled, tag=f"{tag}/round-{r}")  # fmt: skip
        if agg is None:  # pragma: no cover - the server always gets the sum
            raise AggregationError(f"round {r}: no aggregate at the server")
        total = agg.total
        width = (n_w + 2 if train else 0) + (len(names) + 1 if validate else 0)
        if len(total) != width:
            raise AggregationError(f"round {r}: the aggregate has {len(total)} values, expected {width}")
        metrics: dict[str, float] = {}
        if validate:
            m = total[-1]
            if m <= 0:
                raise AggregationError(f"round {r}: no validation rows were aggregated")
            metrics = {k: float(v / m) for k, v in zip(names, total[-1 - len(names) : -1], strict=True)}
        if not train:
            return w, None, metrics
        n = total[n_w]
        if n <= 0:
            raise AggregationError(f"round {r}: no samples were aggregated")
        new = strategy.apply(w, total[:n_w] / n)
        s1, r1 = _traffic(fl)
        record = RoundRecord(r, tuple(sampled), agg.survivors, float(n), float(total[n_w + 1] / n),
                             {}, s1 - s0, r1 - r0, time.perf_counter() - t0, agg.clip, agg.step)  # fmt: skip
        return new, record, metrics

    for r in range(start, epochs):
        new, record, metrics = await round_(r, train=True)
        assert record is not None
        if validate and history and not history[-1].metrics and history[-1].round == r - 1:
            prev = history[-1] = _with_metrics(history[-1], metrics)
            if complete(prev, w):
                stopped, final_w = True, w
                break
        w = new
        history.append(record)
        if not validate and complete(record, w):
            stopped, final_w = True, w
            if ckpt is not None:
                save_checkpoint(ckpt, r, unflatten(w, fl.shapes), strategy.state(),
                                {"seed": seed, "history": [h.as_dict() for h in history]})  # fmt: skip
            break
        if ckpt is not None:
            save_checkpoint(ckpt, r, unflatten(w, fl.shapes), strategy.state(),
                            {"seed": seed, "history": [h.as_dict() for h in history]})  # fmt: skip
        final_w = w
    if validate and not stopped and history and not history[-1].metrics:
        _, _, metrics = await round_(epochs, train=False)
        history[-1] = _with_metrics(history[-1], metrics)
        stopped = complete(history[-1], w)
        final_w = w
    for cb in callbacks:  # EarlyStopping(restore_best=True) ends with the best round's weights
        best = getattr(cb, "best_weights", None)
        if stopped and best is not None and getattr(cb, "restore_best", False):
            final_w = flatten(best)
    await _broadcast(fl, tag, alive, {c: {"kind": "final", "round": -1, "participants": [],
                                          "weights": final_w} for c in alive})  # fmt: skip
    fl.model.set_weights(unflatten(final_w, fl.shapes))
    return History(unflatten(final_w, fl.shapes), tuple(history), stopped, resumed_from)


def _with_metrics(record: RoundRecord, metrics: Mapping[str, float]) -> RoundRecord:
    from dataclasses import replace

    return replace(record, metrics=dict(metrics))


async def _serve_evaluate(fl: FLModel, tag: str) -> dict[str, float]:
    w = flatten(fl.model.get_weights())
    alive = list(fl.device_list)
    await _broadcast(fl, tag, alive, {c: {"kind": "eval", "round": 0, "participants": alive,
                                          "weights": w} for c in alive})  # fmt: skip
    names = list(fl.model.metric_names)
    agg = await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=None, server=fl.party,
                                        clients=list(alive), tag=f"{tag}/round-0")  # fmt: skip
    if agg is None or len(agg.total) != len(names) + 1 or agg.total[-1] <= 0:
        raise AggregationError(f"evaluation {tag!r}: no usable aggregate")
    result = {k: float(v / agg.total[-1]) for k, v in zip(names, agg.total[:-1], strict=True)}
    await _broadcast(fl, tag, alive, {c: {"kind": "result", "metrics": result} for c in alive})
    return result


# ---- client -------------------------------------------------------------------------------------


async def _receive(fl: FLModel, tag: str) -> dict[str, Any]:
    wait = fl.wait_s()
    try:
        with anyio.fail_after(wait):
            msg = await fl.channel(fl.server, tag).receive()
    except TimeoutError:
        raise AggregationError(
            f"client {fl.party!r}: no message from server {fl.server!r} within {wait:g} s"
        ) from None
    except LinkError as exc:
        raise AggregationError(f"client {fl.party!r}: lost the server {fl.server!r}: {exc}") from exc
    if not isinstance(msg, dict) or msg.get("kind") not in ("train", "eval", "final", "result"):
        raise AggregationError(f"client {fl.party!r}: malformed message from server {fl.server!r}")
    return msg


def _load(fl: FLModel, msg: dict[str, Any]) -> np.ndarray:
    w = msg.get("weights")
    if not isinstance(w, np.ndarray) or w.ndim != 1 or w.dtype.kind != "f" or not np.all(np.isfinite(w)):
        raise AggregationError(f"client {fl.party!r}: malformed weights from server {fl.server!r}")
    if len(w) != fl.n_weights:
        raise ShapeError(
            f"client {fl.party!r}: the server {fl.server!r} sent {len(w)} weights, this party's "
            f"model has {fl.n_weights} in shapes {fl.shapes}: the parties built different models"
        )
    w = np.asarray(w, dtype=np.float64)
    fl.model.set_weights(unflatten(w, fl.shapes))
    return w


def _metric_part(fl: FLModel, val: tuple[Any, Any] | None, max_samples: int) -> list[np.ndarray]:
    if val is None:
        return []
    metrics = fl.model.evaluate(*val)
    missing = [k for k in fl.model.metric_names if k not in metrics]
    if missing:
        raise ConfigError(f"client {fl.party!r}: the model's evaluate() lacks {missing}", key="model")
    m = float(min(len(val[0]), max_samples))
    return [m * np.array([metrics[k] for k in fl.model.metric_names], dtype=np.float64), np.array([m])]


def update_vector(model: ModelAdapter, data: tuple[Any, Any], w: np.ndarray, *, epochs: int,
                  batch_size: int | None, seed: int, proximal_mu: float, clip_norm: float,
                  max_samples: int, log: Any) -> np.ndarray:  # fmt: skip
    """A client's round contribution ``[n d, n, n loss]`` from the global weights ``w`` (loaded).

    d = w_k - w is scaled to L2 norm <= ``clip_norm``; n = min(rows, ``max_samples``).
    """
    loss = model.fit(*data, epochs=epochs, batch_size=batch_size, seed=seed, proximal_mu=proximal_mu)
    delta = flatten(model.get_weights()) - w
    if len(delta) != len(w):
        raise ShapeError(f"local training changed the weight count from {len(w)} to {len(delta)}")
    if not np.all(np.isfinite(delta)) or not np.isfinite(loss):
        raise AggregationError(f"local training diverged (loss {loss!r}): a non-finite update")
    norm = float(np.linalg.norm(delta))
    if norm > clip_norm:
        log.warning("update clipped", norm=norm, clip_norm=clip_norm)
        delta *= clip_norm / norm
    n = float(len(data[0]))
    if n > max_samples:
        log.warning("sample weight capped", rows=n, max_samples=max_samples)
        n = float(max_samples)
    return np.concatenate([n * delta, [n, n * float(loss)]])


async def _client_loop(fl: FLModel, tag: str, data: tuple[Any, Any], val: tuple[Any, Any] | None,
                       local_epochs: int, batch_size: int | None, seed: int,
                       dropouts: Mapping[int, Mapping[str, str]]) -> History:  # fmt: skip
    agg = fl.aggregator
    log = fl._log.bind(tag=tag)
    while True:
        msg = await _receive(fl, tag)
        if msg["kind"] == "final":
            w = _load(fl, msg)
            return History(unflatten(w, fl.shapes))
        if fl.party not in msg.get("participants", ()):
            continue
        r = int(msg["round"])
        w = _load(fl, msg)
        train = msg["kind"] == "train"

        def work(w: np.ndarray = w, r: int = r, train: bool = train) -> np.ndarray:
            parts = _metric_part(fl, val, agg.max_samples)
            if train:
                update = update_vector(fl.model, data, w, epochs=local_epochs, batch_size=batch_size,
                                       seed=client_seed(seed, r, fl.party),
                                       proximal_mu=fl.strategy.proximal_mu, clip_norm=agg.clip_norm,
                                       max_samples=agg.max_samples, log=log.bind(round=r))  # fmt: skip
                parts = [update, *parts]
            return np.concatenate(parts)

        # local work in a worker thread: the node's event loop keeps the links alive meanwhile
        vector = await anyio.to_thread.run_sync(work)
        await agg.aggregate(fl.link, job=fl.job_id, vector=vector, server=fl.server,
                            clients=list(msg["participants"]), tag=f"{tag}/round-{r}",
                            dropout_after=dropouts.get(r, {}).get(fl.party))  # fmt: skip


async def _client_evaluate(fl: FLModel, tag: str, data: tuple[Any, Any]) -> dict[str, float]:
    msg = await _receive(fl, tag)
    if msg["kind"] != "eval":
        raise AggregationError(f"client {fl.party!r}: expected an evaluation request, got {msg['kind']!r}")
    _load(fl, msg)
    vector = await anyio.to_thread.run_sync(
        lambda: np.concatenate(_metric_part(fl, data, fl.aggregator.max_samples))
    )
    await fl.aggregator.aggregate(fl.link, job=fl.job_id, vector=vector, server=fl.server,
                                  clients=list(msg["participants"]), tag=f"{tag}/round-0")  # fmt: skip
    result = await _receive(fl, tag)
    metrics = result.get("metrics")
    if result["kind"] != "result" or not isinstance(metrics, dict):
        raise AggregationError(f"client {fl.party!r}: malformed evaluation result from {fl.server!r}")
    return {str(k): float(v) for k, v in metrics.items()}
