"""Run one op in SecretFlow SPU's in-process simulator and print a JSON line (run by
compute_bench.py with the python of a virtualenv that has ``spu==0.9.5``; not imported by
mpcactors).

    /path/to/spu-venv/bin/python bench/spu_sim.py --proto SEMI2K --op mul --reps 3
    /path/to/spu-venv/bin/python bench/spu_sim.py --proto CHEETAH --op mul --reps 1  # 2 parties, no dealer
    /path/to/spu-venv/bin/python bench/spu_sim.py --proto CHEETAH --op matmul1024x1024x256 --reps 1

The timed part is ``Runtime.run`` of the compiled executable at every party (threads, in-memory
links), i.e. without compilation, input sharing and reconstruction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import spu.api as spu_api
import spu.utils.frontend as spu_fe
from spu import libspu


def data(op: str) -> tuple[object, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    if op == "mul":
        return (lambda a, b: a * b), [rng.standard_normal(1_000_000), rng.standard_normal(1_000_000)]
    if op == "lt":
        return (lambda a, b: a < b), [rng.standard_normal(1_000_000), rng.standard_normal(1_000_000)]
    if op == "sigmoid":
        return (lambda a, b: 1 / (1 + jnp.exp(-a))), [rng.standard_normal(1_000_000), rng.standard_normal(1)]
    if op.startswith("matmul"):  # matmulN (N x N @ N x N) or matmulMxKxN
        m, k, n = (int(x) for x in op[6:].split("x")) if "x" in op else (int(op[6:]),) * 3
        return (lambda a, b: a @ b), [rng.standard_normal((m, k)), rng.standard_normal((k, n))]
    if op == "lr":
        r = np.random.default_rng(0)
        x0 = r.standard_normal((10000, 20))
        wt = r.standard_normal(20)
        y = ((x0 @ wt + 0.5 * r.standard_normal(10000)) > 0).astype(np.float64)

        def lr(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
            w = jnp.zeros(x.shape[1])
            for _ in range(3):
                w = w - 0.1 * (x.T @ (1 / (1 + jnp.exp(-(x @ w))) - y))
            return w

        return lr, [x0 * 0.1, y]
    raise ValueError(op)


def run_once(nparties: int, config: object, executable: object, args: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    io = spu_api.Io(nparties, config)
    shares = [io.make_shares(np.asarray(a, dtype=np.float32), libspu.Visibility.VIS_SECRET) for a in args]
    desc = libspu.link.Desc()
    for rank in range(nparties):
        desc.add_party(f"p{rank}", f"thread_{rank}")
    outs: list[object] = [None] * nparties
    times = [0.0] * nparties

    def party(rank: int) -> None:
        rt = spu_api.Runtime(libspu.link.create_mem(desc, rank), libspu.RuntimeConfig(config))
        for i, s in enumerate(shares):
            rt.set_var(executable.input_names[i], s[rank])
        t0 = time.perf_counter()
        rt.run(executable)
        times[rank] = time.perf_counter() - t0
        outs[rank] = [rt.get_var(n) for n in executable.output_names]

    threads = [threading.Thread(target=party, args=(r,)) for r in range(nparties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = [np.asarray(io.reconstruct(list(o))) for o in zip(*outs)]  # type: ignore[arg-type]
    return values, max(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True, choices=["SEMI2K", "ABY3", "CHEETAH"])
    ap.add_argument("--op", required=True)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    nparties = 3 if a.proto == "ABY3" else 2
    config = libspu.RuntimeConfig(protocol=getattr(libspu.ProtocolKind, a.proto), field=libspu.FieldType.FM64)
    fn, args = data(a.op)
    args32 = [np.asarray(x, dtype=np.float32) for x in args]
    executable, _ = spu_fe.compile(
        spu_fe.Kind.JAX, fn, args32, {}, [f"in{i}" for i in range(len(args))],
        [libspu.Visibility.VIS_SECRET] * len(args), lambda outs: [f"out{i}" for i in range(len(outs))],
    )
    run_once(nparties, config, executable, args)  # warm-up
    runs = []
    value = None
    for _ in range(a.reps):
        values, t = run_once(nparties, config, executable, args)
        runs.append(t)
        value = values[0]
    ref = np.asarray(jax.jit(fn)(*args32))
    if a.op == "lt":
        check = f"mismatch {np.mean(value.astype(bool) != ref.astype(bool)):.1e}"
    elif a.op == "lr":
        x, y = args
        acc = lambda w: float(np.mean((x @ w > 0) == (y > 0.5)))
        check = f"acc {acc(value):.4f} vs plain {acc(ref):.4f}"
    else:
        check = f"max abs err {np.max(np.abs(value - ref)):.1e}"
    print(json.dumps({"proto": a.proto, "op": a.op, "median_run_s": statistics.median(runs), "runs": runs, "check": check}))


if __name__ == "__main__":
    main()
