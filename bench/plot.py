"""Draw the benchmark plots (PNGs) from the JSON the benches write with ``--json``.

    pip install -e '.[bench]'            # matplotlib
    python bench/psi_bench.py --json ...  # -> bench/results/psi_bench.json
    python bench/compute_bench.py --json ...
    python bench/loop_bench.py --json ...
    python bench/plot.py [--results bench/results] [--out bench/plots]

Plots (each drawn when its JSON is there, skipped with a note otherwise):

- ``psi_time.png``: PSI time vs ids per side, log-log: mpcactors KKRT and ECDH beside SPU RR22
  and ECDH-25519 (psi_bench.json, "size");
- ``compute_vs_spu.png``: secure compute op time, ours vs SPU's simulator, bars on a log scale
  (compute_bench.json);
- ``concurrency.png``: jobs one after another vs all at once at 0 and 40 ms RTT (loop_bench.json:
  two compute jobs and many small jobs; psi_bench.json, "concurrency": KKRT jobs);
- ``lateness.png``: worst lateness of a 10 ms ticker on the host loop while a job runs, before and
  after compute moved off the loop (loop_bench.json for "after"; loop_bench_before.json for
  "before": figures recorded in bench/RESULTS.md / issue 9, labelled as recorded; and, when
  present, loop_bench_before_rerun.json: loop_bench run with the tree before issue 9 on
  PYTHONPATH, a "tree" key added naming its commit).

Every plot names the run its data come from (the JSON's date, machine and load average).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

OURS = "#1f5fa8"
OURS_2 = "#6fa1dc"
SPU = "#d9822b"
SPU_2 = "#f2bd86"
STYLE = {  # PSI systems: colour, marker, line style
    "mpcactors kkrt": (OURS, "o", "-"),
    "mpcactors ecdh": (OURS_2, "s", "-"),
    "SPU RR22": (SPU, "^", "--"),
    "SPU ECDH-25519": (SPU_2, "v", "--"),
}


def load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        print(f"skip: {path} not found", file=sys.stderr)
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def provenance(data: dict[str, Any]) -> str:
    """One line naming the run: bench, date (UTC), machine, load average."""
    when = str(data.get("started", "?")).replace("T", " ")[:16]
    loads = [r.get("load_avg") for part in ("size", "concurrency", "rows", "lateness", "small")
             for r in data.get(part) or [] if isinstance(r, dict) and r.get("load_avg") is not None]
    if data.get("load_avg") is not None:
        loads.append(data["load_avg"])
    load = ""
    if loads:
        lo, hi = min(loads), max(loads)
        load = f", load avg {lo:.1f}" + (f"-{hi:.1f}" if f"{hi:.1f}" != f"{lo:.1f}" else "")
    return f"{data.get('bench', '?')} run of {when} UTC; {data.get('machine', '?')}{load}"


def _footer(fig: Any, *lines: str) -> None:
    """Provenance lines at the figure's foot, wrapped to its width."""
    width = int(fig.get_figwidth() * 17)
    text = "\n".join(textwrap.fill(line, width) for line in lines)
    fig.text(0.01, 0.005, text, fontsize=7, color="#555555", ha="left", va="bottom")


def _pow2(n: int) -> str:
    return f"$2^{{{n.bit_length() - 1}}}$" if n & (n - 1) == 0 else f"{n:,}"


# ---- the plots ---------------------------------------------------------------------------


