"""``mpcactors.jit`` of SPU's guide ``logit_regression`` beside SPU's ``spu.jit`` of it (issue 17).

    .venv/bin/python bench/jit_bench.py [--setups semi2k,rep3,semi2k-ot] [--reps 3] [--record]
        [--spu-python /work/spu-venv/bin/python] [--no-spu]

Same program (the guide's, examples/jax_logistic_regression.py, unchanged), same data (SPU's
benchmark data: 10000 x 20 features scaled by 0.1, 3 epochs, step 0.1), same run:

- SPU 0.9.5's simulator, ``spu.jit`` of the guide's program (run by the SPU venv's python: this
  file with ``--spu-worker PROTO``; bench/spu_sim.py's ``run_once`` times ``Runtime.run`` at
  every party, without compilation, input sharing and reconstruction);
- ``mpcactors.jit`` of it, with the rewrites (docs/JIT.md "Rewrites"): the labels declared 0/1
  (``job.input(..., binary=True)``, "jit-binary": the *case-split* rule applies) and not ("jit");
  and without the rewrites (``rewrite=False``);
- the hand-written gradient, examples/logistic_regression.py's ``train``.

Our time runs from the inputs being shared to the weights being computed (tracing, rewriting
and interpreting the jaxpr included), the slowest party, median of ``--reps``; rounds are the
job's critical-path rounds over that span (``job.statistics()``), ops the ops it added to the
graph. Setups: semi2k 2 parties with a trusted first party (SPU SEMI2K's default beaver
source), rep3 (SPU ABY3), semi2k 2 parties with no dealer (correlations by OT; SPU CHEETAH).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
SETUPS = {
    "semi2k": ("semi2k", ["alice", "bob"], {"dealer": "trusted-first-party"}, "SEMI2K"),
    "rep3": ("rep3", ["alice", "bob", "carol"], {}, "ABY3"),
    "semi2k-ot": ("semi2k", ["alice", "bob"], {"dealer": "none"}, "CHEETAH"),
}
ROWS, COLS = 10000, 20


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data() -> tuple[np.ndarray, np.ndarray]:
    """SPU's benchmark data (bench/spu_sim.py ``lr``, examples' ``synthetic``)."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((ROWS, COLS))
    wt = rng.standard_normal(COLS)
    y = ((x0 @ wt + 0.5 * rng.standard_normal(ROWS)) > 0).astype(np.float64)
    return x0 * 0.1, y


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return float(np.mean((x @ np.asarray(w, dtype=np.float64) > 0) == (y > 0.5)))


# ---- SPU (run under the SPU venv's python) -------------------------------------------------
def guide_source() -> str:
    """The guide's three functions, as examples/jax_logistic_regression.py holds them."""
    text = (EXAMPLES / "jax_logistic_regression.py").read_text()
    start = text.index("def sigmoid(x):")
    end = text.index("# ---- data and the secure run")
    return text[start:end]


def spu_worker(proto: str, reps: int) -> None:
    """Compile the guide's ``logit_regression`` with SPU and time it; print one JSON line."""
    import jax
    import jax.numpy as jnp
    import spu.utils.frontend as spu_fe
    from spu import libspu

    spec = importlib.util.spec_from_file_location("spu_sim", HERE / "spu_sim.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(HERE / "spu_sim.py")
    spu_sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spu_sim)
    run_once = spu_sim.run_once

    scope: dict[str, Any] = {"jax": jax, "jnp": jnp}
    exec(compile(guide_source(), str(EXAMPLES / "jax_logistic_regression.py"), "exec"), scope)  # noqa: S102
    fn = scope["logit_regression"]
    nparties = 3 if proto == "ABY3" else 2
    config = libspu.RuntimeConfig(protocol=getattr(libspu.ProtocolKind, proto), field=libspu.FieldType.FM64)
    args = [np.asarray(a, dtype=np.float32) for a in data()]
    executable, _ = spu_fe.compile(
        spu_fe.Kind.JAX, fn, args, {}, ["in0", "in1"], [libspu.Visibility.VIS_SECRET] * 2,
        lambda outs: [f"out{i}" for i in range(len(outs))],
    )
    run_once(nparties, config, executable, args)  # warm-up
    runs, value = [], None
    for _ in range(reps):
        values, t = run_once(nparties, config, executable, args)
        runs.append(t)
        value = values[0]
    print(json.dumps({"median_run_s": statistics.median(runs), "runs": runs, "w": np.asarray(value).tolist()}))


def run_spu(spu_python: str, proto: str, reps: int) -> dict[str, Any]:
    cmd = [spu_python, str(Path(__file__).resolve()), "--spu-worker", proto, "--reps", str(reps)]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- mpcactors -------------------------------------------------------------------------------
