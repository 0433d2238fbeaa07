"""The ``mpcactors`` command line: demo, certs, run, psi, node.

Each sub-command parses its arguments, configures logging, and calls the library; errors that a
user can fix (a bad config, an unreachable peer, a failed job) print one clear line and exit
with status 2 (usage/config) or 1 (run-time failure), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ._config import load_config
from ._errors import ConfigError, MpcError
from ._log import configure_logging
from ._pytree import to_jsonable
from ._signals import stop_on_signals

__all__ = ["main"]


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="structlog level on stderr (default warning)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of console text")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mpcactors", description="Secure multi-party computation runtime.")
    parser.add_argument("--version", action="version", version=f"mpcactors {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,certs,run,psi,node,trace}")

    p = sub.add_parser("demo", help="run a local 3-party TLS cluster as 3 processes and show what it does")
    p.add_argument("--parties", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--progress-every", type=float, default=5.0,
                   help="off a terminal: print a progress line every this many seconds (default 5)")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="write the three parties' traces of the demo's jobs, merged, to PATH (docs/TRACE.md)")
    _add_logging(p)

    p = sub.add_parser("demo-party")  # internal: one party of `mpcactors demo`
    p.add_argument("--config", required=True, help="the demo's cluster file")
    p.add_argument("--party", required=True, help="this party's name")
    p.add_argument("--trace", default=None, help="this party's trace file")
    _add_logging(p)

    p = sub.add_parser("certs", help="make a cluster CA and one TLS certificate and key per party")
    p.add_argument("--config", required=True, help="cluster TOML file")
    p.add_argument("--out", default=None, help="folder (default: where the config's TLS paths point)")
    _add_logging(p)

    p = sub.add_parser("run", help="run a program at one party over TLS")
    p.add_argument("program", help="a Python file defining `async def main(job)`")
    p.add_argument("--config", required=True, help="cluster TOML file")
    p.add_argument("--party", required=True, help="this party's name in the config")
    p.add_argument("--function", default="main", help="the program function (default: main)")
    p.add_argument("--job", default=None, help="job id (the same at every party; default: derived)")
    p.add_argument("--protocol", default=None, help="override the config's protocol (rep3, semi2k)")
    p.add_argument("--timeout", type=float, default=None, help="abort the job after this many seconds")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="abort when ops wait for peers this long with no progress (default 600)")
    p.add_argument("--output", default=None, help="save the result (.npy for an array, else JSON)")
    p.add_argument("--check-ranges", action="store_true",
                   help="development: abort naming any product that would leave the fixed-point range (reveals values)")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="write this party's trace of the job to PATH (trace-event JSON; docs/TRACE.md)")
    _add_logging(p)

    p = sub.add_parser("psi", help="private set intersection with a peer (see --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("node", help="start a node, connect to every peer, report the links and exit")
    p.add_argument("--config", required=True, help="cluster TOML file")
    p.add_argument("--party", required=True, help="this party's name in the config")
    p.add_argument("--duration", type=float, default=2.0, help="seconds to stay connected (default 2)")
    _add_logging(p)

    from ._trace_cli import add_trace_parser

    add_trace_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "psi":
        from .psi import psi_cli

        return psi_cli(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=args.log_json)
    try:
        return _command(args)
    except BaseExceptionGroup as group:  # a task group (signals, the node) wrapped one error
        leaf = _only_error(group)
        if leaf is None:
            raise
        return _report_error(leaf)
    except (MpcError, KeyboardInterrupt) as exc:
        return _report_error(exc)


def _only_error(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one exception inside (nested) groups, or None if there are several."""
    errors = group.exceptions
    if len(errors) != 1:
        return None
    inner = errors[0]
    return _only_error(inner) if isinstance(inner, BaseExceptionGroup) else inner


