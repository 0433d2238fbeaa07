"""The async driver of secure aggregation over the link's channels (a thin shell around the
sans-IO machines in ``_client.py`` / ``_server.py``).

Theory of operation
-------------------
Every party of an aggregation calls :func:`secure_sum` with the same job, tag, server, client
list and parameters. Messages travel star-shaped on one channel per client, ``(job, tag)`` with
the server. The server runs each stage as: read from every client still expected, concurrently,
until all answered or ``stage_timeout_s`` passed (a client that is silent, whose link failed or
whose message was malformed is out from then on); close the stage in the machine (which enforces
the threshold); send the next stage's messages, concurrently, each send bounded by the same
timeout. A client waits at most ``2 * stage_timeout_s`` for each server message (the server may
still be waiting for slower clients of the previous stage).

On a failed stage the server sends every client still in an ``abort`` message carrying the
reason, so they fail at once with the same :class:`~mpcactors.AggregationError` instead of
timing out. Link failures toward one client are that client dropping out; a
:class:`~mpcactors.JobAborted` ends the aggregation at every party.

``dropout_after`` is a test and benchmark hook: the client answers up to and including the named
stage (``"start"``: none), then stops responding, exactly like a crashed client, so the server's
real recovery path runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import anyio
import numpy as np

from .._certs import PartyCredentials
from .._errors import AggregationError, ConfigError, JobError, LinkError
from .._log import get_logger
from ..link._abc import Channels, JobChannel
from ._client import ClientState, SecAggClient
from ._masking import Quantizer
from ._protocol import SecAggParams, Stage
from ._server import SecAggServer, ServerState
from ._tree import flatten_vector, unflatten_sum

__all__ = ["DROPOUT_POINTS", "AggregationReport", "plain_sum", "secure_aggregate", "secure_sum"]

#: Values of ``dropout_after``: "start" (send nothing) or the last stage a client answers
#: ("consistency_check" only when that stage runs).
DROPOUT_POINTS = ("start",) + tuple(s.value for s in Stage if s is not Stage.UNMASKING)

DEFAULT_CLIP = 2.0**20
DEFAULT_FRAC_BITS = 18
DEFAULT_RING_BITS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class AggregationReport:
    """What one party saw of one aggregation.

    Attributes:
        party: this party.
        role: ``"server"`` or ``"client"``.
        result: the float64 sum at the server; None at clients.
        members: at the server, for each stage, the clients that completed it (U1, U2, ...).
        excluded: at the server, clients whose messages were refused, with the reason.
        clipped: at a client, how many of its elements were clipped to [-clip, clip].
        dropped_out: at a client, True when the ``dropout_after`` hook stopped it.
        stage_seconds: at the server, wall time of each stage (collect + close + send).
        seconds: wall time of the whole call.
    """

    party: str
    role: str
    result: np.ndarray | None = None
    members: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    excluded: Mapping[str, str] = dataclasses.field(default_factory=dict)
    clipped: int = 0
    dropped_out: bool = False
    stage_seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


async def secure_sum(
    node: Channels,
    *,
    job: str,
    vector: Any,
    server: str,
    clients: Sequence[str],
    threshold: int,
    clip: float = DEFAULT_CLIP,
    frac_bits: int = DEFAULT_FRAC_BITS,
    ring_bits: int = DEFAULT_RING_BITS,
    neighbours: int | None = None,
    consistency_check: bool = False,
    stage_timeout_s: float = 30.0,
    tag: str = "secagg",
    dropout_after: str | None = None,
) -> Any:
    """Securely sum the clients' vectors at the server (Bonawitz et al. 2017; SecAgg+).

    Called by every party of the aggregation with the same arguments except ``vector``. The
    server learns only the sum of the vectors of the clients that completed the masked-input
    stage (plus its own vector, if it passes one); no party learns any other input.

    Args:
        node: this party's link node (``mpcactors.link.open_node``).
        job: the job id (every party the same).
        vector: at a client, a float array or a pytree of them (nested dicts, lists, tuples;
            every client the same structure); at the server None, or its own vector.
        server: the party that aggregates.
        clients: the parties whose vectors are summed (the server not among them).
        threshold: t >= 2: every stage needs t clients, and t shares rebuild a client's secret.
            Below it the aggregation aborts with AggregationError and reveals nothing.
        clip: inputs are clipped to [-clip, clip].
        frac_bits: fixed-point fractional bits (quantisation step 2^-frac_bits).
        ring_bits: the ring Z_2^k of the masked values (k <= 32 halves the bytes sent).
        neighbours: SecAgg+ graph degree (even); None masks with every other client.
        consistency_check: run the signed consistency-check stage.
        stage_timeout_s: how long the server waits for each stage's answers.
        tag: names this aggregation inside the job (use one tag per aggregation).
        dropout_after: test hook at a client, one of :data:`DROPOUT_POINTS`.

    Returns:
        The float64 sum at the server in the clients' structure (quantised: within ``n *
        2^-(frac_bits+1)`` of the exact sum of the clipped inputs); None at the clients.

    Raises:
        AggregationError: too few clients, a bad vector, the server aborted or went silent.
        ConfigError: bad parameters (names the option).
        JobAborted: the job was aborted.
    """
    options: dict[str, Any] = {
        "server": server, "clients": clients, "threshold": threshold, "clip": clip,
        "frac_bits": frac_bits, "ring_bits": ring_bits, "neighbours": neighbours,
        "consistency_check": consistency_check, "stage_timeout_s": stage_timeout_s, "tag": tag,
        "dropout_after": dropout_after,
    }  # fmt: skip
    tree_channel = f"{tag}/tree"  # each client's vector structure, sent before the masked stages
    _check_roles(node, server, clients, stage_timeout_s)  # before any message
    if node.party != server:
        flat = None
        if vector is not None and node.party in clients:
            flat, structure = flatten_vector(vector, f"client {node.party!r}'s vector")
            if dropout_after != "start":
                await node.channel(server, job, tree_channel).send(structure)
        return (await secure_aggregate(node, job=job, vector=flat, **options)).result
    own = None if vector is None else flatten_vector(vector, "the server's vector")[0]
    structures: dict[str, Any] = {}
    arrived = anyio.Event()
    outcome: dict[str, Any] = {}

    async def structure_from(client: str) -> None:
        try:
            structures[client] = await node.channel(client, job, tree_channel).receive()
        except (LinkError, JobError):
            return  # that client dropped out (or the job ended): the aggregation decides
        arrived.set()

    async def aggregate(scope: anyio.CancelScope) -> None:
        try:
            outcome["report"] = await secure_aggregate(node, job=job, vector=own, **options)
            with anyio.move_on_after(stage_timeout_s):
                await arrived.wait()  # sent before the client's masked input, so already here
        except Exception as exc:  # noqa: BLE001 - re-raised below as it is, not in a group
            outcome["error"] = exc
        finally:
            scope.cancel()

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(structure_from, client)
        tg.start_soon(aggregate, tg.cancel_scope)
    if "error" in outcome:
        raise outcome["error"]
    report = outcome["report"]
    if report.result is None:
        return None
    if not structures:
        raise AggregationError(f"aggregation {tag!r}: no client sent its vector's structure")
    return unflatten_sum(report.result, structures)


async def secure_aggregate(
    node: Channels,
    *,
    job: str,
    vector: Any,
    server: str,
    clients: Sequence[str],
    threshold: int,
    clip: float = DEFAULT_CLIP,
    frac_bits: int = DEFAULT_FRAC_BITS,
    ring_bits: int = DEFAULT_RING_BITS,
    neighbours: int | None = None,
    consistency_check: bool = False,
    stage_timeout_s: float = 30.0,
    tag: str = "secagg",
    dropout_after: str | None = None,
) -> AggregationReport:
    """:func:`secure_sum` returning an :class:`AggregationReport` (survivors, timings)."""
    config = getattr(node, "config", None)
    credentials = PartyCredentials.load(config, node.party) if config is not None else None
    params = SecAggParams(
        job=job, tag=tag, threshold=threshold, quantizer=Quantizer(clip, frac_bits, ring_bits),
        neighbours=neighbours, consistency_check=consistency_check,
        signed_keys=credentials is not None,
    )  # fmt: skip
    role = _check_roles(node, server, clients, stage_timeout_s)
    params.check_clients(clients)
    points = DROPOUT_POINTS if consistency_check else DROPOUT_POINTS[:-1]
    if dropout_after is not None and (role != "client" or dropout_after not in points):
        raise ConfigError(
            f"must be None or, at a client, one of {points}; not {dropout_after!r} at the {role}",
            key="dropout_after",
        )
    log = get_logger(party=node.party, job=job, op="secagg", tag=tag)
    started = time.perf_counter()
    if role == "server":
        report = await _serve(node, params, list(clients), vector, stage_timeout_s, log)
    else:
        if vector is None:
            raise AggregationError(f"client {node.party!r} passed no vector")
        report = await _participate(
            node, params, server, vector, stage_timeout_s, dropout_after, log, credentials
        )
    return dataclasses.replace(report, seconds=time.perf_counter() - started)


def _check_roles(node: Channels, server: str, clients: Sequence[str], timeout: float) -> str:
    if server in clients:
        raise ConfigError(f"the server {server!r} cannot also be a client", key="clients")
    parties = {node.party, *node.peers}
    unknown = sorted({server, *clients} - parties)
    if unknown:
        raise ConfigError(
            f"{unknown} are not parties of this cluster {sorted(parties)}", key="clients"
        )
    if not timeout > 0:
        raise ConfigError(f"must be positive, not {timeout!r}", key="stage_timeout_s")
    if node.party == server:
        return "server"
    if node.party in clients:
        return "client"
    raise ConfigError(f"party {node.party!r} is neither the server nor a client", key="clients")


# -- server -----------------------------------------------------------------------------------------


async def _serve(
    node: Channels, params: SecAggParams, clients: list[str], own: Any, timeout: float, log: Any
) -> AggregationReport:
    machine = SecAggServer(params, clients, own)
    channels = {c: node.channel(c, params.job, params.tag) for c in clients}
    stage_seconds: dict[str, float] = {}
    while machine.state is ServerState.COLLECTING:
        stage, t0 = machine.stage, time.perf_counter()
        await _each(machine.expected, lambda c: _read(machine, channels[c], c, log), timeout)
        try:
            out = machine.close_stage()
        except AggregationError as exc:
            log.warning("secure aggregation aborted", stage=stage.value, error=str(exc))
            await _send_each(channels, machine.abort_messages(str(exc)), timeout, log)
            raise
        await _send_each(channels, out, timeout, log)
        members = machine.members[stage]
        log.info(
            "stage closed", stage=stage.value, clients=len(members), excluded=len(machine.excluded)
        )
        stage_seconds[stage.value] = time.perf_counter() - t0
    return AggregationReport(
        party=node.party,
        role="server",
        result=machine.result,
        members={s.value: tuple(sorted(m)) for s, m in machine.members.items()},
        excluded=dict(machine.excluded),
        stage_seconds=stage_seconds,
    )


async def _each(
    names: Any, work: Callable[[str], Coroutine[Any, Any, None]], timeout: float
) -> None:
    """Run ``work(name)`` for every name concurrently, all within ``timeout`` seconds.

    A failure of one task (JobAborted, a bug) cancels the others and is re-raised as itself.
    """
    try:
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for name in sorted(names):
                    tg.start_soon(work, name)
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        elif not isinstance(exc, cancelled):
            leaves.append(exc)
    return leaves[0] if leaves else group


async def _read(machine: SecAggServer, channel: JobChannel, client: str, log: Any) -> None:
    """Read ``client``'s messages until one counts for the current stage (stale ones skipped)."""
    while client in machine.expected:
        try:
            msg = await channel.receive()
        except LinkError as exc:
            log.info("client unreachable; it drops out", client=client, error=str(exc))
            return
        if not machine.receive(client, msg) and client in machine.excluded:
            log.warning("client excluded", client=client, reason=machine.excluded[client])


