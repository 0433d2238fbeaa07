"""Time the HE cross terms of a matrix triple (mpcactors/ops/_he_triples.py) beside SPU CHEETAH.

    OMP_NUM_THREADS=1 python bench/he_triples_bench.py --sizes 64,256 [--mul 1000000] \
        [--spu-python /work/spu-venv/bin/python]

Both holders run in this process (``run_local``), so the CPU time is the two holders' together
and the wall time is the two one after the other; bytes are what each holder sends. With
``--spu-python`` each size's CHEETAH matmul (``bench/spu_sim.py``, 2 parties in threads) runs
right after ours. Needs a Python where ``import openfhe`` works (its 1.6.1 wheel: CPython 3.10).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # OpenFHE's OpenMP pool spins on a shared host

import numpy as np

from mpcactors.ops._comm import Exchange, Step, run_local
from mpcactors.ops._he_triples import he_cross_products, he_cross_terms, plan_blocks, primes_for
from mpcactors.ops._prg import Prg

HERE = Path(__file__).resolve().parent


def _size(obj: Any) -> int:
    if isinstance(obj, bytes | bytearray):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_size(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_size(v) for v in obj)
    return 0


def _counting(gen: Step[Any], sent: list[int]) -> Step[Any]:
    reply = None
    try:
        while True:
            ex: Exchange = gen.send(reply) if reply is not None else next(gen)
            sent[0] += _size(dict(ex.send))
            reply = yield ex
    except StopIteration as stop:
        return stop.value


def _check(a: list[np.ndarray], b: list[np.ndarray], got: np.ndarray, samples: int = 64) -> bool:
    """Sampled entries of A_0 B_1 + A_1 B_0 mod 2^64, in Python integers."""
    rng = np.random.default_rng(7)
    for r, c in zip(
        rng.integers(0, got.shape[0], samples), rng.integers(0, got.shape[1], samples), strict=True
    ):
        want = sum(int(x) * int(y) for x, y in zip(a[0][r], b[1][:, c], strict=True))
        want += sum(int(x) * int(y) for x, y in zip(a[1][r], b[0][:, c], strict=True))
        if want % (1 << 64) != int(got[r, c]):
            return False
    return True


def _both_holders(fn: Any, a: list[np.ndarray], b: list[np.ndarray]) -> tuple[Any, int, float, float, dict[str, list[int]]]:
    """Run ``fn`` (he_cross_terms / he_cross_products) at alice (leader) and bob in this process:
    (results, rounds, wall s, CPU s, bytes sent per holder)."""
    sent = {"alice": [0], "bob": [0]}
    steps = {
        "alice": _counting(fn("bob", a[0], b[0], Prg(os.urandom(32)), leader=True), sent["alice"]),
        "bob": _counting(fn("alice", a[1], b[1], Prg(os.urandom(32)), leader=False), sent["bob"]),
    }
    wall, cpu = time.perf_counter(), time.process_time()
    res, rounds = run_local(steps)
    return res, rounds, time.perf_counter() - wall, time.process_time() - cpu, sent


def ours(size: int) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    a = [rng.integers(0, 1 << 64, (size, size), dtype=np.uint64) for _ in range(2)]
    b = [rng.integers(0, 1 << 64, (size, size), dtype=np.uint64) for _ in range(2)]
    res, rounds, wall, cpu, sent = _both_holders(he_cross_terms, a, b)
    with np.errstate(over="ignore"):
        got = res["alice"] + res["bob"]
    plan = plan_blocks(size, size, size, 16384)
    return {
        "op": f"matmul{size} cross terms (HE)",
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "rounds": rounds,
        "mb_sent_each": [round(sent[p][0] / 2**20, 1) for p in ("alice", "bob")],
        "blocks": [plan.mb, plan.kb, plan.nb],
        "primes": len(primes_for(size)),
        "check": _check(a, b, got),
        "load": os.getloadavg()[0],
    }


def ours_mul(size: int) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    a = [rng.integers(0, 1 << 64, size, dtype=np.uint64) for _ in range(2)]
    b = [rng.integers(0, 1 << 64, size, dtype=np.uint64) for _ in range(2)]
    res, rounds, wall, cpu, sent = _both_holders(he_cross_products, a, b)
    with np.errstate(over="ignore"):
        ok = bool(np.array_equal(res["alice"] + res["bob"], a[0] * b[1] + a[1] * b[0]))
    return {
        "op": f"mul {size} cross terms (HE, slots)",
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "rounds": rounds,
        "mb_sent_each": [round(sent[p][0] / 2**20, 1) for p in ("alice", "bob")],
        "check": ok,
        "load": os.getloadavg()[0],
    }


def cheetah(spu_python: str, op: str) -> dict[str, Any]:
    cmd = [spu_python, str(HERE / "spu_sim.py"), "--proto", "CHEETAH", "--op", op, "--reps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    res = (
        json.loads(lines[-1]) if lines else {"error": f"exit {out.returncode}: {out.stderr[-300:]}"}
    )
    res["load"] = os.getloadavg()[0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--mul", type=int, default=0, help="also elementwise products of this size")
    ap.add_argument("--spu-python", default=None)
    a = ap.parse_args()
    for size in (int(s) for s in a.sizes.split(",") if s):
        print(json.dumps(ours(size)), flush=True)
        if a.spu_python:
            print(json.dumps(cheetah(a.spu_python, f"matmul{size}")), flush=True)
    if a.mul:
        print(json.dumps(ours_mul(a.mul)), flush=True)
        if a.spu_python and a.mul == 1_000_000:  # spu_sim's mul is 10^6 elements
            print(json.dumps(cheetah(a.spu_python, "mul")), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