def _report_error(exc: BaseException) -> int:
    """One clear line for an error a user can fix; re-raise anything else."""
    if isinstance(exc, ConfigError):
        print(f"mpcactors: config error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, MpcError):
        print(f"mpcactors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    raise exc


def _command(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(timeout=args.timeout, log_level=args.log_level, progress_every=args.progress_every, trace=args.trace)
    if args.command == "demo-party":
        from ._demo import party_main

        return party_main(args.config, args.party, args.trace)
    if args.command == "certs":
        return _certs(args)
    if args.command == "run":
        return _run(args)
    if args.command == "node":
        return _node(args)
    if args.command == "trace":
        from ._trace_cli import trace_command

        return trace_command(args)
    return 2


def _certs(args: argparse.Namespace) -> int:
    from ._certs import generate_certs

    config = load_config(args.config)
    written = generate_certs(config, Path(args.out) if args.out else None)
    for path in written:
        print(path)
    for party in config.parties:
        problem = _port_taken(party.host, party.port)
        if problem:
            print(
                f"mpcactors certs: warning: [parties.{party.name}] address {party.address} {problem}: "
                "pick another port for this cluster (README: picking ports)",
                file=sys.stderr,
            )
    return 0


def _port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on here (None if it can, or is not this host's)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is in use on this host (another cluster or program listens there)"
    return None  # free, or an address of another host (not ours to check)


def load_program(path: str, function: str) -> Any:
    """Import ``function`` from the Python file ``path``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"program file {path!r} not found")
    spec = importlib.util.spec_from_file_location(f"mpcactors_program_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    fn = getattr(module, function, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"{path!r} has no function {function!r}")
    return fn


def _run(args: argparse.Namespace) -> int:
    from ._runtime import open_node

    config = load_config(args.config)
    config.party(args.party)
    program = load_program(args.program, args.function)
    timeout = args.timeout
    if timeout is not None:
        if not timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout!r}")
        # --timeout bounds everything, connecting to the peers included
        link = dataclasses.replace(config.link, connect_timeout_s=min(config.link.connect_timeout_s, timeout))
        config = dataclasses.replace(config, link=link)

    async def go() -> Any:
        start = trio.current_time()
        async with stop_on_signals() as stopped:
            box["stopped"] = stopped
            async with open_node(config, args.party) as node:
                stopped.stop = node.stop
                left = None if timeout is None else max(timeout - (trio.current_time() - start), 0.001)
                try:
                    return await node.run(
                        program, job=args.job, timeout=left, idle_timeout=args.idle_timeout, protocol=args.protocol,
                        check_ranges=args.check_ranges, trace=args.trace,
                    )
                except MpcError as exc:
                    box["error"] = exc  # leave the node in order: JOB_ABORT and CLOSE reach the peers
        return None

    box: dict[str, Any] = {}
    result = trio.run(go)
    if _stopped(box):
        return int(box["stopped"].exit_code)
    if "error" in box:
        raise box["error"]
    if args.output:
        save_result(result, Path(args.output))
    else:
        print(format_result(result))
    return 0


def _stopped(box: dict[str, Any]) -> bool:
    """True (and say so) if a signal stopped the command."""
    stopped = box.get("stopped")
    if stopped is None or stopped.signal is None:
        return False
    error = box.get("error")
    detail = f": {type(error).__name__}: {error}" if error is not None else ""
    print(f"mpcactors: {stopped.reason}{detail}", file=sys.stderr)
    return True


def format_result(result: Any) -> str:
    if isinstance(result, np.ndarray):
        with np.printoptions(precision=6, suppress=True, threshold=50):
            return repr(result)
    return json.dumps(to_jsonable(result))


def save_result(result: Any, path: Path) -> None:
    if path.suffix == ".npy" and isinstance(result, np.ndarray):
        np.save(path, result)
    else:
        path.write_text(json.dumps(to_jsonable(result)) + "\n")


def _node(args: argparse.Namespace) -> int:
    from ._runtime import open_node

    config = load_config(args.config)
    config.party(args.party)

    async def go() -> Any:
        async with stop_on_signals() as stopped:
            box["stopped"] = stopped
            async with open_node(config, args.party) as node:
                with trio.CancelScope() as waiting:

                    def stop(reason: str) -> None:
                        node.stop(reason)
                        waiting.cancel()

                    stopped.stop = stop
                    first = node.statistics()  # every link is open once open_node returns
                    await trio.sleep(args.duration)
                return first, node.statistics()
        return None

    box: dict[str, Any] = {}
    result = trio.run(go)
    if _stopped(box):
        return int(box["stopped"].exit_code)
    first, stats = result
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.party}: links after {args.duration:g} s")
    for col in ("peer", "state", "RTT ms", "frames sent", "bytes sent", "reconnects"):
        table.add_column(col)
    for peer, s in stats.peers.items():
        rtt = f"{s.rtt_s * 1000:.2f}" if s.rtt_s is not None else "-"
        state = s.state
        if state not in ("open", "failed") and first.peers[peer].state == "open":
            state = "open, then the peer left"  # its --duration ended first: a healthy link
        table.add_row(peer, state, rtt, str(s.frames_sent), str(s.bytes_sent), str(s.reconnects))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