def plot_psi(data: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    systems: dict[str, list[tuple[int, float]]] = {}
    for r in data.get("size", []):
        if "s" in r:
            systems.setdefault(r["system"], []).append((r["ids_per_side"], r["s"]))
    xs_all: set[int] = set()
    for name in sorted(systems, key=lambda s: (not s.startswith("mpcactors"), s)):
        pts = sorted(systems[name])
        xs_all.update(x for x, _ in pts)
        colour, marker, ls = STYLE.get(name, ("#444444", "x", ":"))
        label = name.replace("mpcactors", "mpcactors (ours)")
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, ls=ls, color=colour,
                label=label, lw=2 if name.startswith("mpcactors") else 1.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(xs_all), [_pow2(x) for x in sorted(xs_all)])
    ax.set_xlabel("ids per side (half of them common)")
    ax.set_ylabel("time, s (slower party, CSV in to CSV out)")
    ax.set_title("Two-party PSI: time vs ids per side")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    notes = [provenance(data),
             ("Both parties and SPU's two processes share the machine's cores; TCP+TLS on 127.0.0.1 "
              "(SPU: its own link). See bench/RESULTS.md, \"PSI\".")]
    not_run = [f"{r['system']} at 2^{r['logn']}: {r['not_run']}"
               for r in data.get("size", []) if "not_run" in r]
    if not_run:
        notes.append("; ".join(not_run))
    fig.subplots_adjust(bottom=0.22)
    _footer(fig, *notes)
    path = out / "psi_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_compute(data: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = data.get("rows", [])
    pairs = [("semi2k", "SPU SEMI2K"), ("rep3", "SPU ABY3"), ("semi2k-ot", "SPU CHEETAH")]
    pairs = [(s, n) for s, n in pairs if any(r["setup"] == s and r.get("spu_s") for r in rows)]
    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.8), squeeze=False,
                             sharey=True)
    for ax, (setup, spu_name) in zip(axes[0], pairs, strict=True):
        got = {r["op"]: r for r in rows if r["setup"] == setup}
        names = [op for op in ops if op in got]
        xs = range(len(names))
        w = 0.38
        ours = [got[op]["ours_s"] for op in names]
        spu = [got[op]["spu_s"] or float("nan") for op in names]
        ax.bar([x - w / 2 for x in xs], ours, w, color=OURS, label=f"mpcactors {setup}")
        ax.bar([x + w / 2 for x in xs], spu, w, color=SPU, label=spu_name)
        for x, a, b in zip(xs, ours, spu, strict=True):
            if not math.isnan(b):
                ax.text(x, max(a, b) * 1.15, f"{b / a:.1f}x", ha="center", fontsize=8)
        ax.set_xticks(list(xs), names, rotation=20)
        ax.set_yscale("log")
        finite = [x for x in ours + spu if not math.isnan(x)]
        ax.set_ylim(min(finite) / 3, max(finite) * 4)
        ax.set_title(f"{setup} vs {spu_name}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("op run time, s (slowest party; log scale)")
    fig.suptitle("Secure compute ops: mpcactors vs SPU 0.9.5 simulator "
                 "(label: SPU time / ours; above 1: ours faster)")
    fig.subplots_adjust(bottom=0.25, top=0.86)
    _footer(fig, provenance(data),
            "mul, lt, sigmoid: 10^6 elements; matmulN: NxN; lr: logistic regression 10000x20, "
            "3 epochs. Each system runs all its parties in one process; median of "
            f"{data.get('args', {}).get('reps', '?')} runs.")
    path = out / "compute_vs_spu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pair_bars(ax: Any, labels: list[str], serial: list[float], conc: list[float]) -> None:
    """Bars of one-after-another vs all-at-once wall time (linear, from 0), speed-up above."""
    xs = range(len(labels))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], serial, w, color="#999999", label="one after another")
    ax.bar([x + w / 2 for x in xs], conc, w, color=OURS, label="all at once")
    top = max(serial + conc)
    for x, s, c in zip(xs, serial, conc, strict=True):
        ax.text(x, max(s, c) + 0.03 * top, f"{s / c:.1f}x", ha="center", fontsize=8,
                fontweight="bold")
    ax.set_ylim(0, top * 1.22)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("wall time, s")
    ax.grid(True, axis="y", alpha=0.3)


