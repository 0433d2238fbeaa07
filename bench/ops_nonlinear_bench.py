"""Micro-benchmark of comparisons and non-linear functions (no scheduler, no links).

    .venv/bin/python bench/ops_nonlinear_bench.py [--n 10000,1000000] [--reps 3]
        [--ops reciprocal,log] [--protocols semi2k,semi2k-tfp,semi2k-ot,rep3]
        [--spu-python /work/spu-venv/bin/python]

Every party's step runs in this one process through ``run_local`` (sans-IO, payloads handed over
by reference), so a time is the SUM of all parties' local compute for one op -- correlated
randomness (dealt, or made by OT for ``semi2k-ot``), masking, the boolean circuit, the series --
with no network. Inputs are shared before the clock starts; results are revealed afterwards
only to measure the error against float64 numpy. Reported: the best of ``--reps`` runs, the
rounds the op needs, and the max abs error (for reciprocal, division, exp: over |result| <= 1).
"first" is the first run's time: at 10^6 it includes the first touch of the op's large arrays
(page faults), which later runs in one process mostly reuse.

Before/after: ``PYTHONPATH=/path/to/old/tree`` runs the same ops on another checkout of the
package (e.g. ``git archive <commit> mpcactors | tar -x -C /tmp/old``); the first output line
names the package path that was measured.

``--spu-python``: also time SPU 0.9.5's simulator (``bench/spu_sim.py``'s ``run_once``: threads,
in-memory links, compiled JAX) on the same op where SPU has it (reciprocal ``1/x``, log, sqrt,
rsqrt, exp, sigmoid; SEMI2K beside semi2k, ABY3 beside rep3), in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mpcactors
from mpcactors.ops import _compare, _nonlinear
from mpcactors.ops._comm import run_local
from mpcactors.ops._context import local_contexts
from mpcactors.ops._registry import make_protocol
from mpcactors.ops._ring import decode, encode

HERE = Path(__file__).resolve().parent
# name -> (protocol, parties, dealer); semi2k-tfp is the 2-party set-up of issue 17's jit run
SETUPS = {
    "semi2k": ("semi2k", ("alice", "bob", "carol"), "carol"),
    "semi2k-tfp": ("semi2k", ("alice", "bob"), "trusted-first-party"),
    "semi2k-ot": ("semi2k", ("alice", "bob"), "none"),
    "rep3": ("rep3", ("alice", "bob", "carol"), None),
}
SPU_PROTO = {"semi2k": "SEMI2K", "semi2k-tfp": "SEMI2K", "semi2k-ot": "CHEETAH", "rep3": "ABY3"}
F = 18


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(x / 2.0))


def _logspace(g: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(g.uniform(np.log(lo), np.log(hi), n))


def _signed(g: np.random.Generator, n: int) -> np.ndarray:
    return _logspace(g, 1e-2, 1e4, n) * g.choice([-1.0, 1.0], n)


# name -> (step(ctx, proto, *shares), number of inputs, input sampler, plaintext reference,
#          SPU's JAX function or None)
Sampler = Callable[[np.random.Generator, int], np.ndarray]
OPS: dict[str, tuple[Callable[..., Any], int, Sampler, Any, str | None]] = {
    "less": (
        _compare.less,
        2,
        lambda g, n: g.uniform(-1e3, 1e3, n),
        lambda x, y: (x < y) * 1.0,
        None,
    ),
    "sigmoid": (_nonlinear.sigmoid, 1, lambda g, n: g.uniform(-12, 12, n), _sigmoid, None),
    "exp": (_nonlinear.exp, 1, lambda g, n: g.uniform(-10, 10, n), np.exp, "jnp.exp(a)"),
    "reciprocal": (_nonlinear.reciprocal, 1, _signed, lambda x: 1.0 / x, "1 / a"),
    "division": (
        _nonlinear.division,
        2,
        lambda g, n: _signed(g, n),
        lambda x, y: x / y,
        None,
    ),
    "log": (
        _nonlinear.log,
        1,
        lambda g, n: _logspace(g, 1e-3, 1.6e4, n),
        np.log,
        "jnp.log(a)",
    ),
    "sqrt": (_nonlinear.sqrt, 1, lambda g, n: g.uniform(0, 1e4, n), np.sqrt, "jnp.sqrt(a)"),
    "rsqrt": (
        _nonlinear.rsqrt,
        1,
        lambda g, n: _logspace(g, 1e-3, 1.6e4, n),
        lambda x: 1.0 / np.sqrt(x),
        "jax.lax.rsqrt(a)",
    ),
}

# Run by the SPU venv's python: compile fn once, time run_once (all parties' threads) per rep.
_SPU_SNIPPET = """
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
import jax, jax.numpy as jnp
import spu.utils.frontend as spu_fe
from spu import libspu
import spu_sim
x = np.load({npy!r}).astype(np.float32)
fn = lambda a: {expr}
nparties = 3 if {proto!r} == "ABY3" else 2
config = libspu.RuntimeConfig(protocol=getattr(libspu.ProtocolKind, {proto!r}),
                              field=libspu.FieldType.FM64)
