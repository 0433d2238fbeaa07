"""PSI benchmark: mpcactors ECDH-PSI between two processes over TCP+TLS on 127.0.0.1, beside
SecretFlow SPU's ECDH-PSI (CURVE_25519) on the same data in the same run when spu is installed.

    .venv/bin/python bench/psi_bench.py [--logn 16 18 [20]] [--jobs 1 4 16] [--conc-logn 11]
        [--wan-logn 8] [--spu-python /path/to/venv/bin/python] [--spu-max-logn 18] [--skip-wan]
        [--record]

Parts:
1. Size: 2^logn random 16-byte hex ids per side (half of them common), one job, result to both
   parties, inner join on column ``id``; the output is checked against the Python set
   intersection. Time = the slower party's ``run_psi`` (SPU: ``psi_execute``), from reading the
   CSV to the output CSV written; link set-up is excluded on both sides. Where our time goes:
   per-phase seconds (from progress events), X25519 operations per second achieved against
   this machine's single-core OpenSSL rate measured first, wire bytes sent per party.
2. Concurrency: k = 1, 4, 16 jobs of 2^conc-logn ids each between the same two processes over
   one link: one after another vs all at once; on the loopback and with the in-process WAN
   emulator (40 ms RTT, 100 Mbit/s), where concurrent jobs overlap their round trips.

Both parties share this machine's cores, as SPU's two processes do: every id costs two X25519
operations at each party, and both parties' EC worker processes compete for the same cores.
``--record`` appends the tables to bench/RESULTS.md under "## PSI". SPU: pass ``--spu-python``
(a Python with ``spu==0.9.5``) or run with one; otherwise the table says "spu not installed".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mpcactors._demo import free_ports

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADING = "## PSI"


# ---- set-up --------------------------------------------------------------------------------


def make_cluster(folder: Path) -> Path:
    """A two-party TLS cluster file (free loopback ports) with certificates generated."""
    from mpcactors._certs import generate_certs
    from mpcactors._config import load_config

    pa, pb = free_ports(2)
    lines = [f'cluster = "psibench-{os.getpid()}"', 'protocol = "semi2k"', "",
             "[tls]", 'ca_cert = "certs/ca.pem"', 'ca_key = "certs/ca.key"', "",
             "[link]", "connect_retry_times = 100", "connect_retry_interval_ms = 50",
             "connect_timeout_s = 60", "peer_timeout_s = 60", ""]
    for name, port in (("alice", pa), ("bob", pb)):
        lines += [f"[parties.{name}]", f'address = "127.0.0.1:{port}"',
                  f'cert = "certs/{name}.pem"', f'key = "certs/{name}.key"', ""]
    path = folder / "cluster.toml"
    path.write_text("\n".join(lines))
    generate_certs(load_config(path))
    return path


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


# ---- our parties ---------------------------------------------------------------------------


def run_ours(folder: Path, jobs: dict[str, list[dict[str, str]]], mode: str,
             wan: tuple[float, float] | None, timeout: float = 3600) -> dict[str, Any]:
    """Start alice and bob (this file in party mode); returns {party: report}."""
    cfg = make_cluster(folder)
    procs = {}
    for party in ("alice", "bob"):
        spec = {"config": str(cfg), "party": party, "peer": "bob" if party == "alice" else "alice",
                "jobs": jobs[party], "mode": mode, "wan": wan}
        spec_path = folder / f"spec_{party}.json"
        spec_path.write_text(json.dumps(spec))
        procs[party] = subprocess.Popen([sys.executable, str(Path(__file__)), "_party", str(spec_path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=ROOT)
    out = {}
    try:
        for party, p in procs.items():
            o, e = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"{party} failed ({p.returncode}): {e[-3000:]}")
            out[party] = json.loads(o.strip().splitlines()[-1])
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

    async def one(node: Any, job: dict[str, str], prefix: str) -> dict[str, Any]:
        marks: dict[str, float] = {}

        def progress(ev: PsiProgress) -> None:
            marks.setdefault(ev.phase, ev.elapsed)

        t = time.perf_counter()
        r = await run_psi(node, peer=peer, job=prefix + job["job"], input=job["input"], keys="id",
                          output=f"{job['output']}.{prefix[0]}", progress=progress)
        return {"job": job["job"], "seconds": time.perf_counter() - t, "phases": marks,
                "ec_ops": r.ec_ops, "rows": r.rows, "intersection": r.intersection}

    async def main() -> dict[str, Any]:
        report: dict[str, Any] = {"party": spec["party"], "runs": {}}
        async with open_node(config, spec["party"], wan=wan) as node:
            # warm-up: start the EC worker processes before anything is timed
            await run_psi(node, peer=peer, job="warm-up", ids=[f"w{i}" for i in range(64)],
                          chunk_size=16)
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


def run_spu(python: str, folder: Path, a: Path, b: Path, timeout: float = 1200) -> dict[str, Any]:
    p0, p1 = free_ports(2)
    procs = []
    for rank, inp in ((0, a), (1, b)):
        procs.append(subprocess.Popen(
            [python, str(HERE / "_spu_psi_party.py"), "--rank", str(rank), "--p0", str(p0),
             "--p1", str(p1), "--input", str(inp), "--output", str(folder / f"spu_out_{rank}.csv")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    res = []
    try:
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
            "out": str(folder / "spu_out_0.csv")}


# ---- the parts -----------------------------------------------------------------------------


def size_part(args: argparse.Namespace, rate: float, spu_python: str | None) -> list[str]:
    rows = [("| ids per side | mpcactors s | SPU ECDH-25519 s | ratio (ours / SPU) | ours ids/s per side | "
             "phases s (prepare / exchange / match+output) | X25519 ops/s both parties (x of 1 core) | "
             "MB sent per party | correct (ours / SPU) |"),
            "|---|---|---|---|---|---|---|---|---|"]
    for logn in args.logn:
        n = 1 << logn
        with tempfile.TemporaryDirectory(prefix="psibench-") as tmp:
            folder = Path(tmp)
            a, b, expected = gen_data(folder, logn, f"n{logn}")
            jobs = {"alice": [{"job": "size", "input": str(a), "output": str(folder / "out_alice.csv")}],
                    "bob": [{"job": "size", "input": str(b), "output": str(folder / "out_bob.csv")}]}
            rep = run_ours(folder, jobs, "sequential", None)
            ja, jb = (rep[p]["runs"]["sequential"]["jobs"][0] for p in ("alice", "bob"))
            ours_s = max(ja["seconds"], jb["seconds"])
            ok = read_ids(str(folder / "out_alice.csv.s")) == expected and ja["rows"] == len(expected)
            ph = ja["phases"]
            prep = ph.get("exchange", 0) - ph.get("prepare", ph.get("exchange", 0))
            exch = ph.get("match", ph.get("output", ja["seconds"])) - ph.get("exchange", 0)
            rest = ja["seconds"] - ph.get("match", ph.get("output", ja["seconds"]))
            ops = (ja["ec_ops"] + jb["ec_ops"]) / max(exch, 1e-9)
            mb = max(rep[p]["runs"]["sequential"]["bytes_sent"] for p in ("alice", "bob")) / 1e6
            if spu_python and logn > args.spu_max_logn:
                spu_cell, ratio, spu_okc = f"not run (> 2^{args.spu_max_logn})", "-", "-"
            elif spu_python:
                s = run_spu(spu_python, folder, a, b)
                spu_ok = s["intersection"] == len(expected) and read_ids(s["out"]) == expected
                spu_cell, ratio = f"{s['psi_s']:.2f}", f"{ours_s / s['psi_s']:.2f}"
                spu_okc = "yes" if spu_ok else "NO"
            else:
                spu_cell, ratio, spu_okc = "spu not installed", "-", "-"
            line = (f"| 2^{logn} | {ours_s:.2f} | {spu_cell} | {ratio} | {n / ours_s:,.0f} | "
                    f"{prep:.2f} / {exch:.2f} / {rest:.2f} | {ops:,.0f} ({ops / rate:.2f}) | "
                    f"{mb:.1f} | {'yes' if ok else 'NO'} / {spu_okc} |")
            print(line, flush=True)
            rows.append(line)
    return rows


def concurrency_part(args: argparse.Namespace, wan: tuple[float, float] | None) -> list[str]:
    where = "loopback" if wan is None else f"WAN {2 * wan[0]:g} ms RTT, {wan[1]:g} Mbit/s"
    logn = args.conc_logn if wan is None else args.wan_logn
    rows = ["| link | jobs x ids per side | one after another s | all at once s | speed-up | all correct |",
            "|---|---|---|---|---|---|"]
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
            rep = run_ours(folder, jobs, "both", wan)
            seq = max(rep[p]["runs"]["sequential"]["wall"] for p in ("alice", "bob"))
            con = max(rep[p]["runs"]["concurrent"]["wall"] for p in ("alice", "bob"))
            ok = all(read_ids(str(folder / f"o_a_{j}.csv.{m}")) == expected[j]
                     for j in range(k) for m in ("s", "c"))
            line = (f"| {where} | {k} x 2^{logn} | {seq:.2f} | {con:.2f} | "
                    f"{seq / con:.2f} | {'yes' if ok else 'NO'} |")
            print(line, flush=True)
            rows.append(line)
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_party":
        return party_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logn", type=int, nargs="*", default=[16, 18])
    ap.add_argument("--jobs", type=int, nargs="*", default=[1, 4, 16])
    ap.add_argument("--conc-logn", type=int, default=11, help="ids per job, loopback part")
    ap.add_argument("--wan-logn", type=int, default=8, help="ids per job, WAN part (latency-bound)")
    ap.add_argument("--spu-max-logn", type=int, default=18, help="run SPU up to this size")
    ap.add_argument("--spu-python", default=sys.executable)
    ap.add_argument("--skip-wan", action="store_true")
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md (## PSI)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rate = calibrate()
    spu_python = args.spu_python if spu_available(args.spu_python) else None
    cpu = _cpu()
    print(f"machine: {cpu}; X25519 via cryptography: {rate:,.0f} ops/s on one core"
          f"; SPU: {'spu==0.9.5 at ' + spu_python if spu_python else 'spu not installed'}", flush=True)
    blocks = [f"Single-core X25519 (OpenSSL through `cryptography`): {rate:,.0f} ops/s.", ""]
    if args.logn:
        blocks += size_part(args, rate, spu_python) + [""]
    if args.jobs:
        blocks += concurrency_part(args, None)
        if not args.skip_wan:
            blocks += concurrency_part(args, (20.0, 100.0))[2:]
    if args.record:
        record(blocks, cpu, spu_python)
    return 0


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
