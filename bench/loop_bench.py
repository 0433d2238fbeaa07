"""How long the host's event loop is held while secure jobs run on it (DESIGN.md section 9).

A 10 ms ticker runs beside ``simulate_async`` on the same loop (asyncio or trio); its worst
lateness is how long library code held the loop. Workloads:

- ``matmul+lt``: rep3, three 1024x1024 matmuls and 10^6 comparisons (the issue's job);
- ``mul1e7``: rep3, one elementwise product of 10^7 values;
- ``matmul2048``: rep3, one 2048x2048 matmul.

Also two concurrent compute jobs (1024 matmul + 10^6 comparisons each) against the same two one
after another, in one run (the ratio is what counts on a noisy 2-core machine).

Also, with ``--small N``, N small jobs (an 8-element product, a comparison, a reveal) at three
in-memory nodes all at once against one after another, at each RTT of ``--small-rtt`` (default
40 ms; 0 is no WAN emulation).

Usage: python bench/loop_bench.py [--backend asyncio|trio|both] [--workloads ...] [--no-pair]
    [--small N] [--small-rtt 0 40] [--json [PATH]]

``--json`` also writes the figures as JSON (default bench/results/loop_bench.json), which
bench/plot.py draws.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

import mpcactors as mpc

JSON_DEFAULT = Path(__file__).resolve().parent / "results" / "loop_bench.json"


def _workload(name: str) -> Any:
    rng = np.random.default_rng(1)
    if name == "matmul+lt":
        a = rng.normal(size=(1024, 1024))
        b = rng.normal(size=(1024, 1024))
        u = rng.normal(size=10**6)
        v = rng.normal(size=10**6)

        async def prog(job: Any) -> Any:
            x = job.input("alice", a)
            y = job.input("bob", b)
            z = x @ y
            z = z @ y
            z = z @ y
            c = job.input("alice", u) < job.input("bob", v)
            s = await job.reveal([z[0, :4], c.sum()])
            return s

        return prog
    if name == "mul1e7":
        u = rng.normal(size=10**7)

        async def prog(job: Any) -> Any:
            x = job.input("alice", u)
            y = job.input("bob", u)
            return await job.reveal((x * y)[:4])

        return prog
    if name == "matmul2048":
        a = rng.normal(size=(2048, 2048))

        async def prog(job: Any) -> Any:
            x = job.input("alice", a)
            y = job.input("bob", a)
            return await job.reveal((x @ y)[0, :4])

        return prog
    raise SystemExit(f"unknown workload {name!r}")


async def lateness(prog: Any) -> tuple[float, float]:
    """(worst ticker lateness in s, job wall time in s)."""
    worst = 0.0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t = time.perf_counter()
            await anyio.sleep(0.010)
            worst = max(worst, time.perf_counter() - t - 0.010)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await mpc.simulate_async(prog, ["alice", "bob", "carol"], "rep3", timeout=600)
        done.set()
    return worst, time.perf_counter() - t0


async def pair(prog: Any) -> tuple[float, float, float, float]:
    """(wall of two jobs one after another, wall of the same two at once, and the process CPU
    seconds of each, every thread included) in one run."""
    t0, c0 = time.perf_counter(), time.process_time()
    await mpc.simulate_async(prog, ["alice", "bob", "carol"], "rep3", job="one")
    await mpc.simulate_async(prog, ["alice", "bob", "carol"], "rep3", job="two")
    serial, serial_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: mpc.simulate_async(prog, ["alice", "bob", "carol"], "rep3", job="a"))
        tg.start_soon(lambda: mpc.simulate_async(prog, ["alice", "bob", "carol"], "rep3", job="b"))
    return serial, time.perf_counter() - t0, serial_cpu, time.process_time() - c0


async def many_small(n: int, latency_ms: float, concurrent: bool) -> float:
    """Wall time of ``n`` small jobs (8-element product, comparison, reveal) at 3 in-memory
    nodes with ``latency_ms`` one-way, all at once or one after another."""
    from mpcactors._config import ClusterConfig, WanProfile
    from mpcactors.link import MemoryNetwork

    parties = ["alice", "bob", "carol"]
    config = ClusterConfig.local(parties, protocol="rep3")
    wan = WanProfile(latency_ms, 0.0, 0.0) if latency_ms > 0 else None
    network = MemoryNetwork()
    u = np.arange(8.0)

    async def prog(job: Any) -> Any:
        x = job.input("alice", u)
        y = job.input("bob", u)
        return await job.reveal([x * y, x < y])

    async def node_main(name: str) -> None:
        async with mpc.open_node(config, name, network=network, wan=wan) as node:
            if concurrent:
                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(lambda i=i: node.run(prog, job=f"small-{i}"))
            else:
                for i in range(n):
                    await node.run(prog, job=f"small-{i}")

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for p in parties:
            tg.start_soon(node_main, p)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="both", choices=["asyncio", "trio", "both"])
    ap.add_argument("--workloads", default="matmul+lt,mul1e7,matmul2048")
    ap.add_argument("--no-pair", action="store_true", help="skip the two-jobs-at-once row")
    ap.add_argument("--small", type=int, default=0, help="also N small jobs at 40 ms RTT, at once vs in turn")
    ap.add_argument("--small-rtt", type=float, nargs="+", default=[40.0], metavar="MS",
                    help="RTTs for the small jobs (default 40; 0 = no WAN emulation)")
    ap.add_argument("--json", nargs="?", const=str(JSON_DEFAULT), default=None, metavar="PATH",
                    help="also write the figures as JSON (default path bench/results/loop_bench.json)")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    out: dict[str, Any] = {"lateness": [], "pair": None, "small": []}
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    flags = " ".join(f for f in ("avx512ifma", "avx512f", "avx2") if f in cpuinfo)
    print(f"# loop_bench  {time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}  "
          f"python {sys.version.split()[0]}  cpu flags: {flags}")
    print(f"{'backend':8} {'workload':12} {'worst lateness ms':>18} {'job s':>8}")
    for backend in backends:
        for w in args.workloads.split(","):
            try:
                worst, wall = anyio.run(lateness, _workload(w), backend=backend)
            except Exception as exc:  # noqa: BLE001 -- a job that fails is a result too (old trees)
                err = exc
                while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
                    err = err.exceptions[0]
                print(f"{backend:8} {w:12} failed: {type(err).__name__}: {err}", flush=True)
                out["lateness"].append({"backend": backend, "workload": w,
                                        "failed": f"{type(err).__name__}: {err}",
                                        "load_avg": os.getloadavg()[0]})
                continue
            print(f"{backend:8} {w:12} {worst * 1000:18.1f} {wall:8.2f}", flush=True)
            out["lateness"].append({"backend": backend, "workload": w, "worst_lateness_ms": worst * 1000,
                                    "job_s": wall, "load_avg": os.getloadavg()[0]})
    if not args.no_pair:
        serial, together, serial_cpu, together_cpu = anyio.run(pair, _workload("matmul+lt"), backend="trio")
        cores = os.cpu_count() or 1
        # At once, the same CPU seconds cannot take less wall time than CPU / cores: with jobs
        # that already keep the cores busy in turn, that bounds the ratio from below.
        bound = serial_cpu / cores / serial
        print(f"two jobs (1024 matmul x3 + 1e6 lt): one after another {serial:.2f} s "
              f"({serial_cpu:.2f} CPU s, {serial_cpu / serial:.2f} cores busy), at once {together:.2f} s "
              f"({together_cpu:.2f} CPU s, {together_cpu / together:.2f} cores busy), ratio {together / serial:.2f} "
              f"(lower bound on {cores} cores: CPU / cores / serial wall = {bound:.2f})")
        out["pair"] = {"workload": "matmul+lt", "jobs": 2, "rtt_ms": 0.0, "serial_s": serial,
                       "concurrent_s": together, "serial_cpu_s": serial_cpu, "concurrent_cpu_s": together_cpu,
                       "ratio_lower_bound": bound, "load_avg": os.getloadavg()[0]}
    for rtt in args.small_rtt if args.small else []:
        at_once = anyio.run(many_small, args.small, rtt / 2, True, backend="trio")
        k = min(args.small, 50)
        in_turn = anyio.run(many_small, k, rtt / 2, False, backend="trio")
        print(f"{args.small} small jobs at {rtt:g} ms RTT: at once {at_once:.2f} s; one after another "
              f"{in_turn:.2f} s for {k} (x{args.small / k:g} = {in_turn * args.small / k:.1f} s)")
        out["small"].append({"jobs": args.small, "rtt_ms": rtt, "concurrent_s": at_once,
                             "serial_measured_jobs": k, "serial_measured_s": in_turn,
                             "serial_s": in_turn * args.small / k, "load_avg": os.getloadavg()[0]})
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "bench": "loop_bench", "started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                       f"python {sys.version.split()[0]}, cpu flags: {flags}",
            "args": vars(args), **out}, indent=1) + "\n")
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