def plot_concurrency(loop: dict[str, Any] | None, psi: dict[str, Any] | None, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    # a panel: (title, bar labels, serial s, concurrent s); rows: (panels, footer line)
    rows: list[tuple[list[tuple[str, list[str], list[float], list[float]]], str]] = []
    if loop and (loop.get("pair") or loop.get("small")):
        panels = []
        if loop.get("pair"):
            p = loop["pair"]
            panels.append(((f"{p['jobs']} compute jobs, {p['rtt_ms']:g} ms RTT\n"
                           "(rep3: 3x 1024 matmul + 10^6 lt each)"), [f"{p['jobs']} jobs"],
                           [p["serial_s"]], [p["concurrent_s"]]))
        for sm in sorted(loop.get("small", []), key=lambda sm: sm["rtt_ms"]):
            panels.append(((f"{sm['jobs']:,} small jobs, {sm['rtt_ms']:g} ms RTT\n"
                           "(8-element mul, lt, reveal; rep3)"), [f"{sm['jobs']:,} jobs"],
                           [sm["serial_s"]], [sm["concurrent_s"]]))
        extra = [f"one after another for {sm['jobs']:,} small jobs at {sm['rtt_ms']:g} ms RTT: "
                 f"{sm['serial_measured_jobs']} jobs measured, scaled" for sm in loop.get("small", [])
                 if sm["serial_measured_jobs"] != sm["jobs"]]
        rows.append((panels, "; ".join([provenance(loop) + " (3 parties, one process)", *extra])))
    conc_rows = (psi or {}).get("concurrency", [])
    if conc_rows:
        panels = []
        for rtt in sorted({r["rtt_ms"] for r in conc_rows}):
            got = sorted((r for r in conc_rows if r["rtt_ms"] == rtt),
                         key=lambda r: (r["protocol"], r["jobs"]))
            ids = sorted({r["ids_per_job"] for r in got})
            link = "loopback" if rtt == 0 else f"{rtt:g} ms RTT, {got[0]['bandwidth_mbps']:g} Mbit/s"
            panels.append(((f"PSI jobs of {', '.join(_pow2(i) for i in ids)} ids, {link}\n"
                           "(two processes, one TLS link)"),
                           [f"{r['protocol'].upper()}\n{r['jobs']} job{'s' if r['jobs'] > 1 else ''}"
                            for r in got],
                           [r["serial_s"] for r in got], [r["concurrent_s"] for r in got]))
        rows.append((panels, provenance(psi or {}) + "; RTT > 0: the link's in-process WAN emulator"))
    if not rows:
        print("skip: concurrency (no loop_bench pair/small or psi_bench concurrency data)",
              file=sys.stderr)
        return None
    ncols = max(len(p) for p, _ in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.9 * len(rows) + 0.9),
                             squeeze=False)
    for i, (panels, _) in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(panels):
                ax.axis("off")
                continue
            title, labels, serial, conc = panels[j]
            _pair_bars(ax, labels, serial, conc)
            ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Jobs one after another vs all at once (label: speed-up)")
    fig.tight_layout(rect=(0, 0.07 + 0.02 * len(rows), 1, 0.97))
    _footer(fig, *[line for _, line in rows])
    path = out / "concurrency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lateness(after: dict[str, Any] | None, before: dict[str, Any] | None, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if not after or not after.get("lateness"):
        print("skip: lateness (no loop_bench lateness data)", file=sys.stderr)
        return None
    workloads = list(dict.fromkeys(r["workload"] for r in after["lateness"]))
    failed = [f"after: {r['backend']} {r['workload']} failed: {r['failed']}"
              for r in after["lateness"] if "failed" in r]
    series: list[tuple[str, dict[str, float], dict[str, Any]]] = []
    for b in (before or {}).get("series", []):
        vals = {r["workload"]: r["worst_lateness_ms"] for r in b["lateness"]}
        series.append((b["label"], vals, {"color": "#b03030" if "recorded" in b["label"] else "#e07070",
                                           "hatch": "//" if "recorded" in b["label"] else None}))
    for backend, colour in (("asyncio", OURS), ("trio", OURS_2)):
        vals = {r["workload"]: r["worst_lateness_ms"] for r in after["lateness"]
                if r["backend"] == backend and "worst_lateness_ms" in r}
        if vals:
            series.append((f"after: {backend}, compute in worker threads", vals, {"color": colour}))
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    w = 0.8 / len(series)
    for i, (label, vals, style) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * w for j in range(len(workloads))]
        ys = [vals.get(wl, float("nan")) for wl in workloads]
        ax.bar(xs, ys, w, label=label, edgecolor="white", **style)
        for x, y in zip(xs, ys, strict=True):
            if not math.isnan(y):
                ax.text(x, y * 1.1, f"{y:,.0f}", ha="center", fontsize=7)
    ax.axhline(50, color="#333333", lw=0.8, ls=":", label="50 ms: issue 9's test bound")
    names = {"matmul+lt": "3x 1024x1024 matmul\n+ 10^6 lt", "mul1e7": "10^7 elementwise mul",
             "matmul2048": "2048x2048 matmul"}
    ax.set_xticks(range(len(workloads)), [names.get(wl, wl) for wl in workloads])
    ax.set_yscale("log")
    ax.set_ylim(1, max(v for _, vals, _ in series for v in vals.values()) * 30)
    ax.set_ylabel("worst lateness of a 10 ms ticker, ms (log scale)")
    ax.set_title("Host loop held by a rep3 job in simulate_async: before / after compute moved "
                 "off the loop", fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    notes = ["after: " + provenance(after), *failed]
    for b in (before or {}).get("series", []):
        notes.append(f"{b['label']}: {b['source']}")
    fig.subplots_adjust(bottom=0.24)
    _footer(fig, *notes)
    path = out / "lateness.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE / "results", help="folder of the JSON files")
    ap.add_argument("--out", type=Path, default=HERE / "plots", help="folder for the PNGs")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    psi = load(args.results / "psi_bench.json")
    compute = load(args.results / "compute_bench.json")
    loop = load(args.results / "loop_bench.json")
    before = load(args.results / "loop_bench_before.json")
    rerun = args.results / "loop_bench_before_rerun.json"
    if rerun.exists():  # loop_bench run against the tree before issue 9 (its "tree" key says which)
        data = json.loads(rerun.read_text())
        rows = [r for r in data.get("lateness", []) if r["backend"] == "asyncio"]
        failed = "".join(f"; {r['workload']} failed: {r['failed']}" for r in rows if "failed" in r)
        before = before or {"series": []}
        before["series"].append({
            "label": f"before: asyncio, re-measured on the tree at {data.get('tree', '?')}",
            "source": provenance(data) + failed,
            "lateness": [r for r in rows if "worst_lateness_ms" in r]})
    made = []
    if psi and any("s" in r for r in psi.get("size", [])):
        made.append(plot_psi(psi, args.out))
    if compute and compute.get("rows"):
        made.append(plot_compute(compute, args.out))
    made.append(plot_concurrency(loop, psi, args.out))
    made.append(plot_lateness(loop, before, args.out))
    for p in made:
        if p is not None:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
