"""Two parties as two real processes over TLS and an emulated WAN, with no dealer (issue 12).

    .venv/bin/python bench/twoparty_wan_bench.py [--ops mul,lt,lr,matmul] [--n 100000]
        [--matmul-n 256] [--latency-ms 20] [--mbps 100] [--dealers none,trusted-first-party]
        [--softspoken-k 2] [--matrix-triples auto] [--mul-triples auto] [--record]

alice and bob are two ``mpcactors`` processes (this file in party mode) on a loopback TLS
cluster; each wraps its outgoing bytes in the WAN emulator (``[wan]``: ``--latency-ms`` one way,
so the RTT is twice that, and ``--mbps`` per direction). Ops: ``mul`` and ``lt`` of ``--n``
values (features at alice, the other operand at bob), ``matmul`` of two ``--matmul-n`` square
matrices (``--matrix-triples``: by OT, by lattice HE, or chosen by cost; ``--mul-triples`` the
same for mul's elementwise triples), ``lr`` the hand-written logistic
regression of bench/compute_bench.py (10000 x 20, 3 epochs; it is also what ``mpc.jit`` of the
guide's program gives with labels declared 0/1). ``dealer = "none"``: the two parties make their
correlations by OT (total time); ``"trusted-first-party"`` sends the same online messages with
the correlations given (the online part; insecure, for comparison only).

Each row: the wall time of the op at the slower party (from its inputs being in place to its
result being computed), the bytes alice and bob sent, the critical-path rounds (job
statistics), and the model ``max(bytes sent) / bandwidth + rounds x one-way latency`` (in
every round both parties send at once, so a round costs one one-way trip).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def make_cluster(folder: Path, dealer: str, latency_ms: float, mbps: float, k: int = 2,
                 matrix: str = "auto", mul: str = "auto") -> Path:
    """A two-party TLS cluster file on free loopback ports with the WAN profile, certificates generated."""
    from _cluster import two_party_cluster

    return two_party_cluster(folder, "wanbench",
                             [f'dealer = "{dealer}"', f"softspoken_k = {k}", f'matrix_triples = "{matrix}"',
                              f'mul_triples = "{mul}"'],
                             ["[wan]", f"latency_ms = {latency_ms}", f"bandwidth_mbps = {mbps}", ""])


def op_data(op: str, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    if op in ("mul", "lt"):
        return [rng.standard_normal(n), rng.standard_normal(n)]
    if op == "matmul":
        return [rng.standard_normal((n, n)), rng.standard_normal((n, n))]
    if op == "lr":
        r = np.random.default_rng(0)
        x0 = r.standard_normal((10000, 20))
        wt = r.standard_normal(20)
        y = ((x0 @ wt + 0.5 * r.standard_normal(10000)) > 0).astype(np.float64)
        return [x0 * 0.1, y]
    raise ValueError(f"unknown op {op!r}")


def plain(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if op == "mul":
        return a * b
    if op == "lt":
        return (a < b).astype(np.float64)
    if op == "matmul":
        return a @ b
    w = np.zeros(a.shape[1])
    for _ in range(3):
        w = w - 0.1 * (a.T @ (1 / (1 + np.exp(-(a @ w))) - b))
    return w


def party_main(spec_path: str) -> int:
    """One party: open the node (TLS, WAN profile from the config), run the op, print a JSON line."""
    import anyio
    import trio

    import mpcactors as mpc
    from mpcactors._config import load_config
    from mpcactors._log import configure_logging

    configure_logging("error")
    spec = json.loads(Path(spec_path).read_text())
    config = load_config(spec["config"])
    op = spec["op"]
    a, b = op_data(op, spec["n"])

    async def program(job: Any) -> Any:
        x = await job.input("alice", lambda: a)
        y = await job.input("bob", lambda: b, binary=op == "lr")
        s0 = job.statistics()
        t0 = trio.current_time()
        if op == "mul":
            z = x * y
        elif op == "lt":
            z = x < y
        elif op == "matmul":
            z = x @ y
        else:
            w = mpc.zeros(x.shape[1])
            for _ in range(3):
                w = w - 0.1 * (x.T @ (mpc.sigmoid(x @ w) - y))
            z = w
        await z
        t1 = trio.current_time()
        s1 = job.statistics()
        value = await job.reveal(z, to="alice")
        return {"run_s": t1 - t0, "rounds": s1.rounds - s0.rounds, "sent": s1.bytes_sent - s0.bytes_sent,
                "value": None if value is None else np.asarray(value, dtype=np.float64).tolist()}

    async def main() -> dict[str, Any]:
        async with mpc.open_node(config, spec["party"], wan=config.wan) as node:
            return await node.run(program, job=f"wan-{op}", timeout=3600)

    print(json.dumps(anyio.run(main, backend="trio")))
    return 0


def run_pair(op: str, n: int, dealer: str, latency_ms: float, mbps: float, k: int = 2,
             matrix: str = "auto", mul: str = "auto") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = make_cluster(folder, dealer, latency_ms, mbps, k, matrix, mul)
        procs = {}
        for party in ("alice", "bob"):
            spec = folder / f"{party}.json"
            spec.write_text(json.dumps({"config": str(cfg), "party": party, "op": op, "n": n}))
            procs[party] = subprocess.Popen([sys.executable, str(Path(__file__)), "_party", str(spec)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        out = {}
        try:
            for party, p in procs.items():
                o, e = p.communicate(timeout=3600)
                if p.returncode != 0:
                    raise RuntimeError(f"{party} failed ({p.returncode}): {e[-3000:]}")
                out[party] = json.loads(o.strip().splitlines()[-1])
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
    a, b = op_data(op, n)
    value = np.asarray(out["alice"]["value"])
    err = float(np.max(np.abs(value - plain(op, a, b))))
    sent = max(out["alice"]["sent"], out["bob"]["sent"])
    rounds = max(out["alice"]["rounds"], out["bob"]["rounds"])
    # the transfer and the round trips alone (0 Mbit/s is unlimited, as in the [wan] section)
    model = (sent * 8 / (mbps * 1e6) if mbps > 0 else 0.0) + rounds * latency_ms / 1000
    wall = max(out["alice"]["run_s"], out["bob"]["run_s"])
    return {"op": op, "n": n, "dealer": dealer, "wall_s": wall, "rounds": rounds,
            "mb_alice": out["alice"]["sent"] / 1e6, "mb_bob": out["bob"]["sent"] / 1e6,
            "model_s": model, "ratio": wall / model if model else float("nan"), "max_err": err}


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| op | dealer | wall s | rounds | MB sent alice / bob | model s | wall / model | max abs err vs numpy |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        what = {"lr": "LR 10000x20, 3 epochs", "matmul": f"matmul {r['n']}^3"}.get(r["op"], f"{r['op']} {r['n']:,}")
        ratio = f"{r['ratio']:.2f}x" if r["model_s"] else "-"  # no model on an unlimited link
        lines.append(f"| {what} | {r['dealer']} | {r['wall_s']:.2f} | {r['rounds']} | {r['mb_alice']:.1f} / {r['mb_bob']:.1f} "
                     f"| {r['model_s']:.2f} | {ratio} | {r['max_err']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_party":
        sys.exit(party_main(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="mul,lt,lr")
    ap.add_argument("--n", type=int, default=100_000, help="values of mul and lt")
    ap.add_argument("--matmul-n", type=int, default=256, help="rows = inner = columns of matmul")
    ap.add_argument("--matrix-triples", default="auto", choices=["auto", "ot", "he"], help="dealer none: matrix triples by")
    ap.add_argument("--mul-triples", default="auto", choices=["auto", "ot", "he"], help="dealer none: elementwise triples by")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="one way (RTT is twice this)")
    ap.add_argument("--mbps", type=float, default=100.0, help="bandwidth per direction (0: unlimited)")
    ap.add_argument("--dealers", default="none,trusted-first-party")
    ap.add_argument("--softspoken-k", type=int, default=2, help="bits per small VOLE of the OT extension (dealer none)")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    a = ap.parse_args()
    rows, loads = [], [os.getloadavg()[0]]
    for op in a.ops.split(","):
        for dealer in a.dealers.split(","):
            n = a.matmul_n if op == "matmul" else a.n
            rows.append(run_pair(op, n, dealer, a.latency_ms, a.mbps, a.softspoken_k, a.matrix_triples, a.mul_triples))
            loads.append(os.getloadavg()[0])
            print(rows[-1], flush=True)
    table = render(rows)
    load = f"load average {min(loads):.1f}-{max(loads):.1f}"
    print(table)
    print(load)
    if a.record:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        cpu = platform.processor() or platform.machine()
        with open("/proc/cpuinfo") as f:
            info = f.read()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
        keep = " ".join(f for f in ("aes", "vaes", "avx2", "avx512f", "avx512ifma", "sha_ni") if f in flags)
        text = (f"\n### twoparty_wan_bench {stamp} ({model}, {os.cpu_count()} CPUs, flags incl. {keep}; "
                f"python {platform.python_version()}; {load})\n\n"
                f"`bench/twoparty_wan_bench.py {' '.join(sys.argv[1:])}`: alice and bob as two processes over "
                f"TLS, WAN emulator {2 * a.latency_ms:g} ms RTT, {a.mbps:g} Mbit/s per direction.\n\n{table}\n")
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
