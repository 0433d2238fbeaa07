"""The runtime node: one per party, long-lived, running many secure jobs at once.

``async with open_node(config, party) as node:`` connects the link to every peer (TCP+TLS from
the config, or an in-memory network for simulation), starts the node's executor, and offers
``await node.run(program, job=...)`` for compute jobs and ``await node.psi(...)`` for PSI jobs.
Every task belongs to the node's task group or to a job's; a job that fails or times out is
aborted at every party while the node and its other jobs keep running.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from ._certs import check_own_certificate
from ._config import ClusterConfig, WanProfile
from ._errors import ConfigError, JobAborted, JobTimeout, MpcError
from ._log import get_logger
from ._offload import Spares, run_in_process
from ._trace import NodeTracing, TraceFile
from .link import NodeStatistics
from .link import open_node as open_link
from .link._abc import JobChannel, JobLink
from .ops._registry import make_protocol
from .scheduler._budget import MemoryBudget
from .scheduler._executor import Executor, JobState
from .scheduler._job import Job, JobSettings
from .scheduler._tensor import SecretTensor
from .secagg import secure_sum

__all__ = ["Node", "open_node"]

Program = Callable[..., Awaitable[Any]]


class Node:
    """A party's runtime node (see module doc). Made by :func:`open_node`."""

    def __init__(
        self, config: ClusterConfig, party: str, link: JobLink, executor: Executor, spares: Spares | None = None
    ) -> None:
        self.config = config
        self.party = party
        self.link = link
        self._executor = executor
        self._program_runs: Counter[str] = Counter()
        self._log = get_logger(party=party)
        self._tracing = NodeTracing(party, link)
        self._spares = spares if spares is not None else Spares()  # offload children started ahead

    @property
    def parties(self) -> tuple[str, ...]:
        return self.config.party_names

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(p for p in self.parties if p != self.party)

    def channel(self, peer: str, job: str, name: str) -> JobChannel:
        """A raw message channel of the link (for custom protocols)."""
        return self.link.channel(peer, job, name)

    def statistics(self) -> NodeStatistics:
        """The link's statistics (bytes, frames, messages per peer and job; RTT per peer)."""
        return self.link.statistics()

    async def run(
        self,
        program: Program,
        *args: Any,
        job: str | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = 600.0,
        protocol: str | None = None,
        fxp_bits: int | None = None,
        dealer: str | None = None,
        check_ranges: bool = False,
        trace: str | os.PathLike[str] | TraceFile | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``await program(job, *args, **kwargs)`` as one secure job at this party.

        Every party of the cluster runs the same program with the same job id.

        Args:
            program: ``async def program(job, ...)``.
            job: the job id every party uses; default: derived from the program's name and how
                many times this node has run it (the same at every party that runs the same
                sequence of jobs).
            timeout: seconds before the job is aborted everywhere with JobTimeout.
            idle_timeout: seconds an op may wait for peers while no message of the job arrives
                and none of its ops finishes (a peer stuck, or a program that diverged between
                parties); then the job is aborted everywhere with JobTimeout. None disables it.
            protocol, fxp_bits, dealer: override the cluster config's values.
            check_ranges: development aid: every product of secret values is also opened and
                checked against the fixed-point range; one that would wrap aborts the job with
                an OverflowError naming the op (README: fixed-point ranges). Reveals values
                and costs a round per product: never in production.
            trace: write this party's trace of the job to this path when it ends (Chrome /
                Perfetto trace-event JSON: op steps, frames per peer, waits, rounds; see
                docs/TRACE.md), also when it fails.

        Returns:
            What the program returned at this party.

        Raises:
            JobAborted: a party (this one or a peer) failed; names the party and the cause.
            JobTimeout: the job ran past ``timeout``.
            PeerLost: a peer of the job disappeared.
            ConfigError: an unknown protocol, a missing dealer.
        """
        call = type(program).__call__ if not inspect.isfunction(program) else None
        if not inspect.iscoroutinefunction(program) and not inspect.iscoroutinefunction(call):
            raise TypeError(f"a program must be `async def program(job)`, not {program!r}")
        if job is None:
            name = getattr(program, "__qualname__", "program")
            self._program_runs[name] += 1
            job = f"{name}#{self._program_runs[name]}"
        proto_name = protocol or self.config.protocol
        bits = self.config.fxp_bits if fxp_bits is None else fxp_bits
        dealer = dealer if dealer is not None else self.config.dealer
        proto = make_protocol(
            proto_name, self.party, self.parties, fxp_bits=bits, dealer=dealer, softspoken_k=self.config.softspoken_k,
            matrix_triples=self.config.matrix_triples, mul_triples=self.config.mul_triples,
        )
        # the parties agree on k and on the triple routes only where they are used (semi2k
        # making its own correlations): a route differs where TenSEAL imports at one party only
        dealerless = getattr(proto, "dealerless", False)
        if dealerless:  # big HE triples run in a child process, off this node's GIL
            proto.offload = functools.partial(run_in_process, spares=self._spares)  # type: ignore[attr-defined]
            if {getattr(proto, "matrix_triples", "ot"), getattr(proto, "mul_triples", "ot")} != {"ot"}:
                # a child ready (its imports done) by the time a triple wants it; starting one
                # takes ~15 ms (fork and exec), off the event loop
                await anyio.to_thread.run_sync(self._spares.warm)
        settings = JobSettings(
            job, proto_name, self.parties, dealer, bits, getattr(program, "__qualname__", "?"),
            self.config.softspoken_k if dealerless else None,
            getattr(proto, "matrix_triples", None) if dealerless else None,
            getattr(proto, "mul_triples", None) if dealerless else None,
        )
        log = self._log.bind(job=job)
        result: Any = None
        aborted_locally = False

        def on_fail(error: BaseException) -> None:
            nonlocal aborted_locally
            if not isinstance(error, JobAborted) or error.party == self.party:
                aborted_locally = True
                reason = error.cause if isinstance(error, JobAborted) else f"{type(error).__name__}: {error}"
                with contextlib.suppress(MpcError):
                    self.link.abort_job(job, reason)
            else:
                # relay a peer's abort: a third party may see our link close (we leave the job
                # now) before the aborting party's own JOB_ABORT reaches it; ours goes first on
                # each link, so it learns the cause, not just that we left
                with contextlib.suppress(MpcError):
                    self.link.abort_job(job, str(error))
            scope.cancel()

        traced = self._tracing.start(job, "compute") if trace is not None else None
        state = JobState(job, self.party, proto, on_fail=on_fail, tracer=traced)
        self._executor.open_job(state)
        handle = Job(state, self._executor, self.link, settings, aggregate=secure_sum)
        handle.check_ranges = check_ranges
        log.info("job started", protocol=proto_name)
        try:
            async with anyio.create_task_group() as tg:
                scope = tg.cancel_scope
                for peer in state.peers:
                    tg.start_soon(self._executor.receive, state, peer)

                async def main() -> None:
                    nonlocal result
                    try:
                        with anyio.fail_after(timeout if timeout is not None else math.inf):
                            result = await program(handle, *args, **kwargs)
                            if _holds_secret(result):
                                raise TypeError(
                                    "the program returned a secret tensor, which dies with its job: "
                                    "return `await job.reveal(x)` (or reveal to one party) instead"
                                )
                            await handle.drain()
                            await handle.finish()
                    except TimeoutError:
                        self._executor.fail_job(state, JobTimeout(job, timeout or 0.0, self.party))
                    except Exception as exc:  # noqa: BLE001 - the program raised: abort the job everywhere
                        self._executor.fail_job(state, _sole(exc))
                    scope.cancel()

                tg.start_soon(main)
                tg.start_soon(self._probe, state)
                if idle_timeout is not None:
                    tg.start_soon(self._watchdog, state, idle_timeout)
        finally:
            self._executor.close_job(state)
            with contextlib.suppress(Exception):
                self.link.close_job(job)
            if traced is not None and trace is not None:
                await self._tracing.finish(traced, trace, drain=state.failure is None)
            await self._executor.release(state)
        err = state.failure
        if err is not None:
            log.warning("job failed", error=repr(err))
            if isinstance(err, (JobAborted, JobTimeout)) or not aborted_locally:
                raise err
            raise JobAborted(job, self.party, f"{type(err).__name__}: {err}") from err
        log.info("job finished", rounds=state.rounds)
        return result

    async def _watchdog(self, state: JobState, idle_timeout: float) -> None:
        """Abort a job whose ops wait for peers while nothing moves for ``idle_timeout`` s."""
        while state.failure is None:
            await anyio.sleep(max(idle_timeout / 4, 0.01))
            idle = anyio.current_time() - state.last_progress
            blocked = self._executor.blocked_ops(state)
            if blocked and idle >= idle_timeout:
                waiting = sorted({p for n in blocked for p in n.expect})
                detail = (
                    f"no progress: {len(blocked)} op(s) (first: {blocked[0].name!r}) "
                    f"wait for {waiting}"
                )
                self._executor.fail_job(state, JobTimeout(state.id, idle_timeout, self.party, detail))

    async def _probe(self, state: JobState, after: float = 1.0, most: float = 16.0) -> None:
        """While the job's ops wait and nothing moves, tell the peers which ops we wait in
        (fingerprints; see ``scheduler/_fingerprint.py``), so diverged programs abort.

        The first probe comes ``after`` seconds without progress; while the job stays still
        the next ones back off (doubling, at most ``most`` apart), and progress resets the
        interval. The task wakes every ``after`` seconds to look (cheap); only a probe scans.
        A probe only sends fingerprints of ops not told yet, but it scans the job's blocked
        ops: hundreds of concurrent jobs that each move less often than once a second made
        this scan ~8% of their time.
        """
        base, wait = state.last_progress, after  # the next probe is due at base + wait
        while state.failure is None:
            # wake at least every 'after' seconds (a cheap check), so progress is seen in time
            await anyio.sleep(min(max(base + wait - anyio.current_time(), 0.01), after))
            now = anyio.current_time()
            if state.last_progress > base:  # it moved: due 'after' seconds after the last move
                base, wait = state.last_progress, after
            if now >= base + wait:
                self._executor.probe(state)
                base, wait = now, min(wait * 2, most)

    def stop(self, reason: str) -> None:
        """Abort every job running at this node, telling every peer ``reason``.

        Compute jobs fail here and at every peer with ``JobAborted(job, <this party>, reason)``;
        so do PSI and other jobs on the link. The node stays open (close it by leaving its
        ``async with`` block, which sends CLOSE); ``mpcactors run``, ``psi`` and ``node`` call
        this on SIGTERM and SIGINT with "stopped by signal ...".
        """
        jobs = self._executor.live_jobs()
        if jobs:
            self._log.warning("stopping every job", reason=reason, jobs=[j.id for j in jobs])
        for state in jobs:
            self._executor.fail_job(state, JobAborted(state.id, self.party, reason))
        self.link.abort_all(reason)

    async def psi(self, *, trace: str | os.PathLike[str] | TraceFile | None = None, **kwargs: Any) -> Any:
        """Run a PSI job with a peer over this node's link; see ``mpcactors.psi.run_psi``.

        ``trace``: write this party's trace of the job (its phases and frames) to this path
        when it ends (docs/TRACE.md).
        """
        from .psi import run_psi

        if trace is None:
            return await run_psi(self.link, **kwargs)
        return await self._tracing.psi(trace, run_psi, self.link, **kwargs)


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SecretTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_secret(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    return False


def _sole(error: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else ``error``: a program's
    own task group wraps what failed in it, a peer's abort too, and the job must judge and
    report that (a JobAborted naming the party and cause), not "ExceptionGroup: ... (1
    sub-exception)"."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def set_numpy_huge_pages(enabled: bool | str) -> None:
    """numpy's ``madvise(MADV_HUGEPAGE)`` for big arrays, for the whole process.

    ``[runtime] numpy_huge_pages`` (off by default; see RuntimeOptions) decides it when a node
    opens; ``"auto"`` leaves numpy's setting alone. numpy offers the switch as
    ``_set_madvise_hugepage`` (also the environment variable ``NUMPY_MADVISE_HUGEPAGE``); a
    numpy without it is left as it is.
    """
    if enabled == "auto":
        return
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(bool(enabled))


@contextlib.asynccontextmanager
async def open_node(
    config: ClusterConfig,
    party: str,
    *,
    network: Any = None,
    wan: WanProfile | None = None,
    tick_budget_s: float = 0.005,
    compute_threads: int | anyio.CapacityLimiter | None = None,
    memory_budget: int | MemoryBudget | None = None,
    **link_options: Any,
) -> AsyncIterator[Node]:
    """Start a party's runtime node; connect to every peer.

    Args:
        config: the cluster (``load_config(path)`` or ``ClusterConfig.local(...)``).
        party: this party's name in the config.
        network: None for TCP+TLS from the config; a ``mpcactors.link.MemoryNetwork`` shared by
            all nodes of one process for in-memory simulation.
        wan: WAN emulation profile (one-way latency, bandwidth, jitter) for every link.
        tick_budget_s: the executor yields to the event loop after this much inline work.
        compute_threads: worker threads for big op steps (default: the config's
            ``[runtime] compute_threads``, or the CPU count); 0: every step inline on the
            event loop (virtual-clock tests).
        memory_budget: bytes that op steps in worker threads may use at once (default: the
            config's ``[runtime] memory_budget_mb``, or half the physical memory), or a
            ``MemoryBudget`` shared with other nodes of the process.

    Raises:
        ConfigError: ``party`` is not in the config.
        PeerUnavailable: a peer could not be reached after the configured attempts.
    """
    if party not in config.party_names:
        raise ConfigError(f"party {party!r} is not in the cluster {list(config.party_names)}", key="parties")
    if network is None:  # TCP+TLS: our own certificate must be right before a peer sees it
        check_own_certificate(config, party)
    set_numpy_huge_pages(config.runtime.numpy_huge_pages)
    async with open_link(config, party, network=network, wan=wan, **link_options) as link:
        threads = compute_threads if compute_threads is not None else (config.runtime.compute_threads or None)
        executor = Executor(
            link,
            party,
            tick_budget_s=tick_budget_s,
            compute_threads=threads,
            memory_budget=memory_budget if memory_budget is not None else (config.runtime.memory_budget_mb << 20 or None),
            mailbox_bytes=config.link.job_window_bytes,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.serve)
            spares = Spares()
            node = Node(config, party, link, executor, spares)
            try:
                yield node
            except BaseException as exc:
                # cancelled or failed: the jobs still running end now and the peers hear why
                # (JOB_ABORT, then CLOSE as the link exits), instead of waiting for peer_timeout
                reason = "the node was stopped" if isinstance(exc, anyio.get_cancelled_exc_class()) else (
                    f"the node failed: {type(exc).__name__}: {exc}"
                )  # fmt: skip
                node.stop(reason)
                raise
            finally:
                spares.close()
                tg.cancel_scope.cancel()

