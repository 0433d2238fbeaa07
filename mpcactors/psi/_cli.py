"""``mpcactors psi``: PSI jobs from the command line, all over one node (one link per peer).

Every ``--input``/``--output`` pair is one job; all run concurrently over one TLS link, each with
its own line on a rich progress bar (stderr). Job ids: ``--job ID`` once for one pair, once as a
prefix (``ID.0``, ``ID.1``, ...) or once per pair; default ``psi`` / ``psi.<i>``. Both parties
must give their pairs in the same order. A job that fails prints its error and does not stop the
others; the exit status is 0 when every job succeeded, 1 when one failed, 2 for bad usage or
config. Outputs appear only complete (temp file, renamed at the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from .._config import load_config
from .._errors import ConfigError, MpcError
from .._log import configure_logging
from .._signals import StopSignal, stop_on_signals
from .._trace import NodeTracing, TraceFile
from ._api import DEFAULT_CHUNK_SIZE, PsiResult, run_psi
from ._progress import RichPsiProgress
from ._protocol import JOINS, PROTOCOLS

__all__ = ["build_parser", "psi_cli"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mpcactors psi",
        description="Private set intersection with a peer (KKRT OT-extension PSI by default, or "
        "ECDH); every --input/--output pair is a concurrent job over one link.",
    )
    p.add_argument("--config", required=True, help="cluster TOML file")
    p.add_argument("--party", required=True, help="this party's name in the config")
    p.add_argument("--peer", default=None, help="the other party (default: the only other one)")
    p.add_argument("--input", action="append", required=True, help="CSV with a header (repeatable)")
    p.add_argument("--output", action="append", required=True, help="output CSV (one per --input)")
    p.add_argument("--key", action="append", required=True,
                   help="key column(s) COL[,COL2]: once for all inputs or once per input")
    p.add_argument("--receiver", default=None, help="the party that gets the result (default: both)")
    p.add_argument("--join", default="inner", choices=JOINS,
                   help="which rows each output keeps (default inner; docs/PSI.md)")
    p.add_argument("--left", default=None, help="the party whose table is the left one")
    p.add_argument("--job", action="append", default=None,
                   help="job id: once (a prefix when there are several inputs) or once per input")
    p.add_argument("--checkpoint-dir", default=None, help="keep resumable state here")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                   help=f"ECDH: ids per streamed chunk (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--protocol", default=PROTOCOLS[0], choices=PROTOCOLS,
                   help="kkrt: OT-extension PSI (KKRT16, the default; much faster); ecdh: X25519 "
                   "Diffie-Hellman PSI. Both parties must give the same")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: CPUs; ECDH curve work, KKRT shards); 0: threads")
    p.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds to wait for the peer to start each job")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--progress-every", type=float, default=5.0,
                   help="off a terminal: print a progress line every this many seconds (default 5)")
    p.add_argument("--summary-json", action="store_true", help="print one JSON line per job")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="write this party's trace of every job to PATH (trace-event JSON; docs/TRACE.md)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="structlog level on stderr (default warning)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of console text")
    return p


@dataclasses.dataclass(frozen=True, slots=True)
class _JobSpec:
    job: str
    input: str
    output: str
    keys: str


def _plan(args: argparse.Namespace) -> list[_JobSpec]:
    n = len(args.input)
    if len(args.output) != n:
        raise ConfigError(f"give one --output per --input ({n} inputs, {len(args.output)} outputs)")
    if len(args.key) not in (1, n):
        raise ConfigError(f"give --key once or once per --input ({n} inputs, {len(args.key)} keys)")
    keys = args.key * n if len(args.key) == 1 else args.key
    jobs = args.job or ["psi"]
    if len(jobs) == n:
        ids = jobs
    elif len(jobs) == 1:
        ids = jobs if n == 1 else [f"{jobs[0]}.{i}" for i in range(n)]
    else:
        raise ConfigError(f"give --job once or once per --input ({n} inputs, {len(jobs)} ids)")
    if len(set(ids)) != n:
        raise ConfigError(f"job ids must be distinct: {ids}")
    if len(set(args.output)) != n:
        raise ConfigError("every job needs its own --output file")
    return [_JobSpec(j, i, o, k) for j, i, o, k in zip(ids, args.input, args.output, keys)]


def psi_cli(argv: list[str]) -> int:
    """Run ``mpcactors psi`` with ``argv`` (the arguments after ``psi``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    configure_logging(args.log_level, json=args.log_json)
    try:
        config = load_config(args.config)
        config.party(args.party)
        peer = args.peer
        others = [p for p in config.party_names if p != args.party]
        if peer is None:
            if len(others) != 1:
                raise ConfigError(f"the cluster has several other parties {others}: give --peer")
            peer = others[0]
        elif peer not in others:
            raise ConfigError(f"--peer {peer!r} is not another party of the cluster: {others}")
        plan = _plan(args)
    except ConfigError as exc:
        print(f"mpcactors psi: error: {exc}", file=sys.stderr)
        return 2
    stopped: list[StopSignal] = []
    try:
        results = anyio.run(_run, config, args, peer, plan, stopped, backend="trio")
    except (MpcError, BaseExceptionGroup) as exc:
        errors = _leaves(exc)
        if not all(isinstance(e, MpcError) for e in errors):
            raise
        for e in errors:
            print(f"mpcactors psi: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if stopped and stopped[0].signal is not None:  # SIGTERM/SIGINT: the jobs were aborted everywhere
        print(f"mpcactors psi: {stopped[0].reason}", file=sys.stderr)
        return stopped[0].exit_code
    _report(args, plan, results)
    return 0 if all(isinstance(r, PsiResult) for r in results.values()) else 1


async def _run(config: Any, args: argparse.Namespace, peer: str, plan: list[_JobSpec],
               stopped: list[StopSignal]) -> dict[str, PsiResult | MpcError]:
    async with stop_on_signals() as stop:
        stopped.append(stop)
        return await _run_jobs(config, args, peer, plan, stop)
    return {spec.job: MpcError(stop.reason or "stopped") for spec in plan}  # cancelled by a 2nd signal


async def _run_jobs(config: Any, args: argparse.Namespace, peer: str, plan: list[_JobSpec],
                    stop: StopSignal) -> dict[str, PsiResult | MpcError]:
    from rich.console import Console

    from .._certs import check_own_certificate
    from ..link import open_node

    results: dict[str, PsiResult | MpcError] = {}
    console = Console(stderr=True)
    check_own_certificate(config, args.party)  # a wrong certificate of ours fails now, saying why
    traces = TraceFile() if args.trace is not None else None
    async with open_node(config, args.party) as node:
        tracing = NodeTracing(args.party, node)
        stop.stop = node.abort_all  # a signal aborts every PSI job here and at the peer
        with RichPsiProgress(console, disable=args.no_progress, every_s=args.progress_every) as bar:
            for spec in plan:
                bar.add_job(spec.job)

            async def one(spec: _JobSpec) -> None:
                try:
                    results[spec.job] = await (run_psi if traces is None else functools.partial(tracing.psi, traces, run_psi))(
                        node, peer=peer, job=spec.job, input=spec.input, keys=spec.keys,
                        output=spec.output, receiver=args.receiver, join=args.join,
                        progress=bar.callback, checkpoint_dir=args.checkpoint_dir,
                        chunk_size=args.chunk_size, workers=args.workers, left=args.left,
                        start_timeout=args.start_timeout, protocol=args.protocol,
                    )
                except MpcError as exc:
                    results[spec.job] = exc

            async with anyio.create_task_group() as tg:
                for spec in plan:
                    tg.start_soon(one, spec)
    if traces is not None:
        try:
            traces.write(args.trace)
        except OSError as exc:
            print(f"mpcactors psi: trace not written: {exc}", file=sys.stderr)
    return results


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _report(args: argparse.Namespace, plan: list[_JobSpec],
            results: dict[str, PsiResult | MpcError]) -> None:
    if args.summary_json:
        for spec in plan:
            r = results[spec.job]
            if isinstance(r, PsiResult):
                d = {k: v for k, v in dataclasses.asdict(r).items() if k != "ids"}
                d["output"] = str(r.output) if r.output else None
                d["ok"] = True
            else:
                d = {"job": spec.job, "ok": False, "error": f"{type(r).__name__}: {r}"}
            print(json.dumps(d), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PSI at {args.party}")
    for col in ("job", "input", "output", "output rows", "keys in common", "resumed", "seconds", "status"):
        table.add_column(col, overflow="fold")
    for spec in plan:
        r = results[spec.job]
        if isinstance(r, PsiResult):
            out = str(r.output) if r.output else "(no result here)"
            table.add_row(spec.job, spec.input, out, str(r.rows if r.rows is not None else "-"),
                          str(r.intersection if r.intersection is not None else "-"),
                          "yes" if r.resumed else "no", f"{r.seconds:.2f}", "ok")
        else:
            table.add_row(spec.job, spec.input, Path(spec.output).name, "-", "-", "-", "-",
                          f"{type(r).__name__}: {r}")
    # off a terminal nothing is cut to 80 columns: paths and errors are printed whole
    Console(width=None if sys.stdout.isatty() else 100_000).print(table)
    for spec in plan:
        r = results[spec.job]
        if not isinstance(r, PsiResult):  # the whole error on one line, whatever the table did
            print(f"mpcactors psi: job {spec.job!r} failed: {type(r).__name__}: {r}", file=sys.stderr)