async def _send_each(
    channels: Mapping[str, Any], msgs: Mapping[str, Any], timeout: float, log: Any
) -> None:
    """Send ``msgs[c]`` to every client c concurrently (each send bounded by ``timeout``)."""
    await _each(msgs, lambda c: _send(channels[c], msgs[c], c, log), timeout)


async def _send(channel: JobChannel, msg: Any, client: str, log: Any) -> None:
    try:
        await channel.send(msg)
    except LinkError as exc:
        log.info("cannot reach client; it drops out", client=client, error=str(exc))


# -- client -----------------------------------------------------------------------------------------


async def _participate(
    node: Channels,
    params: SecAggParams,
    server: str,
    vector: Any,
    timeout: float,
    dropout_after: str | None,
    log: Any,
    credentials: PartyCredentials | None,
) -> AggregationReport:
    machine = SecAggClient(params, node.party, vector, credentials)
    if machine.clipped:
        log.warning("input clipped", elements=machine.clipped, clip=params.quantizer.clip)
    channel = node.channel(server, params.job, params.tag)
    done = AggregationReport(party=node.party, role="client", clipped=machine.clipped)
    dropped = dataclasses.replace(done, dropped_out=True)
    if dropout_after == "start":
        return dropped
    reply = machine.start()
    wait = 2 * timeout
    while True:
        try:
            with anyio.fail_after(timeout):
                await channel.send(reply)
            if reply["stage"] == dropout_after:
                log.info("dropping out (test hook)", after=dropout_after)
                return dropped
            if machine.state is ClientState.DONE:
                return done
            with anyio.fail_after(wait):
                msg = await channel.receive()
        except TimeoutError:
            raise AggregationError(
                f"client {node.party!r}: server {server!r} silent for {wait:g} s in state "
                f"{machine.state.value} (job {params.job!r}, tag {params.tag!r})"
            ) from None
        except LinkError as exc:
            raise AggregationError(
                f"client {node.party!r}: lost the server {server!r} in state "
                f"{machine.state.value}: {exc}"
            ) from exc
        reply = machine.receive(msg)


