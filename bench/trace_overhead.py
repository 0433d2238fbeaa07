"""What recording a trace costs: the same simulated jobs with and without ``trace=``.

Two measurements per workload:

* A/B: each workload ``--repeat`` times in each mode, alternating (so a busy moment of the host
  hits both); the median and the smallest job time of each mode. A job's time is measured
  inside the program (its first op to its result, the slowest party), so it holds every trace
  hook and none of the node's start and stop; writing the file after the job is timed apart.
  On a busy host the spread of job times is larger than the effect.
* Hooks: how often each trace hook runs in one traced job, times what one call costs (timeit,
  best of 5), against the job's CPU time without tracing (best of ``--repeat``, every step
  inline): the recording's cost, robust to a busy host.

Workloads: many small ops (the worst case for tracing: one event per op step, frame and wait,
little compute per event), and a vector job (comparisons and products of 10^4 elements).

    python bench/trace_overhead.py --repeat 25
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
import types
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

import mpcactors as mpc
from mpcactors import _trace
from mpcactors.link._frames import Chunk

Program = Callable[[Any], Awaitable[Any]]


async def many_small_ops(job: Any) -> Any:
    x = job.input("alice", np.arange(16.0))
    y = job.input("bob", np.ones(16))
    acc = []
    for i in range(40):  # 40 independent chains of 4 products: 160 muls, 4 rounds deep
        t = x * (i + 1.0)
        for _ in range(4):
            t = t * y
        acc.append(t)
    return await job.reveal(mpc.stack(acc).sum())


async def vectors(job: Any) -> Any:
    x = job.input("alice", np.linspace(-5, 5, 10_000))
    y = job.input("bob", np.linspace(5, -5, 10_000))
    return await job.reveal([(x * y).sum(), mpc.where(x > y, x, y).sum()])


def timed(program: Program, trace: Path | None) -> float:
    """The job's time (seconds, slowest party) of one simulation of ``program``."""

    async def measured(job: Any) -> float:
        t0 = time.perf_counter()
        await program(job)
        return time.perf_counter() - t0

    out = mpc.simulate(measured, timeout=300, **({"trace": trace} if trace is not None else {}))
    return max(out.values())


HOOKS = {_trace.JobTrace: ("step", "flushed", "blocked_on", "unblocked", "finished"),
         _trace.Tracer: ("frame_sent", "frames_written", "frame_received")}  # fmt: skip


def hook_calls(program: Program) -> Counter[str]:
    """How often each hook runs in one traced simulation of ``program``."""
    calls: Counter[str] = Counter()
    saved = {(cls, n): getattr(cls, n) for cls, names in HOOKS.items() for n in names}
    for (cls, name), fn in saved.items():

        def counted(self: Any, *a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            calls[_name] += 1
            return _fn(self, *a, **k)

        setattr(cls, name, counted)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mpc.simulate(program, timeout=300, compute_threads=0, trace=Path(tmp) / "t.json")
    finally:
        for (cls, name), fn in saved.items():
            setattr(cls, name, fn)
    return calls


def hook_costs() -> dict[str, float]:
    """Seconds per call of each hook (a step: beyond the step itself), best of 5."""
    tracer = _trace.Tracer("alice")
    job = tracer.jobs["j"] = _trace.JobTrace(tracer, "j", "compute")
    dep = types.SimpleNamespace(op_id=1)
    node = types.SimpleNamespace(op_id=5, name="mul", round=0, depth=3, inputs=[dep, dep], expect=frozenset({"bob"}))
    chunks = (Chunk("j", "mpc", 0, 0, 100, b"x" * 100), Chunk("j", "mpc", 1, 0, 100, b"x" * 100))

    def advance(n: Any, j: Any, r: Any) -> None:
        return None

    def sent() -> None:
        job.msg_ops[("bob", 0)] = [(5, 0)]
        tracer.frame_sent("bob", 1, chunks)

    def best(fn: Callable[[], Any], n: int = 20_000) -> float:
        t = min(timeit.repeat(fn, number=n, repeat=5)) / n
        job.steps.clear(), job.waits.clear(), job.frames.clear(), job.received.clear()
        return t

    blocked = best(lambda: job.blocked_on(node))
    return {
        "step": best(lambda: job.step(advance, node, None, None)) - best(lambda: advance(node, None, None)),
        "blocked_on": blocked,
        "unblocked": best(lambda: (job.blocked_on(node), job.unblocked(node))) - blocked,
        "finished": best(lambda: job.finished(node, 3)),
        "flushed": best(lambda: job.flushed("bob", [[5, 0, 3, b""]])),
        "frame_sent": best(sent),
        "frames_written": best(lambda: tracer.frames_written("bob")),
        "frame_received": best(lambda: tracer.frame_received("bob", 1, chunks)),
    }


def cpu_time(program: Program) -> float:
    t0 = time.thread_time()
    mpc.simulate(program, timeout=300, compute_threads=0)
    return time.thread_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    writes: list[float] = []
    write = _trace.TraceFile.write

    def timed_write(self: _trace.TraceFile, path: Any) -> None:
        t0 = time.perf_counter()
        write(self, path)
        writes.append(time.perf_counter() - t0)

    _trace.TraceFile.write = timed_write  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.json"
        for name, program in (("many small ops", many_small_ops), ("vectors 10^4", vectors)):
            timed(program, None)  # warm up (imports, first-call costs)
            timed(program, path)
            writes.clear()
            off, on = [], []
            for _ in range(args.repeat):
                off.append(timed(program, None))
                on.append(timed(program, path))
            a, b = statistics.median(off), statistics.median(on)
            pairs = statistics.median(y / x for x, y in zip(off, on, strict=True)) - 1
            print(
                f"{name}: job time off {a * 1000:.1f} ms, on {b * 1000:.1f} ms (median of {args.repeat}: "
                f"{100 * (b - a) / a:+.1f}%; smallest {min(off) * 1000:.1f} vs {min(on) * 1000:.1f} ms: "
                f"{100 * (min(on) - min(off)) / min(off):+.1f}%; median of the pairs' ratios "
                f"{100 * pairs:+.1f}%); writing the {path.stat().st_size / 1024:.0f} KiB "
                f"file (3 parties) after the job: {statistics.median(writes) * 1000:.1f} ms"
            )
    costs = hook_costs()
    for name, program in (("many small ops", many_small_ops), ("vectors 10^4", vectors)):
        calls = hook_calls(program)
        spent = sum(n * costs[h] for h, n in calls.items())
        cpu = min(cpu_time(program) for _ in range(args.repeat))
        print(
            f"{name}: {sum(calls.values())} hook calls ({', '.join(f'{h} {n}' for h, n in calls.items())}) "
            f"x their cost = {spent * 1000:.2f} ms; the job's CPU time untraced {cpu * 1000:.1f} ms: "
            f"recording costs {100 * spent / cpu:.1f}%"
        )


if __name__ == "__main__":
    main()
