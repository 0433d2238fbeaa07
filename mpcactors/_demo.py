"""``mpcactors demo``: a local 3-party cluster as three real processes over TLS on loopback.

The parent process picks free loopback ports, writes a cluster file and certificates into a
temporary folder, starts ``mpcactors demo-party`` three times, and prints what the parties
report: link statistics, the results of concurrent secure compute jobs checked against
plaintext numpy, and concurrent PSI jobs checked against Python sets.

Each party runs, all at once over its one link per peer: 24 message jobs per peer pair, 4 secure
compute jobs (rep3), and 4 PSI jobs between alice and bob.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from ._config import load_config
from ._pytree import to_jsonable
from ._ticker import Ticker, is_terminal

__all__ = ["demo_inputs", "expected_results", "party_main", "run_demo"]

PARTIES = ("alice", "bob", "carol")
MESSAGE_JOBS = 24
MESSAGES = 50
COMPUTE_JOBS = 4
PSI_JOBS = 4


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound, read, released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_cluster(
    folder: Path,
    parties: tuple[str, ...] = PARTIES,
    protocol: str = "rep3",
    *,
    dealer: str | None = None,
    softspoken_k: int | None = None,
    matrix_triples: str | None = None,
    mul_triples: str | None = None,
    peer_timeout_s: float = 20,
    extra: str = "",
) -> Path:
    """A loopback cluster file with free ports and TLS paths inside ``folder``."""
    ports = free_ports(len(parties))
    lines = [f'cluster = "demo-{os.getpid()}"', f'protocol = "{protocol}"', "fxp_bits = 18"]
    if dealer:
        lines.append(f'dealer = "{dealer}"')
    if softspoken_k is not None:
        lines.append(f"softspoken_k = {softspoken_k}")
    if matrix_triples is not None:
        lines.append(f'matrix_triples = "{matrix_triples}"')
    if mul_triples is not None:
        lines.append(f'mul_triples = "{mul_triples}"')
    lines += ["", "[tls]", 'ca_cert = "certs/ca.pem"', 'ca_key = "certs/ca.key"', "", "[link]",
              "connect_retry_times = 40", "connect_retry_interval_ms = 100", "connect_timeout_s = 60",
              f"peer_timeout_s = {peer_timeout_s}", extra, ""]
    for name, port in zip(parties, ports, strict=True):
        lines += [f"[parties.{name}]", f'address = "127.0.0.1:{port}"', f'cert = "certs/{name}.pem"', f'key = "certs/{name}.key"', ""]
    path = folder / "cluster.toml"
    path.write_text("\n".join(lines))
    return path


# ---- deterministic demo data (the parent recomputes it to check the results) ------------------
def demo_inputs(job: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + job)
    return {
        "alice": rng.normal(0.0, 1.0, size=(64, 4)).round(3),  # features of 64 customers
        "bob": rng.normal(0.0, 1.0, size=(4,)).round(3),  # a model's weights
        "carol": rng.normal(0.0, 1.0, size=(64,)).round(3),  # per-customer thresholds
    }


def expected_results(job: int) -> dict[str, Any]:
    d = demo_inputs(job)
    score = d["alice"] @ d["bob"]
    return {"mean": float(np.mean(score)), "above": int(np.sum(score > d["carol"])), "sum_sq": float(np.sum(d["bob"] ** 2))}


def psi_ids(job: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(2000 + job)
    common = [f"id-{job}-{i}" for i in rng.choice(100_000, 300, replace=False)]
    a = common + [f"a-{job}-{i}" for i in range(700)]
    b = common + [f"b-{job}-{i}" for i in range(500)]
    return a, b


async def compute_program(job: Any, index: int) -> dict[str, Any]:
    d = demo_inputs(index)
    x = job.input("alice", lambda: d["alice"])
    w = job.input("bob", lambda: d["bob"])
    t = job.input("carol", lambda: d["carol"])
    score = x @ w
    above = (score > t).sum()
    out = await job.reveal({"mean": score.mean(), "above": above, "sum_sq": (w * w).sum()})
    return {k: float(v) if k != "above" else int(v) for k, v in out.items()}


# ---- one party ---------------------------------------------------------------------------------
def party_main(config_path: str, party: str, trace: str | None = None) -> int:
    from ._trace import TraceFile

    traces = TraceFile() if trace is not None else None
    report = anyio.run(_party, config_path, party, traces, backend="trio")
    if traces is not None and trace is not None:
        traces.write(trace)
    print(json.dumps(to_jsonable(report)))
    return 0


async def _party(config_path: str, party: str, traces: Any = None) -> dict[str, Any]:
    from ._runtime import open_node

    config = load_config(config_path)
    report: dict[str, Any] = {"party": party}
    t0 = time.perf_counter()
    async with open_node(config, party) as node:
        report["connect_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_messages, node, report)
            tg.start_soon(_compute, node, report, traces)
            tg.start_soon(_psi, node, report, traces)
        report["work_s"] = time.perf_counter() - t1
        stats = node.statistics()
        report["links"] = {
            peer: {"bytes_sent": s.bytes_sent, "frames_sent": s.frames_sent, "messages_sent": s.messages_sent, "rtt_ms": (s.rtt_s or 0.0) * 1000}
            for peer, s in stats.peers.items()
        }
    return report


async def _messages(node: Any, report: dict[str, Any]) -> None:
    """MESSAGE_JOBS jobs per peer, each sending MESSAGES numbered arrays both ways, in order."""
    ok = 0

    async def one(peer: str, j: int) -> None:
        nonlocal ok
        job = "-".join(sorted((node.party, peer))) + f"/msg{j}"
        ch = node.channel(peer, job, "data")
        async with anyio.create_task_group() as tg:
            async def send() -> None:
                for i in range(MESSAGES):
                    await ch.send({"i": i, "x": np.full(16, i, dtype=np.int64)})
            tg.start_soon(send)
            for i in range(MESSAGES):
                msg = await ch.receive()
                if msg["i"] != i or int(msg["x"][0]) != i:
                    raise RuntimeError(f"message {i} of {job} out of order")
        ok += 1

    async with anyio.create_task_group() as tg:
        for peer in node.peers:
            for j in range(MESSAGE_JOBS):
                tg.start_soon(one, peer, j)
    report["message_jobs_ok"] = ok


async def _compute(node: Any, report: dict[str, Any], traces: Any = None) -> None:
    results: dict[str, Any] = {}
    rounds: dict[str, int] = {}

    async def one(i: int) -> None:
        async def program(job: Any) -> Any:
            out = await compute_program(job, i)
            rounds[str(i)] = job.statistics().rounds
            return out

        results[str(i)] = await node.run(program, job=f"compute{i}", timeout=120, trace=traces)

    async with anyio.create_task_group() as tg:
        for i in range(COMPUTE_JOBS):
            tg.start_soon(one, i)
    report["compute"] = results
    report["compute_rounds"] = rounds


async def _psi(node: Any, report: dict[str, Any], traces: Any = None) -> None:
    if node.party not in ("alice", "bob"):
        return
    peer = "bob" if node.party == "alice" else "alice"
    sizes: dict[str, int] = {}

    async def one(i: int) -> None:
        a, b = psi_ids(i)
        mine = a if node.party == "alice" else b
        result = await node.psi(peer=peer, job=f"psi{i}", ids=mine, trace=traces)
        sizes[str(i)] = int(result.intersection)

    async with anyio.create_task_group() as tg:
        for i in range(PSI_JOBS):
            tg.start_soon(one, i)
    report["psi"] = sizes


# ---- the parent --------------------------------------------------------------------------------
def _merge_demo_traces(files: list[Path], out: Path) -> None:
    from ._trace_tools import merge_traces

    merged = merge_traces([json.loads(f.read_text()) for f in files], names=[f.stem for f in files])
    out.write_text(json.dumps(merged, separators=(",", ":")))


def _wait_parties(procs: dict[str, subprocess.Popen[str]], reports: dict[str, Any], deadline: float,
                  timeout: float, console: Any) -> bool:
    """Collect every party's report; True if one failed or ran past the deadline (said why)."""
    failed = False
    for p, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            console.print(f"[red]party {p} did not finish within {timeout:g} s[/]")
            return True
        if proc.returncode != 0:
            failed = True
            console.print(f"[red]party {p} exited with {proc.returncode}[/]\n{err.strip()[-2000:]}")
            continue
        reports[p] = json.loads(out.strip().splitlines()[-1])
    return failed