# -- plain (insecure) aggregation, for comparison ---------------------------------------------------


async def plain_sum(
    node: Channels,
    *,
    job: str,
    vector: Any,
    server: str,
    clients: Sequence[str],
    stage_timeout_s: float = 30.0,
    tag: str = "plainsum",
) -> np.ndarray | None:
    """INSECURE baseline: every client sends its float64 vector to the server in the clear.

    Same calling convention as :func:`secure_sum` (clients that stay silent past
    ``stage_timeout_s`` are left out). Use it only to measure what secure aggregation costs.

    Returns:
        The sum at the server; None at the clients.

    Raises:
        AggregationError: no vector arrived, or vectors differ in length.
    """
    role = _check_roles(node, server, clients, stage_timeout_s)
    if role == "client":
        with anyio.fail_after(stage_timeout_s):
            await node.channel(server, job, tag).send(np.asarray(vector, dtype=np.float64))
        return None
    got: dict[str, np.ndarray] = {}

    async def read(c: str) -> None:
        try:
            got[c] = np.asarray(await node.channel(c, job, tag).receive(), dtype=np.float64)
        except LinkError:
            pass

    await _each(clients, read, stage_timeout_s)
    vectors = list(got.values()) + (
        [np.asarray(vector, dtype=np.float64)] if vector is not None else []
    )
    if not vectors:
        raise AggregationError(f"plain sum {tag!r}: no vector arrived within {stage_timeout_s:g} s")
    if len({v.shape for v in vectors}) > 1:
        raise AggregationError(f"plain sum {tag!r}: vectors differ in shape")
    return np.sum(vectors, axis=0)