ex, _ = spu_fe.compile(spu_fe.Kind.JAX, fn, [x], {{}}, ["in0"], [libspu.Visibility.VIS_SECRET],
                       lambda outs: [f"out{{i}}" for i in range(len(outs))])
spu_sim.run_once(nparties, config, ex, [x])
best = min(spu_sim.run_once(nparties, config, ex, [x])[1] for _ in range({reps}))
print(json.dumps({{"seconds": best}}))
"""


def spu_time(python: str, expr: str, proto: str, x: np.ndarray, reps: int) -> float | None:
    """Best-of-``reps`` seconds of SPU's simulator on ``fn(x)``; None if it fails."""
    npy = Path("/tmp") / f"ops_nonlinear_bench_{proto}_{x.size}.npy"
    np.save(npy, x)
    code = _SPU_SNIPPET.format(here=str(HERE), npy=str(npy), expr=expr, proto=proto, reps=reps)
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, timeout=3600
        )
        return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        print(f"  (SPU {proto} failed: {exc})", file=sys.stderr)
        return None
    finally:
        npy.unlink(missing_ok=True)


class Setup:
    def __init__(self, protocol: str, parties: tuple[str, ...], dealer: str | None) -> None:
        self.parties = parties
        self.protos = {
            p: make_protocol(protocol, p, parties, fxp_bits=F, dealer=dealer) for p in parties
        }
        self.ctxs = local_contexts(parties)
        self.op = 0
        setup = {p: pr.job_setup(self.ctxs[p].child(-1), b"bench") for p, pr in self.protos.items()}
        if any(st is not None for st in setup.values()):  # semi2k without a dealer: base OTs
            run_local({p: st for p, st in setup.items() if st is not None})

    def run(self, fn: Callable[..., Any], *args: dict[str, Any]) -> tuple[dict[str, Any], int]:
        self.op += 1
        steps = {
            p: fn(self.ctxs[p].child(self.op), self.protos[p], *(a[p] for a in args))
            for p in self.parties
        }
        return run_local(steps)

    def share(self, value: np.ndarray) -> dict[str, Any]:
        owner = self.parties[0]
        ring = encode(value, F)
        return self.run(
            lambda ctx, pr: pr.share(ctx, owner, ring if pr.party == owner else None, None)
        )[0]

    def reveal(self, shares: dict[str, Any], scale: int) -> np.ndarray:
        res, _ = self.run(lambda ctx, pr, s: pr.reveal(ctx, s), shares)
        return decode(res[self.parties[0]], scale)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", default="10000,1000000", help="comma-separated sizes")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", default="reciprocal")
    ap.add_argument("--protocols", default="semi2k-tfp,semi2k,rep3")
    ap.add_argument("--spu-python", default=None, help="python of a venv with spu==0.9.5")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    print(f"# package: {Path(mpcactors.__file__).parent}")
    print(
        f"{'op':<11} {'protocol':<10} {'n':>8} {'rounds':>6} {'seconds':>8} {'first':>8}"
        f" {'max abs err':>11}  SPU sim (best of reps, after a warm-up run)"
    )
    for n in (int(v) for v in args.n.split(",")):
        for name in args.ops.split(","):
            fn, arity, sample, ref, spu_expr = OPS[name]
            rng = np.random.default_rng(0)
            inputs = [sample(rng, n) for _ in range(arity)]
            if name == "division":
                inputs[0] = inputs[1] * rng.uniform(-20, 20, n)
            for proto_name in args.protocols.split(","):
                setup = Setup(*SETUPS[proto_name])
                shares = [setup.share(v) for v in inputs]
                times: list[float] = []
                out: dict[str, Any] = {}
                rounds = 0
                for _ in range(max(1, args.reps)):
                    t = time.perf_counter()
                    out, rounds = setup.run(fn, *shares)
                    times.append(time.perf_counter() - t)
                scale = 0 if name == "less" else F
                got = setup.reveal(out, scale)
                want = ref(*(decode(encode(v, F), F) for v in inputs))
                err = np.abs(got - want)
                if name in ("reciprocal", "division", "exp"):
                    err = err[np.abs(want) <= 1]
                spu_s = "-"
                if args.spu_python and spu_expr:
                    spu = spu_time(
                        args.spu_python, spu_expr, SPU_PROTO[proto_name], inputs[0], args.reps
                    )
                    if spu is not None:
                        spu_s = f"{spu:.3f} s ({SPU_PROTO[proto_name]}; ours {spu / min(times):.2f}x faster)"
                print(
                    f"{name:<11} {proto_name:<10} {n:>8} {rounds:>6} {min(times):>8.3f}"
                    f" {times[0]:>8.3f} {float(err.max()):>11.2e}  {spu_s}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