def run_ours(setup: str, program: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """One run of ``program`` ("jit-binary", "jit", "jit-norewrite" or "hand") in ``setup``.

    "jit-binary" is "jit" with the labels declared 0/1 (``job.input(..., binary=True)``).
    """
    import trio

    import mpcactors as mpc

    protocol, parties, options, _ = SETUPS[setup]
    guide = load_example("jax_logistic_regression")
    hand = load_example("logistic_regression")

    async def main(job: Any) -> Any:
        a = await job.input(parties[0], lambda: x)
        b = await job.input(parties[-1], lambda: y, binary=program == "jit-binary")
        s0 = job.statistics()
        t0 = trio.current_time()
        if program == "hand":
            w = hand.train(a, b)
        else:
            jitted = mpc.jit(guide.logit_regression, rewrite=program != "jit-norewrite")
            w = await jitted(a, b)
        await w
        t1 = trio.current_time()
        s1 = job.statistics()
        value = await job.reveal(w, to=parties[0])
        return {"run_s": t1 - t0, "rounds": s1.rounds - s0.rounds, "ops": s1.ops - s0.ops,
                "mb": (s1.bytes_sent - s0.bytes_sent) / 1e6, "w": value}

    out = mpc.simulate(main, parties=parties, protocol=protocol, timeout=3600, **options)
    first = out[parties[0]]
    return {**first, "run_s": max(r["run_s"] for r in out.values())}


def plain_jax(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    guide = load_example("jax_logistic_regression")
    return np.asarray(guide.logit_regression(x.astype(np.float32), y.astype(np.float32)))


def machine() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not flags:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("aes", "vaes", "avx2", "avx512f", "avx512ifma", "sha_ni") if f in have)
                break
    except OSError:
        model = platform.processor() or "cpu"
    return f"{model}, {os.cpu_count()} CPUs, flags incl. {flags}; python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setups", default="semi2k,rep3,semi2k-ot")
    ap.add_argument("--programs", default="jit-binary,jit,jit-norewrite,hand")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--spu-python", default="/work/spu-venv/bin/python")
    ap.add_argument("--no-spu", action="store_true")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--spu-worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.spu_worker:
        spu_worker(a.spu_worker, a.reps)
        return
    x, y = data()
    w_jax = plain_jax(x, y)
    print(f"plain JAX float32: accuracy {accuracy(x, y, w_jax):.4f}", flush=True)
    rows = []
    loads = [os.getloadavg()[0]]
    for setup in a.setups.split(","):
        if not a.no_spu:
            spu = run_spu(a.spu_python, SETUPS[setup][3], a.reps)
            if "error" in spu:
                rows.append({"setup": setup, "program": f"SPU {SETUPS[setup][3]} spu.jit", "note": spu["error"]})
            else:
                w = np.asarray(spu["w"])
                rows.append({"setup": setup, "program": f"SPU {SETUPS[setup][3]} spu.jit", "time": spu["median_run_s"],
                             "acc": accuracy(x, y, w), "dw": float(np.max(np.abs(w - w_jax)))})
            print(rows[-1], flush=True)
            loads.append(os.getloadavg()[0])
        for program in a.programs.split(","):
            runs = [run_ours(setup, program, x, y) for _ in range(a.reps)]
            w = np.asarray(runs[-1]["w"])
            rows.append({"setup": setup, "program": program, "time": statistics.median(r["run_s"] for r in runs),
                         "rounds": runs[-1]["rounds"], "ops": runs[-1]["ops"], "mb": runs[-1]["mb"],
                         "acc": accuracy(x, y, w), "dw": float(np.max(np.abs(w - w_jax)))})
            print({k: v for k, v in rows[-1].items()}, flush=True)
            loads.append(os.getloadavg()[0])
    table = render(rows, accuracy(x, y, w_jax))
    load = f"load average {min(loads):.1f}-{max(loads):.1f} (1-minute, sampled between rows)"
    print(table)
    print(load)
    if a.record:
        record(a, table, load)


NAMES = {
    "jit-binary": "mpcactors `mpc.jit`, labels declared 0/1",
    "jit": "mpcactors `mpc.jit` (rewrites)",
    "jit-norewrite": "mpcactors `mpc.jit(..., rewrite=False)`",
    "hand": "mpcactors hand-written gradient",
}


def render(rows: list[dict[str, Any]], plain_acc: float) -> str:
    lines = [
        f"| setup | program | time s (median) | rounds | ops | MB sent (party 0) | accuracy (plain JAX {plain_acc:.4f}) | max \\|w - w_jax\\| |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['setup']} | {r['program']} | {r['note']} | | | | | |")
            continue
        rounds = r.get("rounds", "")
        ops = r.get("ops", "")
        mb = f"{r['mb']:.1f}" if "mb" in r else ""
        lines.append(f"| {r['setup']} | {NAMES.get(r['program'], r['program'])} | {r['time']:.2f} | {rounds} | {ops} | {mb} "
                     f"| {r['acc']:.4f} | {r['dw']:.1e} |")
    return "\n".join(lines)


def record(a: argparse.Namespace, table: str, load: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        "",
        f"### jit_bench {now:%Y-%m-%d %H:%M} UTC ({machine()}; {load})",
        "",
        f"`bench/jit_bench.py --setups {a.setups} --programs {a.programs} --reps {a.reps}`: SPU's guide",
        "`logit_regression` (jax.grad, unchanged), 10000 x 20, 3 epochs; SPU 0.9.5 simulator beside ours, same run.",
        "",
        table,
    ]
    path = HERE / "RESULTS.md"
    text = path.read_text()
    heading = "## mpcactors.jit (issue 17)"
    if heading not in text:
        path.write_text(text.rstrip("\n") + "\n\n" + heading + "\n" + "\n".join(lines) + "\n")
        return
    start = text.index(heading) + len(heading)
    end = text.find("\n## ", start)  # the end of our section: the next section's heading
    end = len(text) if end < 0 else end
    path.write_text(text[:end].rstrip("\n") + "\n" + "\n".join(lines) + "\n" + text[end:])


if __name__ == "__main__":
    main()
