"""PSI benchmark: mpcactors PSI (KKRT OT-extension, the default, and ECDH) between two processes
over TCP+TLS on 127.0.0.1, beside SecretFlow SPU's RR22 and ECDH-PSI (CURVE_25519) on the same
data in the same run when spu is installed.

    .venv/bin/python bench/psi_bench.py [--logn 16 18 20] [--protocols kkrt ecdh]
        [--spu-protocols RR22 ECDH] [--ecdh-max-logn 20] [--spu-max-logn 20] [--mem-logn 24]
        [--jobs 1 4 16] [--conc-logn 11] [--wan-logn 12] [--spu-python PY] [--skip-wan] [--record]
        [--json [PATH]]

Parts:
1. Size: 2^logn random 16-byte hex ids per side (half of them common), one job, result to both
   parties, inner join on column ``id``; the output is checked against the Python set
   intersection. Time = the slower party's ``run_psi`` (SPU: ``psi_execute``), from reading the
   CSV to the output CSV written; link set-up is excluded on both sides. Per system: ids/s per
   side, wire bytes sent per party (ours: the link's counters; SPU: not reported), peak memory
   per party: the largest sum over the party's process tree (worker processes included) of
   proportional set sizes (PSS, /proc/PID/smaps_rollup, so pages shared by forked workers count
   once), sampled every 50 ms. CPU seconds per party (user + sys of its process tree, worker
   processes included; load inflates them less than wall times): of the timed run (ours: measured
   by the party around ``run_psi``) and of the whole process (start-up, link and warm-up
   included; SPU: this only), the latter from the same 50 ms samples.
2. Memory: 2^mem-logn ids per side with KKRT, the same measurements (the 2 GB target).
3. Concurrency: k = 1, 4, 16 jobs of 2^conc-logn ids each between the same two processes over
   one link: one after another vs all at once; on the loopback and with the in-process WAN
   emulator (40 ms RTT, 100 Mbit/s), with the model time ``bytes / bandwidth + rounds x RTT``
   beside the measured one.

Both parties share this machine's cores, as SPU's two processes do. ``--record`` appends the
tables to bench/RESULTS.md under "## PSI"; ``--json`` writes the same figures as JSON (default
bench/results/psi_bench.json), which bench/plot.py draws. SPU: pass ``--spu-python`` (a Python with
``spu==0.9.5``) or run with one; otherwise the table says "spu not installed".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from _cluster import two_party_cluster

from mpcactors._demo import free_ports

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADING = "## PSI"
JSON_DEFAULT = HERE / "results" / "psi_bench.json"


# ---- set-up --------------------------------------------------------------------------------


def make_cluster(folder: Path) -> Path:
    """A two-party TLS cluster file (free loopback ports) with certificates generated."""
    return two_party_cluster(folder, "psibench")


def gen_data(folder: Path, logn: int, tag: str) -> tuple[Path, Path, set[str]]:
    """Two CSVs (header ``id``) of 2^logn random 16-byte hex ids, half of them common."""
    n = 1 << logn
    half = n // 2
    common = [secrets.token_hex(16) for _ in range(half)]
    a = common + [secrets.token_hex(16) for _ in range(n - half)]
    b = common + [secrets.token_hex(16) for _ in range(n - half)]
    rng = __import__("random").Random(logn)
    rng.shuffle(a)
    rng.shuffle(b)
    pa, pb = folder / f"{tag}_a.csv", folder / f"{tag}_b.csv"
    pa.write_text("id\n" + "\n".join(a) + "\n")
    pb.write_text("id\n" + "\n".join(b) + "\n")
    return pa, pb, set(common)


def calibrate() -> float:
    """Single-core X25519 operations per second through ``cryptography`` (our EC primitive)."""
    from mpcactors.psi._ecdh import blind_batch

    pts = os.urandom(32 * 3000)
    best = 0.0
    for _ in range(2):
        t = time.perf_counter()
        blind_batch(os.urandom(32), pts)
        best = max(best, 3000 / (time.perf_counter() - t))
    return best


# A sample reads /proc/<pid>/smaps_rollup of every process in the trees: ~1 ms per process, ~10
# ms per tick for KKRT's 8 processes. Every 50 ms that is ~20% of one of the 2 cores, taken from
# the parties being timed, more from us (more processes) than from SPU. The timed size runs
# sample every 0.5 s (~2%); the memory part keeps 50 ms, where the peak is the figure.
MEMORY_PERIOD = 0.05
TIMED_PERIOD = 0.5


class TreeMemory:
    """Peak total PSS of the process trees rooted at ``pids``, sampled in a thread; also each
    tree's CPU seconds (user + sys, reaped children included) at the last sample."""

    def __init__(self, pids: dict[str, int], period: float = MEMORY_PERIOD) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.cpu = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            children = _children()
            for name, root in self.pids.items():
                total, cpu, stack = 0, 0.0, [root]
                while stack:
                    pid = stack.pop()
                    stack += children.get(pid, [])
                    total += _pss(pid)
                    cpu += _cpu_seconds(pid)
                self.peak[name] = max(self.peak[name], total)
                self.cpu[name] = max(self.cpu[name], cpu)
            self._stop.wait(period)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its reaped children (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after the ")": state is field 3, so utime..cstime (fields 14-17) are [11:15]
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _children() -> dict[int, list[int]]:
    """Parent pid -> pids of its live children, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    return children


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of the live process tree under ``root`` (reaped descendants included)."""
    children = _children()
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        total += _cpu_seconds(pid)
    return total


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def cpu_flags() -> str:
    """The /proc/cpuinfo flags that matter here (AES-NI, AVX2, AVX-512, IFMA, SHA)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                want = ["aes", "pclmulqdq", "avx2", "avx512f", "avx512bw", "avx512ifma", "vaes",
                        "vpclmulqdq", "sha_ni"]
                return " ".join(f for f in want if f in have)
    except OSError:
        pass
    return "unknown"


# ---- our parties ---------------------------------------------------------------------------


def run_ours(folder: Path, jobs: dict[str, list[dict[str, str]]], mode: str,
             wan: tuple[float, float] | None, protocol: str = "kkrt",
             timeout: float = 3600, period: float = MEMORY_PERIOD) -> dict[str, Any]:
    """Start alice and bob (this file in party mode); returns {party: report} (with "peak":
    the party's peak memory, worker processes included)."""
    cfg = make_cluster(folder)
    procs = {}
    for party in ("alice", "bob"):
        spec = {"config": str(cfg), "party": party, "peer": "bob" if party == "alice" else "alice",
                "jobs": jobs[party], "mode": mode, "wan": wan, "protocol": protocol}
        spec_path = folder / f"spec_{party}.json"
        spec_path.write_text(json.dumps(spec))
        procs[party] = subprocess.Popen([sys.executable, str(Path(__file__)), "_party", str(spec_path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=ROOT)
    out = {}
    try:
        with TreeMemory({party: p.pid for party, p in procs.items()}, period) as mem:
            for party, p in procs.items():
                o, e = p.communicate(timeout=timeout)
                if p.returncode != 0:
                    raise RuntimeError(f"{party} failed ({p.returncode}): {e[-3000:]}")
                out[party] = json.loads(o.strip().splitlines()[-1])
        for party, report in out.items():
            report["peak"] = mem.peak[party]
            report["cpu_process"] = mem.cpu[party]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    return out


def party_main(spec_path: str) -> int:
    import anyio

    from mpcactors._config import WanProfile, load_config
    from mpcactors._log import configure_logging
    from mpcactors.link import open_node
    from mpcactors.psi import PsiProgress, run_psi

    configure_logging("error")
    spec = json.loads(Path(spec_path).read_text())
    config = load_config(spec["config"])
    wan = WanProfile(latency_ms=spec["wan"][0], bandwidth_mbps=spec["wan"][1]) if spec["wan"] else None
    peer = spec["peer"]
    protocol = spec.get("protocol", "kkrt")

    async def one(node: Any, job: dict[str, str], prefix: str) -> dict[str, Any]:
        marks: dict[str, float] = {}

        def progress(ev: PsiProgress) -> None:
            marks.setdefault(ev.phase, ev.elapsed)

        cpu = tree_cpu_seconds(os.getpid())
        t = time.perf_counter()
        r = await run_psi(node, peer=peer, job=prefix + job["job"], input=job["input"], keys="id",
                          output=f"{job['output']}.{prefix[0]}", progress=progress,
                          protocol=protocol)
        seconds = time.perf_counter() - t
        return {"job": job["job"], "seconds": seconds, "phases": marks,
                "cpu": tree_cpu_seconds(os.getpid()) - cpu,
                "ec_ops": r.ec_ops, "rows": r.rows, "intersection": r.intersection,
                "shards": r.shards}

    async def main() -> dict[str, Any]:
        report: dict[str, Any] = {"party": spec["party"], "runs": {}}
        async with open_node(config, spec["party"], wan=wan) as node:
            # warm-up: start the worker processes (CSV preparation, EC) before anything is
            # timed, as a long-running node has them (SPU's times exclude its link set-up)
            warm = Path(spec_path).with_suffix(".warm.csv")
            warm.write_text("id\n" + "".join(f"w{i}\n" for i in range(64)))
            await run_psi(node, peer=peer, job="warm-up", input=warm, keys="id",
                          chunk_size=16, protocol=protocol)
            if protocol == "kkrt":
                # and the KKRT shards' fork server (a job of 64 ids runs its shard in a thread;
                # a node's first big job starts it, overlapped with its preparation)
                from mpcactors.psi._shards import start_shard_server

                await anyio.to_thread.run_sync(start_shard_server)
            modes = ["sequential", "concurrent"] if spec["mode"] == "both" else [spec["mode"]]
            for mode in modes:
                before = node.statistics().peers[peer]
                t = time.perf_counter()
                results: list[dict[str, Any]] = []
                if mode == "sequential":
                    for job in spec["jobs"]:
                        results.append(await one(node, job, "s."))
                else:
                    async def run(job: dict[str, str], out: list[dict[str, Any]]) -> None:
                        out.append(await one(node, job, "c."))

                    async with anyio.create_task_group() as tg:
                        for job in spec["jobs"]:
                            tg.start_soon(run, job, results)
                after = node.statistics().peers[peer]
                report["runs"][mode] = {
                    "wall": time.perf_counter() - t, "jobs": results,
                    "bytes_sent": after.bytes_sent - before.bytes_sent,
                }
        return report

    print(json.dumps(anyio.run(main, backend="trio")), flush=True)
    return 0


def read_ids(path: str) -> set[str]:
    with open(path) as f:
        return {line.strip() for line in list(f)[1:] if line.strip()}


# ---- SPU -----------------------------------------------------------------------------------


def spu_available(python: str) -> bool:
    try:
        r = subprocess.run([python, "-c", "import spu.psi, spu.libspu.link"], capture_output=True,
                           timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run_spu(python: str, folder: Path, a: Path, b: Path, protocol: str = "ECDH",
            timeout: float = 1200, period: float = TIMED_PERIOD) -> dict[str, Any]:
    p0, p1 = free_ports(2)
    procs = []
    for rank, inp in ((0, a), (1, b)):
        procs.append(subprocess.Popen(
            [python, str(HERE / "_spu_psi_party.py"), "--rank", str(rank), "--p0", str(p0),
             "--p1", str(p1), "--input", str(inp), "--output", str(folder / f"spu_out_{rank}.csv"),
             "--protocol", f"PROTOCOL_{protocol}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    res = []
    try:
        with TreeMemory({str(r): p.pid for r, p in enumerate(procs)}, period) as mem:
            for p in procs:
                o, e = p.communicate(timeout=timeout)
                lines = [ln for ln in o.splitlines() if ln.startswith("{")]
                if not lines:
                    raise RuntimeError(f"SPU party failed ({p.returncode}): {e[-2000:]}")
                res.append(json.loads(lines[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {"psi_s": max(r["psi_s"] for r in res), "intersection": res[0]["intersection"],
            "out": str(folder / "spu_out_0.csv"), "peak": max(mem.peak.values()),
            "cpu_process": [mem.cpu[str(r)] for r in range(2)]}


# ---- the parts -----------------------------------------------------------------------------


SIZE_HEAD = [("| ids per side | system | s | ids/s per side | x SPU RR22 time | MB sent per party "
             "(max) | peak memory per party MB (max, workers incl.) | shards | correct | load avg | "
             "CPU s per party: timed run (whole process) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]


def ours_once(folder: Path, logn: int, a: Path, b: Path, expected: set[str], protocol: str,
              period: float = TIMED_PERIOD) -> dict[str, Any]:
    jobs = {"alice": [{"job": "size", "input": str(a), "output": str(folder / "out_alice.csv")}],
            "bob": [{"job": "size", "input": str(b), "output": str(folder / "out_bob.csv")}]}
    rep = run_ours(folder, jobs, "sequential", None, protocol, period=period)
    ja, jb = (rep[p]["runs"]["sequential"]["jobs"][0] for p in ("alice", "bob"))
    ok = read_ids(str(folder / "out_alice.csv.s")) == expected and ja["rows"] == len(expected)
    ok = ok and read_ids(str(folder / "out_bob.csv.s")) == expected
    return {"s": max(ja["seconds"], jb["seconds"]), "ok": ok,
            "mb": max(rep[p]["runs"]["sequential"]["bytes_sent"] for p in ("alice", "bob")) / 1e6,
            "peak": max(rep[p]["peak"] for p in ("alice", "bob")) / 1e6, "shards": ja["shards"],
            "phases": ja["phases"], "load": os.getloadavg()[0],
            "cpu": [ja["cpu"], jb["cpu"]], "cpu_process": [rep[p]["cpu_process"] for p in ("alice", "bob")]}


def size_part(args: argparse.Namespace, spu_python: str | None, sizes: list[int],
              records: list[dict[str, Any]] | None = None, period: float = TIMED_PERIOD) -> list[str]:
    """The size table's rows; one dict per (size, system) is appended to ``records``; memory
    sampled every ``period`` seconds."""
    rows = list(SIZE_HEAD)
    records = [] if records is None else records
    for logn in sizes:
        n = 1 << logn
        with tempfile.TemporaryDirectory(prefix="psibench-") as tmp:
            folder = Path(tmp)
            a, b, expected = gen_data(folder, logn, f"n{logn}")
            # reps > 1: the systems take turns (SPU, ours, SPU, ours, ...) and each row reports
            # the median run, so a slow spell of a noisy host does not land on one system only
            runs: dict[str, list[dict[str, Any] | str]] = {}
            for _rep in range(args.reps):
                got: list[tuple[str, dict[str, Any] | str]] = []
                for proto in args.spu_protocols:
                    name = f"SPU {proto}" + ("-25519" if proto == "ECDH" else "")
                    if not spu_python:
                        got.append((name, "spu not installed"))
                    elif logn > args.spu_max_logn:
                        got.append((name, f"not run (> 2^{args.spu_max_logn})"))
                    else:
                        sr = run_spu(spu_python, folder, a, b, proto, period=period)
                        ok = sr["intersection"] == len(expected) and read_ids(sr["out"]) == expected
                        got.append((name, {"s": sr["psi_s"], "ok": ok, "mb": None,
                                           "peak": sr["peak"] / 1e6, "shards": None,
                                           "load": os.getloadavg()[0], "cpu": None,
                                           "cpu_process": sr["cpu_process"]}))
                for proto in args.protocols:
                    name = f"mpcactors {proto}"
                    if proto == "ecdh" and logn > args.ecdh_max_logn:
                        got.append((name, f"not run (> 2^{args.ecdh_max_logn})"))
                        continue
                    got.append((name, ours_once(folder, logn, a, b, expected, proto, period)))
                for name, r in got:
                    runs.setdefault(name, []).append(r)
            got = [(name, _median_run(rs)) for name, rs in runs.items()]
            rr22 = next((r["s"] for nm, r in got if nm == "SPU RR22" and isinstance(r, dict)), None)
            for name, r in got:
                rec: dict[str, Any] = {"logn": logn, "ids_per_side": n, "system": name}
                if isinstance(r, str):
                    rec["not_run"] = r
                else:
                    rec.update({"s": r["s"], "mb_sent": r["mb"], "peak_mb": r["peak"],
                                "shards": r["shards"], "correct": r["ok"], "load_avg": r["load"],
                                "cpu_s": r["cpu"], "cpu_process_s": r["cpu_process"],
                                "phases": r.get("phases"), "runs_s": r.get("runs", [r["s"]])})
                records.append(rec)
                if isinstance(r, str):
                    line = f"| 2^{logn} | {name} | {r} | | | | | | | | |"
                else:
                    ratio = f"{r['s'] / rr22:.2f}" if rr22 else "-"
                    mb = f"{r['mb']:.1f}" if r["mb"] is not None else "n/a"
                    each = r.get("runs", [r["s"]])
                    s_cell = f"{r['s']:.2f}" + (f" ({', '.join(f'{x:.2f}' for x in each)})" if len(each) > 1 else "")
                    line = (f"| 2^{logn} | {name} | {s_cell} | {n / r['s']:,.0f} | {ratio} | {mb} | "
                            f"{r['peak']:,.0f} | {r['shards'] if r['shards'] is not None else '-'} | "
                            f"{'yes' if r['ok'] else 'NO'} | {r['load']:.1f} | {_cpu_cell(r)} |")
                print(line, flush=True)
                rows.append(line)
    return rows


def _median_run(rs: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """The median-time run of one system's repetitions (with every run's time in ``runs``)."""
    done = [r for r in rs if isinstance(r, dict)]
    if not done:
        return rs[0]
    done.sort(key=lambda r: r["s"])
    mid = dict(done[(len(done) - 1) // 2])
    mid["runs"] = [r["s"] for r in rs if isinstance(r, dict)]
    mid["ok"] = all(r["ok"] for r in done)
    return mid


def _cpu_cell(r: dict[str, Any]) -> str:
    """``timed a / b (whole a / b)`` CPU seconds of the two parties (SPU: whole process only)."""
    whole = " / ".join(f"{c:.1f}" for c in r["cpu_process"])
    if r["cpu"] is None:
        return f"- ({whole})"
    return " / ".join(f"{c:.1f}" for c in r["cpu"]) + f" ({whole})"


def kkrt_rounds(n_recv: int, n_send: int, kept_base: bool = True) -> int:
    """Communication rounds of one KKRT exchange (counted on an in-process run); with
    ``kept_base``, as the timed jobs run it: after the warm-up job, whose base OTs the nodes
    keep (a set-up of 1 round instead of 4)."""
    from mpcactors.ops._comm import run_local
    from mpcactors.psi._kkrt import item_hashes, psi_receive, psi_send

    bases: dict[str, Any] = {"r": (), "s": ()}
    if kept_base:
        steps: dict[str, Any] = {"r": psi_receive("s", item_hashes(["a"])), "s": psi_send("r", item_hashes(["b"]))}
        first, _ = run_local(steps)
        bases = {p: (first[p].base,) for p in ("r", "s")}
    counts = {"r": 0, "s": 0}

    def counted(name: str, step: Any) -> Any:
        got = None
        try:
            ex = next(step)
            while True:
                counts[name] += 1
                got = yield ex
                ex = step.send(got)
        except StopIteration as stop:
            return stop.value

    run_local({"r": counted("r", psi_receive("s", item_hashes([f"r{i}" for i in range(n_recv)]), bases=bases["r"])),
               "s": counted("s", psi_send("r", item_hashes([f"s{i}" for i in range(n_send)]), bases=bases["s"]))})
    return max(counts.values())


def concurrency_part(args: argparse.Namespace, wan: tuple[float, float] | None, protocol: str,
                     records: list[dict[str, Any]] | None = None) -> list[str]:
    """The concurrency table's rows; one dict per job count is appended to ``records``."""
    records = [] if records is None else records
    where = "loopback" if wan is None else f"WAN {2 * wan[0]:g} ms RTT, {wan[1]:g} Mbit/s"
    logn = args.conc_logn if wan is None else args.wan_logn
    rows = [("| protocol | link | jobs x ids per side | one after another s | all at once s | speed-up | "
            "MB sent per party (all at once) | model s (MB/bandwidth + rounds x RTT) | measured / model | all correct |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for k in args.jobs:
        with tempfile.TemporaryDirectory(prefix="psibench-") as tmp:
            folder = Path(tmp)
            jobs: dict[str, list[dict[str, str]]] = {"alice": [], "bob": []}
            expected = []
            for j in range(k):
                a, b, exp = gen_data(folder, logn, f"k{k}j{j}")
                expected.append(exp)
                jobs["alice"].append({"job": f"j{j}", "input": str(a), "output": str(folder / f"o_a_{j}.csv")})
                jobs["bob"].append({"job": f"j{j}", "input": str(b), "output": str(folder / f"o_b_{j}.csv")})
            seqs, cons, ok = [], [], True
            for _rep in range(args.reps):  # (reps > 1: rows show the medians)
                rep = run_ours(folder, jobs, "both", wan, protocol, period=TIMED_PERIOD)
                seqs.append(max(rep[p]["runs"]["sequential"]["wall"] for p in ("alice", "bob")))
                cons.append(max(rep[p]["runs"]["concurrent"]["wall"] for p in ("alice", "bob")))
                sent = max(rep[p]["runs"]["concurrent"]["bytes_sent"] for p in ("alice", "bob"))
                ok = ok and all(read_ids(str(folder / f"o_a_{j}.csv.{m}")) == expected[j]
                                for j in range(k) for m in ("s", "c"))
            seq, con = statistics.median(seqs), statistics.median(cons)
            model = ratio = "-"
            t_model: float | None = None
            if wan is not None and protocol == "kkrt":
                # hello, ready, align, fin + the KKRT exchange's rounds, all jobs overlapping (the
                # nodes keep the base OTs of the warm-up job: every timed job's set-up is 1 round)
                rounds = 4 + kkrt_rounds(1 << logn, 1 << logn)
                t_model = sent * 8 / (wan[1] * 1e6) + rounds * 2 * wan[0] / 1000
                model, ratio = f"{t_model:.2f} ({rounds} rounds)", f"{con / t_model:.2f}"
            each = f" ({', '.join(f'{c:.2f}' for c in cons)})" if len(cons) > 1 else ""
            if t_model is not None and len(cons) > 1:
                ratio += f" ({', '.join(f'{c / t_model:.2f}' for c in cons)})"
            line = (f"| {protocol} | {where} | {k} x 2^{logn} | {seq:.2f} | {con:.2f}{each} | "
                    f"{seq / con:.2f} | {sent / 1e6:.1f} | {model} | {ratio} | {'yes' if ok else 'NO'} |")
            print(line, flush=True)
            rows.append(line)
            records.append({"protocol": protocol, "link": where,
                            "rtt_ms": 0.0 if wan is None else 2 * wan[0],
                            "bandwidth_mbps": None if wan is None else wan[1],
                            "jobs": k, "logn": logn, "ids_per_job": 1 << logn,
                            "serial_s": seq, "concurrent_s": con, "mb_sent": sent / 1e6,
                            "model_s": t_model, "correct": ok, "load_avg": os.getloadavg()[0],
                            "serial_runs_s": seqs, "concurrent_runs_s": cons})
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_party":
        return party_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logn", type=int, nargs="*", default=[16, 18, 20])
    ap.add_argument("--protocols", nargs="*", default=["kkrt", "ecdh"], choices=["kkrt", "ecdh"])
    ap.add_argument("--spu-protocols", nargs="*", default=["RR22", "ECDH"], choices=["RR22", "ECDH"])
    ap.add_argument("--ecdh-max-logn", type=int, default=20, help="run our ECDH up to this size")
    ap.add_argument("--spu-max-logn", type=int, default=20, help="run SPU up to this size")
    ap.add_argument("--mem-logn", type=int, nargs="*", default=[], help="KKRT only (memory part)")
    ap.add_argument("--jobs", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--conc-protocols", nargs="*", default=["kkrt"], choices=["kkrt", "ecdh"])
    ap.add_argument("--conc-logn", type=int, default=14, help="ids per job, loopback part")
    ap.add_argument("--wan-logn", type=int, default=14, help="ids per job, WAN part")
    ap.add_argument("--spu-python", default=sys.executable)
    ap.add_argument("--skip-wan", action="store_true")
    ap.add_argument("--reps", type=int, default=1,
                    help="runs per row (size part: the systems take turns); rows show the median")
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md (## PSI)")
    ap.add_argument("--json", nargs="?", const=str(JSON_DEFAULT), default=None, metavar="PATH",
                    help=f"also write the figures as JSON (default path {JSON_DEFAULT.relative_to(ROOT)})")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rate = calibrate()
    spu_python = args.spu_python if spu_available(args.spu_python) else None
    cpu = _cpu()
    flags = cpu_flags()
    print(f"machine: {cpu}; flags: {flags}; X25519 via cryptography: {rate:,.0f} ops/s on one core"
          f"; SPU: {'spu==0.9.5 at ' + spu_python if spu_python else 'spu not installed'}", flush=True)
    started = datetime.datetime.now(datetime.UTC)
    out: dict[str, Any] = {"size": [], "memory": [], "concurrency": []}
    blocks = [(f"CPU flags: `{flags}`; single-core X25519 (OpenSSL through `cryptography`): "
              f"{rate:,.0f} ops/s."), ""]
    if args.logn:
        blocks += size_part(args, spu_python, args.logn, out["size"]) + [""]
    if args.mem_logn:
        mem_args = argparse.Namespace(**{**vars(args), "protocols": ["kkrt"], "spu_protocols": []})
        blocks += size_part(mem_args, None, args.mem_logn, out["memory"], MEMORY_PERIOD) + [""]
    for protocol in args.conc_protocols if args.jobs else []:
        blocks += concurrency_part(args, None, protocol, out["concurrency"])
        if not args.skip_wan:
            blocks += concurrency_part(args, (20.0, 100.0), protocol, out["concurrency"])[2:]
        blocks += [""]
    if args.record:
        record(blocks, cpu, spu_python)
    if args.json:
        write_json(Path(args.json), {
            "bench": "psi_bench", "started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": cpu, "cpu_flags": flags, "x25519_ops_per_s": rate,
            "spu": "spu==0.9.5" if spu_python else None, "args": vars(args), **out})
    return 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}", flush=True)


def _cpu() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def record(lines: list[str], cpu: str, spu_python: str | None) -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    head = [f"### {stamp} — {cpu}", "",
            f"`bench/psi_bench.py`; peer: {'spu==0.9.5' if spu_python else 'spu not installed'}.", ""]
    block = "\n".join(head + lines) + "\n"
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if HEADING not in text.splitlines():
        text = text.rstrip("\n") + f"\n\n{HEADING}\n"
    start = text.index(f"\n{HEADING}\n") + len(HEADING) + 2 if f"\n{HEADING}\n" in text else len(text)
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt + 1
    text = text[:end].rstrip("\n") + "\n\n" + block + ("\n" + text[end:] if nxt >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