def run_demo(*, timeout: float = 300.0, log_level: str = "warning", progress_every: float = 5.0, trace: str | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from ._certs import generate_certs

    console = Console()
    with tempfile.TemporaryDirectory(prefix="mpcactors-demo-") as tmp:
        folder = Path(tmp)
        cfg = write_cluster(folder)
        generate_certs(load_config(cfg))
        console.print(f"[bold]mpcactors demo[/]: 3 parties over TLS on 127.0.0.1, cluster file {cfg}")
        t0 = time.perf_counter()
        procs = {
            p: subprocess.Popen(
                [sys.executable, "-m", "mpcactors", "demo-party", "--config", str(cfg), "--party", p, "--log-level", log_level]
                + (["--trace", str(folder / f"{p}.trace.json")] if trace is not None else []),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in PARTIES
        }
        reports: dict[str, Any] = {}
        failed = False
        deadline = time.monotonic() + timeout

        def line() -> str:
            running = [p for p, proc in procs.items() if proc.poll() is None]
            return f"mpcactors demo: {time.perf_counter() - t0:.0f} s, parties still running: {', '.join(running) or 'none'}"

        ticker: contextlib.AbstractContextManager[Any] = (
            Ticker(line, every_s=progress_every) if not is_terminal() else contextlib.nullcontext()
        )
        with ticker:
            failed = _wait_parties(procs, reports, deadline, timeout, console)
        if failed:
            return 1
        wall = time.perf_counter() - t0
        if trace is not None:
            _merge_demo_traces([folder / f"{p}.trace.json" for p in PARTIES], Path(trace))
            console.print(f"trace of every compute and PSI job, three parties merged: {trace} (open it in ui.perfetto.dev)")

    table = Table(title="Links (one TLS connection per pair; all jobs multiplexed)")
    for col in ("party", "peer", "bytes sent", "frames", "messages", "RTT ms"):
        table.add_column(col, justify="right" if col not in ("party", "peer") else "left")
    for p, rep in reports.items():
        for peer, s in rep["links"].items():
            table.add_row(p, peer, f"{s['bytes_sent']:,}", f"{s['frames_sent']:,}", f"{s['messages_sent']:,}", f"{s['rtt_ms']:.2f}")
    console.print(table)

    ok = True
    msg_ok = {p: r["message_jobs_ok"] for p, r in reports.items()}
    want_msgs = MESSAGE_JOBS * (len(PARTIES) - 1)
    console.print(f"message jobs delivered in order: {msg_ok} (want {want_msgs} each)")
    ok &= all(v == want_msgs for v in msg_ok.values())

    table = Table(title=f"{COMPUTE_JOBS} concurrent secure compute jobs (rep3): score = x@w, mean, count(score > t)")
    for col in ("job", "mean", "expected", "above", "expected", "rounds", "match"):
        table.add_column(col, justify="right")
    for i in range(COMPUTE_JOBS):
        got = reports["alice"]["compute"][str(i)]
        exp = expected_results(i)
        same = all(reports[p]["compute"][str(i)] == got for p in PARTIES)
        match = same and abs(got["mean"] - exp["mean"]) < 1e-2 and got["above"] == exp["above"] and abs(got["sum_sq"] - exp["sum_sq"]) < 1e-2
        ok &= match
        table.add_row(str(i), f"{got['mean']:.4f}", f"{exp['mean']:.4f}", str(got["above"]), str(exp["above"]), str(reports["alice"]["compute_rounds"][str(i)]), "yes" if match else "NO")
    console.print(table)

    table = Table(title=f"{PSI_JOBS} concurrent PSI jobs (ECDH, X25519) between alice and bob")
    for col in ("job", "alice |A∩B|", "bob |A∩B|", "expected", "match"):
        table.add_column(col, justify="right")
    for i in range(PSI_JOBS):
        a, b = psi_ids(i)
        exp_n = len(set(a) & set(b))
        ga, gb = reports["alice"]["psi"][str(i)], reports["bob"]["psi"][str(i)]
        match = ga == gb == exp_n
        ok &= match
        table.add_row(str(i), str(ga), str(gb), str(exp_n), "yes" if match else "NO")
    console.print(table)
    console.print(f"wall time {wall:.1f} s (process start, TLS connect, all jobs); " + ("[green]all results correct[/]" if ok else "[red]MISMATCH[/]"))
    return 0 if ok else 1
