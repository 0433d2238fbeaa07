"""Micro-benchmark of the protocol kernels (no scheduler, no links): mul and matmul.

    .venv/bin/python bench/ops_kernel_bench.py [--reps 3] [--sizes 256,1024] [--n 1000000]

Every party's step runs in this one process through ``run_local`` (sans-IO, payloads handed over
by reference), so a time is the SUM of all parties' local compute for one op -- triple dealing,
PRG expansion, masking, the products -- with no network. Inputs are shared before the clock
starts; the result is not revealed. Reported: the best of ``--reps`` runs. SPU's simulator
figures (2-core machine, issue 3) are printed beside them for orientation; the end-to-end
comparison in the same run is bench/compute_bench.py.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mpcactors._log import configure_logging
from mpcactors.ops._comm import run_local
from mpcactors.ops._context import local_contexts
from mpcactors.ops._matmul import ring_matmul
from mpcactors.ops._registry import make_protocol

SETUPS = {
    "semi2k (2 + dealer)": ("semi2k", ("alice", "bob", "carol"), "carol"),
    "semi2k (trusted-first-party)": ("semi2k", ("alice", "bob"), "trusted-first-party"),
    "semi2k (3 + dealer)": ("semi2k", ("alice", "bob", "carol", "dave"), "dave"),
    "rep3": ("rep3", ("alice", "bob", "carol"), None),
}
# SPU 0.9.5 simulator on this machine (issue 3): seconds.
SPU = {
    ("semi2k", "mul"): 0.29,
    ("semi2k", "matmul 256"): 0.082,
    ("rep3", "mul"): 0.28,
    ("rep3", "matmul 256"): 0.071,
}


class Setup:
    def __init__(self, protocol: str, parties: tuple[str, ...], dealer: str | None) -> None:
        self.protocol = protocol
        self.parties = parties
        self.protos = {p: make_protocol(protocol, p, parties, dealer=dealer) for p in parties}
        self.ctxs = local_contexts(parties)
        self.op = 0

    def run(self, fn: Callable[..., Any]) -> dict[str, Any]:
        self.op += 1
        steps = {p: fn(self.protos[p], self.ctxs[p].child(self.op)) for p in self.parties}
        return run_local(steps)[0]

    def share(self, value: np.ndarray) -> dict[str, Any]:
        owner = self.parties[0]
        return self.run(
            lambda pr, ctx: pr.share(ctx, owner, value if pr.party == owner else None, None)
        )


def best(reps: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``reps`` runs. CPU time counts every thread of the
    process (BLAS threads too), so it stays meaningful when other processes load the cores."""
    runs = []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    configure_logging("error")  # the trusted-first-party warning, once per party
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, tuple[float, float], float | None]] = []

    for n in sizes:
        a = rng.integers(0, 2**64, (n, n), dtype=np.uint64)
        b = rng.integers(0, 2**64, (n, n), dtype=np.uint64)
        rows.append(
            (
                "ring_matmul (one product)",
                f"matmul {n}",
                best(args.reps, lambda a=a, b=b: ring_matmul(a, b)),
                None,
            )
        )

    for label, (protocol, parties, dealer) in SETUPS.items():
        s = Setup(protocol, parties, dealer)
        x = rng.integers(0, 2**64, args.n, dtype=np.uint64)
        sx, sy = s.share(x), s.share(x)
        t = best(
            args.reps,
            lambda s=s, sx=sx, sy=sy: s.run(
                lambda pr, ctx: pr.mul(ctx, sx[pr.party], sy[pr.party])
            ),
        )
        spu = SPU.get((protocol, "mul")) if args.n == 1_000_000 else None  # SPU's size only
        rows.append((label, "mul", t, spu))
        for n in sizes:
            m = rng.integers(0, 2**64, (n, n), dtype=np.uint64)
            sa, sb = s.share(m), s.share(m)
            reps = args.reps if n <= 512 else 1
            t = best(
                reps,
                lambda s=s, sa=sa, sb=sb: s.run(
                    lambda pr, ctx: pr.matmul(ctx, sa[pr.party], sb[pr.party])
                ),
            )
            rows.append((label, f"matmul {n}", t, SPU.get((protocol, f"matmul {n}"))))

    print(f"{'protocol':30} {'op':12} {'wall s':>8} {'cpu s':>8} {'SPU sim':>8} {'SPU/ours':>8}")
    for label, op, (wall, cpu), spu in rows:
        name = op if op != "mul" else f"mul {args.n:.0e}"
        ref = f"{spu:8.3f} {spu / wall:8.2f}" if spu is not None else ""
        print(f"{label:30} {name:12} {wall:8.3f} {cpu:8.3f} {ref}")
    load = os.getloadavg()[0]
    print(
        "\nseconds: all parties' local compute for one op, best of reps, in one process "
        f"({os.cpu_count()} cores, load average {load:.1f} at the end"
        + ("; other processes were busy: wall times are inflated" if load > 1.5 else "")
        + ")."
    )


if __name__ == "__main__":
    main()
