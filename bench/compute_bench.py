"""Secure compute benchmark: mpcactors.simulate beside SecretFlow SPU's simulator, same run.

    .venv/bin/python bench/compute_bench.py [--ops mul,matmul256,matmul1024,matmul1024x1024x256,lt,sigmoid,lr]
        [--spu-python /path/to/venv-with-spu/bin/python] [--reps 3] [--wan] [--record]
        [--json [PATH]]

Times are the run time of the op itself at every party (the slowest party), after the inputs
are shared and before the result is revealed, like SPU's "run" time (no compilation). Both
systems run all parties in one process on this machine's 2 cores. SPU's SEMI2K uses its default
TrustedFirstParty beaver source; ours is compared with the same trust model
(`dealer="trusted-first-party"`, 2 parties) and with a real dealer party.

``semi2k-ot`` is two parties and nobody else (no dealer, correlations by OT between the two),
beside SPU's CHEETAH (2 parties, silent OT + lattice HE, no dealer). Its time includes making
the correlations (they are made inside each op, in the op's first rounds). The online part is
the same protocol with the correlations given: the ``semi2k`` (trusted-first-party) time of the
same op, whose online messages are identical; offline = total - online.
``semi2k-ot-k4`` is ``semi2k-ot`` with ``softspoken_k = 4`` (half the OT extension's ``U``
bytes, more PRG work): in one process the bytes are cheap, so this row shows its CPU cost.

``--json`` also writes the rows as JSON (default bench/results/compute_bench.json), which
bench/plot.py draws.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio.testing

import mpcactors as mpc

HERE = Path(__file__).resolve().parent
JSON_DEFAULT = HERE / "results" / "compute_bench.json"
SETUPS = {
    "semi2k": ("semi2k", ["alice", "bob"], {"dealer": "trusted-first-party"}),
    "semi2k+dealer": ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"}),
    "rep3": ("rep3", ["alice", "bob", "carol"], {}),
    "semi2k-ot": ("semi2k", ["alice", "bob"], {"dealer": "none"}),
    # the same with SoftSpoken k = 4 (fewer bytes, more CPU: for slow links)
    "semi2k-ot-k4": ("semi2k", ["alice", "bob"], {"dealer": "none", "softspoken_k": 4}),
    # triples always by OT (semi2k-ot picks HE for big ones where TenSEAL is installed)
    "semi2k-ot-only": ("semi2k", ["alice", "bob"], {"dealer": "none", "matrix_triples": "ot", "mul_triples": "ot"}),
}
SPU_PROTO = {"semi2k": "SEMI2K", "semi2k+dealer": None, "rep3": "ABY3", "semi2k-ot": "CHEETAH", "semi2k-ot-k4": "CHEETAH", "semi2k-ot-only": "CHEETAH"}


def op_data(op: str) -> tuple[Any, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    if op in ("mul", "lt", "sigmoid"):
        return op, [rng.standard_normal(1_000_000), rng.standard_normal(1_000_000)]
    if op.startswith("matmul"):  # matmulN (N x N @ N x N) or matmulMxKxN
        m, k, n = (int(x) for x in op[6:].split("x")) if "x" in op else (int(op[6:]),) * 3
        return op, [rng.standard_normal((m, k)), rng.standard_normal((k, n))]
    if op == "lr":
        r = np.random.default_rng(0)
        x0 = r.standard_normal((10000, 20))
        wt = r.standard_normal(20)
        y = ((x0 @ wt + 0.5 * r.standard_normal(10000)) > 0).astype(np.float64)
        return op, [x0 * 0.1, y]
    raise ValueError(op)


def compute(op: str, a: Any, b: Any) -> Any:
    if op == "mul":
        return a * b
    if op.startswith("matmul"):
        return a @ b
    if op == "lt":
        return a < b
    if op == "sigmoid":
        return mpc.sigmoid(a)
    if op == "lr":
        w = mpc.zeros(a.shape[1])
        for _ in range(3):
            w = w - 0.1 * (a.T @ (mpc.sigmoid(a @ w) - b))
        return w
    raise ValueError(op)


def run_ours(setup: str, op: str, args: list[np.ndarray], *, latency_ms: float = 0.0) -> dict[str, Any]:
    protocol, parties, options = SETUPS[setup]
    holders = [p for p in parties if p != options.get("dealer")]
    a, b = args

    async def program(job: Any) -> Any:
        x = await job.input(holders[0], lambda: a)
        y = await job.input(holders[-1], lambda: b)
        s0 = job.statistics()
        t0 = trio.current_time()
        z = compute(op, x, y)
        await z
        t1 = trio.current_time()
        s1 = job.statistics()
        value = await job.reveal(z, to=holders[0])
        return {"run_s": t1 - t0, "rounds": s1.rounds - s0.rounds, "bytes": s1.bytes_sent - s0.bytes_sent, "value": value}

    out = mpc.simulate(program, parties=parties, protocol=protocol, latency_ms=latency_ms, timeout=3600, **options)
    first = out[holders[0]]
    return {
        "run_s": max(r["run_s"] for r in out.values()),
        "rounds": first["rounds"],
        "mb_sent": first["bytes"] / 1e6,
        "mb_all": sum(r["bytes"] for r in out.values()) / 1e6,  # semi2k-ot's holders send unequal shares
        "value": first["value"],
    }


def check(op: str, args: list[np.ndarray], value: np.ndarray) -> str:
    a, b = args
    if op == "lt":
        return f"mismatch {np.mean(value.astype(bool) != (a < b)):.1e}"
    if op == "lr":
        w = np.zeros(a.shape[1])
        for _ in range(3):
            w = w - 0.1 * (a.T @ (1 / (1 + np.exp(-(a @ w))) - b))
        acc = lambda v: np.mean((a @ v > 0) == (b > 0.5))
        return f"acc {acc(value):.4f} vs plain {acc(w):.4f}, max|dw| {np.max(np.abs(value - w)):.1e}"
    ref = compute(op, a, b) if op != "sigmoid" else 1 / (1 + np.exp(-a))
    return f"max abs err {np.max(np.abs(value - ref)):.1e}"


def run_spu(spu_python: str, proto: str, op: str, reps: int) -> dict[str, Any] | None:
    cmd = [spu_python, str(HERE / "spu_sim.py"), "--proto", proto, "--op", op, "--reps", str(reps)]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def wan_rows(latency_ms: float = 20.0) -> list[tuple[str, float, float, int]]:
    """Wall time at `latency_ms` one-way against the critical-path bound (rounds x latency).

    Each party's program measures from its inputs being in place to its result being computed;
    the bound is the job's critical-path rounds (from job statistics) times the one-way latency
    (in every round here all parties send at once, so a round costs one one-way trip).
    """
    rows = []

    def chains(dtype: Any) -> Any:
        async def program(job: Any) -> Any:
            xs = [await job.input("alice", np.full(1000, 1 + i), dtype=dtype) for i in range(8)]
            y = await job.input("bob", np.full(1000, 1), dtype=dtype)
            t0 = trio.current_time()
            r0 = max(x.rounds for x in xs + [y])
            out = []
            for x in xs:
                z = x
                for _ in range(5):
                    z = z * y
                out.append(z)
            for z in out:
                await z
            return trio.current_time() - t0, max(z.rounds for z in out) - r0

        return program

    for label, dtype in (("8 chains x 5 integer muls, rep3", int), ("8 chains x 5 fixed-point muls, rep3", None)):
        res = mpc.simulate(chains(dtype), parties=["alice", "bob", "carol"], protocol="rep3", latency_ms=latency_ms, timeout=120)
        wall = max(r[0] for r in res.values())
        rounds = max(r[1] for r in res.values())
        rows.append((label, wall, rounds * latency_ms / 1000, rounds))
    _, (x, y) = op_data("lr")
    for setup in ("semi2k+dealer", "rep3"):
        protocol, parties, options = SETUPS[setup]
        holders = [p for p in parties if p != options.get("dealer")]

        async def lr(job: Any, holders: list[str] = holders) -> Any:
            a = await job.input(holders[0], lambda: x)
            b = await job.input(holders[-1], lambda: y)
            t0 = trio.current_time()
            r0 = max(a.rounds, b.rounds)
            w = compute("lr", a, b)
            await w
            return trio.current_time() - t0, w.rounds - r0

        res = mpc.simulate(lr, parties=parties, protocol=protocol, latency_ms=latency_ms, timeout=300, **options)
        wall = max(r[0] for r in res.values())
        rounds = max(r[1] for r in res.values())
        rows.append((f"logistic regression 10000x20, 3 epochs, {setup}", wall, rounds * latency_ms / 1000, rounds))
    for label, wall, bound, rounds in rows:
        print(f"WAN {latency_ms:g} ms one-way: {label}: wall {wall:.3f} s, critical path {rounds} rounds = {bound:.3f} s")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="mul,matmul256,matmul1024,lt,sigmoid,lr")
    ap.add_argument("--setups", default="semi2k,semi2k+dealer,rep3,semi2k-ot")
    ap.add_argument("--spu-python", default=None, help="python of a venv with spu==0.9.5 installed")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--wan", action="store_true", help="also the WAN rows (latency 20 ms one-way)")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--json", nargs="?", const=str(JSON_DEFAULT), default=None, metavar="PATH",
                    help="also write the rows as JSON (default path bench/results/compute_bench.json)")
    a = ap.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    rows = []
    for op in a.ops.split(","):
        _, args = op_data(op)
        for setup in a.setups.split(","):
            times = []
            res: dict[str, Any] = {}
            for _ in range(a.reps):
                res = run_ours(setup, op, args)
                times.append(res["run_s"])
            ours = statistics.median(times)
            spu = None
            proto = SPU_PROTO[setup]
            if a.spu_python and proto:
                spu = run_spu(a.spu_python, proto, op, a.reps)
            spu_s = spu.get("median_run_s") if spu and "median_run_s" in spu else None
            rows.append(
                {
                    "op": op,
                    "setup": setup,
                    "ours_s": ours,
                    "rounds": res["rounds"],
                    "mb": res["mb_sent"],
                    "mb_all": res["mb_all"],
                    "check": check(op, args, res["value"]),
                    "spu_s": spu_s,
                    "spu_note": (spu or {}).get("error", (spu or {}).get("check", "")) if spu else ("spu not installed" if proto else "no SPU equivalent"),
                    "ratio": (spu_s / ours) if spu_s else None,
                }
            )
            r = rows[-1]
            print(f"{op:11s} {setup:14s} ours {ours:7.3f} s  rounds {r['rounds']:4d}  {r['mb']:8.2f} MB ({r['mb_all']:8.2f} all)  "
                  f"SPU {spu_s if spu_s is not None else float('nan'):7.3f} s  speedup {r['ratio'] or float('nan'):5.2f}x  {r['check']}", flush=True)
    wan = wan_rows(20.0) if a.wan else []
    if a.record:
        record(rows, wan)
    if a.json:
        write_json(Path(a.json), a, started, rows, wan)


def write_json(path: Path, a: argparse.Namespace, started: datetime.datetime,
               rows: list[dict[str, Any]], wan: list[tuple[str, float, float, int]]) -> None:
    data = {
        "bench": "compute_bench",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "load_avg": os.getloadavg()[0],
        "args": vars(a),
        "spu_protocols": SPU_PROTO,
        "rows": rows,
        "wan": [{"program": n, "wall_s": w, "bound_s": b, "rounds": r} for n, w, b, r in wan],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}", flush=True)


def record(rows: list[dict[str, Any]], wan: list[tuple[str, float, float, int]]) -> None:
    lines = [
        "",
        "## Secure compute",
        "",
        (f"### compute_bench {datetime.date.today()} ({platform.machine()}, {platform.processor() or 'cpu'}, 2 cores, "
         f"python {platform.python_version()})"),
        "",
        "| op | setup | mpcactors run s | rounds | MB sent (party 0 / all) | SPU run s | SPU/ours | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spu = f"{r['spu_s']:.3f}" if r["spu_s"] else r["spu_note"]
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        lines.append(f"| {r['op']} | {r['setup']} | {r['ours_s']:.3f} | {r['rounds']} | {r['mb']:.1f} / {r['mb_all']:.1f} | {spu} | {ratio} | {r['check']} |")
    if wan:
        lines += [
            "",
            "WAN emulation, 20 ms one-way latency (40 ms RTT), in `simulate`: wall time of the work",
            "against its critical-path bound (critical-path rounds from job statistics x 20 ms).",
            "",
            "| program | wall s | critical-path rounds | bound s | wall / bound |",
            "|---|---|---|---|---|",
        ]
        for name, wall, bound, rounds in wan:
            lines.append(f"| {name} | {wall:.3f} | {rounds} | {bound:.3f} | {wall / bound:.2f} |")
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
