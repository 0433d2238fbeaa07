"""Trace events from recorded job traces: the Chrome/Perfetto trace-event JSON of docs/TRACE.md.

One file holds the parts (job traces) of one process, so one monotonic clock: times are
microseconds from the earliest job start, and ``otherData.mpcactors.parties[party].epoch_us`` is
the wall-clock time of that zero. Each party is a process; each job a set of tracks (threads):
its inline steps, its worker threads' steps, its link and its waits per peer.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._trace import TracePart

__all__ = ["FORMAT", "trace_document", "write_trace"]

FORMAT = 1  # otherData["mpcactors"]["format"]
MAX_NAMED_OPS = 32  # a frame's args name at most this many ops per job (the count is exact)


def write_trace(path: str | os.PathLike[str], parts: Sequence[TracePart]) -> None:
    """Write ``parts`` as a trace-event JSON file at ``path`` (through a temporary file)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(trace_document(parts), separators=(",", ":")))
    tmp.replace(target)


class _Tracks:
    """pids per party and tids per (party, track name), with their metadata events."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.tids: dict[tuple[str, str], int] = {}
        self.meta: list[dict[str, Any]] = []

    def pid(self, party: str) -> int:
        pid = self.pids.get(party)
        if pid is None:
            pid = self.pids[party] = len(self.pids) + 1
            self.meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": party}})
            self.meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        return pid

    def tid(self, party: str, name: str) -> tuple[int, int]:
        pid = self.pid(party)
        tid = self.tids.get((party, name))
        if tid is None:
            tid = self.tids[(party, name)] = len(self.tids) + 1
            self.meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
            self.meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
        return pid, tid


def _us(t: int, zero: int) -> float:
    return round((t - zero) / 1000, 3)


def _dur(t0: int, t1: int, zero: int) -> float:
    """A span's duration as the difference of its rounded ends, so that a span that ends when
    the next one starts does not overlap it after rounding (Perfetto wants proper nesting)."""
    return round(_us(t1, zero) - _us(t0, zero), 3)


def _merged(intervals: list[tuple[int, int, str]]) -> list[tuple[int, int, list[str]]]:
    """Overlapping intervals (t0, t1, label) merged into disjoint ones with their labels."""
    out: list[tuple[int, int, list[str]]] = []
    for t0, t1, label in sorted(intervals):
        if out and t0 <= out[-1][1]:
            last = out[-1]
            out[-1] = (last[0], max(last[1], t1), last[2] + [label])
        else:
            out.append((t0, t1, [label]))
    return out


def _job_events(part: TracePart, tracks: _Tracks, zero: int) -> list[dict[str, Any]]:
    tr = part.trace
    job, party = tr.job, part.party
    end = tr.end if tr.end is not None else time.perf_counter_ns()
    names: dict[int, str] = {}
    pid, main = tracks.tid(party, f"{job}")
    ev: list[dict[str, Any]] = [{
        "name": f"job {job}", "cat": "job", "ph": "X", "ts": _us(tr.start, zero), "dur": _dur(tr.start, end, zero),
        "pid": pid, "tid": main, "args": {"job": job, "party": party, "kind": tr.kind},
    }]  # fmt: skip
    for i, (t, name) in enumerate(tr.phases):
        t1 = tr.phases[i + 1][0] if i + 1 < len(tr.phases) else end
        ev.append({"name": name, "cat": "phase", "ph": "X", "ts": _us(t, zero), "dur": _dur(t, t1, zero), "pid": pid,
                   "tid": main, "args": {"job": job}})  # fmt: skip
    last_step: dict[int, dict[str, Any]] = {}
    workers: dict[int, int] = {}
    for t0, t1, op, name, rnd, thread, failed in sorted(tr.steps):
        names[op] = name
        if thread == tr.loop_thread:
            tid = main
        else:
            k = workers.setdefault(thread, len(workers) + 1)
            _, tid = tracks.tid(party, f"{job} / worker {k}")
        args: dict[str, Any] = {"job": job, "op_id": op, "op": name, "round": rnd, "worker": tid != main}
        if failed:
            args["failed"] = True
        e = {"name": name, "cat": "step", "ph": "X", "ts": _us(t0, zero), "dur": _dur(t0, t1, zero), "pid": pid, "tid": tid, "args": args}
        ev.append(e)
        last_step[op] = args
    for op, (depth, inputs) in tr.done.items():
        if op in last_step:
            last_step[op].update(done=True, depth=depth, inputs=list(inputs))
    for t, rounds in tr.rounds:
        ev.append({"name": f"rounds {job}", "cat": "rounds", "ph": "C", "ts": _us(t, zero), "pid": pid, "args": {"rounds": rounds}})
    by_peer: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for t0, t1, op, name, peers in tr.waits:
        for peer in peers:
            by_peer[peer].append((t0, t1, f"{name}#{op}"))
    for peer in sorted(by_peer):
        _, tid = tracks.tid(party, f"{job} / wait {peer}")
        for t0, t1, waiting in _merged(by_peer[peer]):
            ev.append({"name": f"wait {peer}", "cat": "wait", "ph": "X", "ts": _us(t0, zero), "dur": _dur(t0, t1, zero), "pid": pid,
                       "tid": tid, "args": {"job": job, "peer": peer, "ops": len(waiting), "op_names": waiting[:MAX_NAMED_OPS]}})  # fmt: skip
    for f in tr.frames:
        _, tid = tracks.tid(party, f"{job} / link {f.peer}")
        mine = f.jobs[job]
        carried = {j: {"bytes": b, "chunks": c, "ops": len(o)} for j, (b, c, o) in f.jobs.items()}
        ops = sum(len(o) for _, _, o in f.jobs.values())
        op_names = [f"{names.get(op, '?')}#{op}/r{rnd}" for op, rnd in mine[2][:MAX_NAMED_OPS]]
        ev.append({"name": f"frame -> {f.peer}", "cat": "frame", "ph": "X", "ts": _us(f.t0, zero), "dur": _dur(f.t0, max(f.t1, f.t0), zero),
                   "pid": pid, "tid": tid, "args": {
                       "job": job, "peer": f.peer, "seq": f.seq, "bytes": f.bytes, "job_bytes": mine[0],
                       "messages": f.chunks, "ops": ops, "jobs": carried, "job_ops": op_names}})  # fmt: skip
    for t, peer, n, entries in tr.flushes:
        _, tid = tracks.tid(party, f"{job} / link {peer}")
        ev.append({"name": f"flush -> {peer}", "cat": "flush", "ph": "i", "s": "t", "ts": _us(t, zero), "pid": pid, "tid": tid,
                   "args": {"job": job, "peer": peer, "message": n, "ops": entries}})  # fmt: skip
    for f in tr.received:
        _, tid = tracks.tid(party, f"{job} / link {f.peer}")
        ev.append({"name": f"frame <- {f.peer}", "cat": "frame_rx", "ph": "i", "s": "t", "ts": _us(f.t0, zero), "pid": pid, "tid": tid,
                   "args": {"job": job, "peer": f.peer, "seq": f.seq, "bytes": f.bytes, "job_bytes": f.jobs[job][0]}})  # fmt: skip
    return ev


def trace_document(parts: Sequence[TracePart]) -> dict[str, Any]:
    """Trace events of ``parts`` (one process: one monotonic clock) with their metadata."""
    tracks = _Tracks()
    zero = min((p.trace.start for p in parts), default=time.perf_counter_ns())
    wall_minus_mono = time.time_ns() - time.perf_counter_ns()
    epoch_us = (zero + wall_minus_mono) / 1000
    events: list[dict[str, Any]] = []
    parties: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    for part in parts:
        events.extend(_job_events(part, tracks, zero))
        info = parties.setdefault(part.party, {"epoch_us": epoch_us, "rtt_ms": {}})
        info["rtt_ms"].update(part.rtt_ms)
        jobs.append({"party": part.party, "job": part.trace.job, "kind": part.trace.kind})
    return {
        "traceEvents": tracks.meta + events,
        "displayTimeUnit": "ms",
        "otherData": {"mpcactors": {"format": FORMAT, "clock": "wall", "parties": parties, "jobs": jobs}},
    }
