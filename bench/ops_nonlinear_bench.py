"""Micro-benchmark of comparisons and non-linear functions (no scheduler, no links).

    .venv/bin/python bench/ops_nonlinear_bench.py [--n 1000000] [--reps 3] [--ops less,sigmoid]

Every party's step runs in this one process through ``run_local`` (sans-IO, payloads handed over
by reference), so a time is the SUM of all parties' local compute for one op -- correlated
randomness, masking, the boolean circuit, the series -- with no network. Inputs are shared before
the clock starts; results are revealed afterwards only to measure the error against float64
numpy. Reported: the best of ``--reps`` runs, the rounds the op needs, and the max abs error.
SPU 0.9.5's simulator on this machine (issue 4): x < y on 10^6 takes 1.46 s in SEMI2K and
1.89 s in ABY3.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mpcactors.ops import _compare, _nonlinear
from mpcactors.ops._comm import run_local
from mpcactors.ops._context import local_contexts
from mpcactors.ops._registry import make_protocol
from mpcactors.ops._ring import decode, encode

SETUPS = {
    "semi2k": ("semi2k", ("alice", "bob", "carol"), "carol"),
    "rep3": ("rep3", ("alice", "bob", "carol"), None),
}
SPU = {("semi2k", "less"): 1.46, ("rep3", "less"): 1.89}
F = 18


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(x / 2.0))


# name -> (step(ctx, proto, *shares), number of inputs, input sampler, plaintext reference)
OPS: dict[
    str, tuple[Callable[..., Any], int, Callable[[np.random.Generator, int], np.ndarray], Any]
] = {
    "less": (_compare.less, 2, lambda g, n: g.uniform(-1e3, 1e3, n), lambda x, y: (x < y) * 1.0),
    "sigmoid": (_nonlinear.sigmoid, 1, lambda g, n: g.uniform(-12, 12, n), _sigmoid),
    "exp": (_nonlinear.exp, 1, lambda g, n: g.uniform(-10, 10, n), np.exp),
    "reciprocal": (
        _nonlinear.reciprocal,
        1,
        lambda g, n: np.exp(g.uniform(np.log(1e-2), np.log(1e4), n)),
        lambda x: 1.0 / x,
    ),
}


class Setup:
    def __init__(self, protocol: str, parties: tuple[str, ...], dealer: str | None) -> None:
        self.parties = parties
        self.protos = {
            p: make_protocol(protocol, p, parties, fxp_bits=F, dealer=dealer) for p in parties
        }
        self.ctxs = local_contexts(parties)
        self.op = 0

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
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", default="less,sigmoid")
    ap.add_argument("--protocols", default="semi2k,rep3")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(0)
    print(
        f"{'op':<11} {'protocol':<8} {'n':>9} {'rounds':>6} {'seconds':>8} {'max abs err':>11}  SPU sim"
    )
    for name in args.ops.split(","):
        fn, arity, sample, ref = OPS[name]
        inputs = [sample(rng, args.n) for _ in range(arity)]
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
            err = float(np.max(np.abs(got - want)))
            spu = SPU.get((proto_name, name))
            spu_s = f"{spu:.2f} s ({spu / min(times):.1f}x)" if spu else "-"
            print(
                f"{name:<11} {proto_name:<8} {args.n:>9} {rounds:>6} {min(times):>8.3f} {err:>11.2e}  {spu_s}"
            )


if __name__ == "__main__":
    main()
