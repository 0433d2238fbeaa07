"""``mpcactors.simulate``: every party of a program in one process, over in-memory links.

The nodes are the real runtime nodes (link sessions, framing, flow control, the executor); only
the transport is in memory, optionally behind the WAN emulator (``latency_ms``, one-way, and
``bandwidth_mbps``), so round counts, bytes and WAN wall times are those of a real deployment
minus TCP and TLS.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import trio

from ._config import ClusterConfig, WanProfile
from ._errors import ConfigError
from ._runtime import open_node
from ._trace import TraceFile
from .scheduler._budget import MemoryBudget, default_budget_bytes

__all__ = ["simulate", "simulate_async"]

_DEFAULT_PARTIES = {"rep3": ("alice", "bob", "carol"), "semi2k": ("alice", "bob")}


def simulate(
    program: Callable[..., Awaitable[Any]],
    parties: Sequence[str] | None = None,
    protocol: str = "rep3",
    **options: Any,
) -> dict[str, Any]:
    """Run ``program`` at every party in this process; return ``{party: result}``.

    Args:
        program: ``async def program(job)``.
        parties: party names (default: alice, bob, carol for rep3; alice, bob for semi2k).
        protocol: "rep3" or "semi2k".
        **options: ``fxp_bits`` (default 18), ``dealer`` (semi2k: a party name, "none" -- the
            default: the parties make their own correlations by OT, by pairs -- or the insecure
            "trusted-first-party"), ``softspoken_k`` (semi2k without a dealer: the OT
            extension's bits per small VOLE, 1, 2 (default), 4 or 8; 4 sends ~30 % fewer bytes
            per product for more CPU: for slow links), ``matrix_triples`` (semi2k without a
            dealer: "auto" (default: by lattice HE where TenSEAL is installed and cheaper), "ot"
            or "he"), ``mul_triples`` (the same for elementwise triples), ``latency_ms``
            (one-way), ``bandwidth_mbps``, ``jitter_ms``, ``timeout`` (seconds),
            ``idle_timeout`` (seconds without progress while ops wait for peers; default 600),
            ``job`` (id), ``args`` / ``kwargs`` for the program,
            ``compute_threads`` (worker threads for big op steps, shared by all parties of the
            simulation; default: the CPU count; 0: every step inline, for virtual-clock
            tests), ``memory_budget`` (bytes that op steps in worker threads may use at once,
            shared by all parties; default: half the physical memory), ``check_ranges`` (development: products of
            secret values that would leave the fixed-point range abort naming the op; see
            ``Node.run``), ``trace`` (a path: every party's trace of the job in one
            Chrome/Perfetto trace-event JSON file; docs/TRACE.md).

    Raises:
        ConfigError: unknown protocol or option.
        JobAborted / JobTimeout: the job failed (the first party's error is raised).
    """
    return trio.run(functools.partial(simulate_async, program, parties, protocol, **options))


async def simulate_async(
    program: Callable[..., Awaitable[Any]],
    parties: Sequence[str] | None = None,
    protocol: str = "rep3",
    *,
    fxp_bits: int = 18,
    dealer: str | None = None,
    softspoken_k: int = 2,
    matrix_triples: str = "auto",
    mul_triples: str = "auto",
    latency_ms: float = 0.0,
    bandwidth_mbps: float = 0.0,
    jitter_ms: float = 0.0,
    timeout: float | None = None,
    idle_timeout: float | None = 600.0,
    job: str = "sim",
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    compute_threads: int | None = None,
    memory_budget: int | MemoryBudget | None = None,
    check_ranges: bool = False,
    trace: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """:func:`simulate` inside a running event loop (trio or asyncio)."""
    from .link import MemoryNetwork

    if parties is None:
        if protocol not in _DEFAULT_PARTIES:
            raise ConfigError(f"unknown protocol {protocol!r}; expected one of {sorted(_DEFAULT_PARTIES)}", key="protocol")
        parties = _DEFAULT_PARTIES[protocol]
    names = list(parties)
    if len(set(names)) != len(names):
        raise ConfigError(f"party names must be distinct: {names}", key="parties")
    wan = WanProfile(latency_ms, bandwidth_mbps, jitter_ms)
    config = ClusterConfig.local(
        names, cluster_id="simulation", protocol=protocol, fxp_bits=fxp_bits, dealer=dealer, wan=wan, softspoken_k=softspoken_k,
        matrix_triples=matrix_triples, mul_triples=mul_triples,
    )
    network = MemoryNetwork()
    threads = compute_threads if compute_threads is not None else (os.cpu_count() or 1)
    if threads < 0:
        raise ConfigError(f"compute_threads must be at least 0, not {compute_threads!r}", key="compute_threads")
    # one pool for every party (they share the cores); 0: every step inline on the event loop
    limiter: int | anyio.CapacityLimiter = anyio.CapacityLimiter(threads) if threads else 0
    if isinstance(memory_budget, MemoryBudget):
        budget = memory_budget
    elif memory_budget is not None and memory_budget <= 0:
        raise ConfigError(f"memory_budget must be positive, not {memory_budget!r}", key="memory_budget")
    else:
        budget = MemoryBudget(memory_budget if memory_budget is not None else default_budget_bytes())
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}
    traces = TraceFile() if trace is not None else None

    async def party(name: str) -> None:
        try:
            async with open_node(
                config, name, network=network, wan=wan if wan.enabled else None, compute_threads=limiter,
                memory_budget=budget,
            ) as node:
                results[name] = await node.run(
                    program, *args, job=job, timeout=timeout, idle_timeout=idle_timeout,
                    check_ranges=check_ranges, trace=traces, **(kwargs or {}),
                )
        except Exception as exc:  # noqa: BLE001 - collected: every party's outcome is known before raising
            errors[name] = exc

    try:
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(party, name)
    finally:
        if traces is not None and trace is not None:
            traces.write(trace)
    if errors:
        first = next(errors[n] for n in names if n in errors)
        raise first
    return {n: results[n] for n in names}
