"""Job traces: what a job did, when, recorded while it runs and written as trace-event JSON.

Theory of operation
-------------------
Tracing is per job: ``node.run(..., trace=PATH)`` (and ``simulate``, ``node.psi``, the CLI's
``--trace``) gives the job's :class:`~mpcactors.scheduler._executor.JobState` a
:class:`JobTrace`. The executor's and the link's hooks are each one ``if tracer is not None``
test, so a job without a trace runs no trace code at all, and a node with no traced job has
no tracer on its links.

While traced jobs run, a node holds one :class:`Tracer` (made by :class:`NodeTracing`) that
the links of every peer call for each DATA frame they pack, write and receive; it hands each
frame to the traces of the jobs whose chunks it carries. A :class:`JobTrace` records, in
``time.perf_counter_ns`` units:

* every op step (one advance of the op's generator, inline on the event loop or in a worker
  thread), with the op's causal depth and inputs when it finishes;
* each executor flush: one message per peer holding the op entries of one tick, so a frame
  knows which ops it carried;
* each wait of an op for a peer's message, from the moment it blocks until its messages are in;
* the job's critical-path round (a counter), and its start and end.

When the job ends its part (:class:`TracePart`) goes to a :class:`TraceFile`, which turns the
parts of one process into Chrome/Perfetto trace events (``ts`` and ``dur`` in microseconds from
the file's zero; the wall-clock time of that zero is kept in ``otherData`` so files of several
processes can be merged; see ``_trace_merge.py`` and docs/TRACE.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ._log import get_logger

__all__ = ["FORMAT", "JobTrace", "NodeTracing", "TraceFile", "TracePart", "Tracer", "write_trace"]

FORMAT = 1  # otherData["mpcactors"]["format"]
CHANNEL_MPC = "mpc"  # the executor's channel (its messages carry op entries)
MAX_NAMED_OPS = 32  # a frame's args name at most this many ops per job (the count is exact)
DRAIN_S = 2.0  # a finished job's trace waits this long at most for its last frames


def _now() -> int:
    return time.perf_counter_ns()


@dataclasses.dataclass(slots=True)
class _Frame:
    """One DATA frame to or from a peer, with what it carried of each job."""

    peer: str
    seq: int
    t0: int  # packed (sent) or decoded (received)
    t1: int  # written to the transport (sent frames)
    bytes: int  # chunk bytes of every job
    chunks: int  # chunks of every job (one message or a piece of one each)
    jobs: dict[str, list[Any]]  # job -> [bytes, chunks, [(op_id, round), ...]]


class JobTrace:
    """The trace of one job at one party (see module doc). Methods are the hooks' targets."""

    def __init__(self, tracer: Tracer, job: str, kind: str) -> None:
        self.tracer = tracer
        self.job = job
        self.kind = kind  # "compute" or "psi"
        self.start = _now()
        self.end: int | None = None
        self.loop_thread = threading.get_ident()
        self.steps: list[tuple[int, int, int, str, int, int, bool]] = []  # t0 t1 op name round thread failed
        self.done: dict[int, tuple[int, tuple[int, ...]]] = {}  # op -> (depth, input op ids)
        self.blocked: dict[int, tuple[int, str, tuple[str, ...]]] = {}  # op -> (t0, name, peers)
        self.waits: list[tuple[int, int, int, str, tuple[str, ...]]] = []  # t0 t1 op name peers
        self.rounds: list[tuple[int, int]] = [(self.start, 0)]
        self.sent: dict[str, int] = defaultdict(int)  # executor messages sent per peer
        self.msg_ops: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (peer, msg) -> ops
        self.flushes: list[tuple[int, str, int, int]] = []  # t, peer, message number, entries
        self.frames: list[_Frame] = []
        self.received: list[_Frame] = []
        self.phases: list[tuple[int, str]] = []  # PSI progress phases

    # ---- executor hooks ----------------------------------------------------------------------
    def step(self, fn: Callable[..., Any], node: Any, job: Any, reply: Any) -> Any:
        """Run one step ``fn(node, job, reply)`` (inline or in a worker thread) and record it."""
        t0 = _now()
        failed = True
        try:
            out = fn(node, job, reply)
            failed = False
            return out
        finally:
            self.steps.append((t0, _now(), node.op_id, node.name, node.round, threading.get_ident(), failed))

    def flushed(self, peer: str, items: Sequence[Sequence[Any]]) -> None:
        """The executor handed the link one message to ``peer`` with these op entries."""
        n = self.sent[peer]
        self.sent[peer] = n + 1
        self.msg_ops[(peer, n)] = [(int(e[0]), int(e[1])) for e in items]
        self.flushes.append((_now(), peer, n, len(items)))

    def blocked_on(self, node: Any) -> None:
        """``node`` waits for messages of the peers in ``node.expect``."""
        self.blocked[node.op_id] = (_now(), node.name, tuple(sorted(node.expect)))

    def unblocked(self, node: Any) -> None:
        """``node``'s expected messages are all in."""
        began = self.blocked.pop(node.op_id, None)
        if began is not None:
            self.waits.append((began[0], _now(), node.op_id, began[1], began[2]))

    def finished(self, node: Any, rounds: int) -> None:
        """``node`` is done at causal depth ``node.depth``; the job is ``rounds`` deep."""
        self.done[node.op_id] = (node.depth, tuple(i.op_id for i in node.inputs))
        if rounds != self.rounds[-1][1]:
            self.rounds.append((_now(), rounds))

    def phase(self, name: str) -> None:
        """A PSI job entered a phase (from its progress events)."""
        if not self.phases or self.phases[-1][1] != name:
            self.phases.append((_now(), name))

    # ---- link side (through the node's Tracer) -----------------------------------------------
    def take_ops(self, peer: str, msg: int) -> list[tuple[int, int]]:
        return self.msg_ops.pop((peer, msg), [])

    def close(self) -> TracePart:
        """The job ended: its part of a trace file."""
        self.end = _now()
        for op, (t0, name, peers) in self.blocked.items():  # still waiting when the job ended
            self.waits.append((t0, self.end, op, name, peers))
        self.blocked.clear()
        return TracePart(self.tracer.party, self)


class Tracer:
    """A node's frame recorder while traced jobs run (the links' ``tracer``)."""

    def __init__(self, party: str) -> None:
        self.party = party
        self.jobs: dict[str, JobTrace] = {}
        self._unwritten: dict[str, list[_Frame]] = {}  # per peer: packed, not yet written

    def _split(self, peer: str, seq: int, chunks: Sequence[Any], sent: bool) -> _Frame | None:
        jobs = self.jobs
        per_job: dict[str, list[Any]] = {}
        total = 0
        for c in chunks:
            n = len(c.data)
            total += n
            entry = per_job.get(c.job)
            if entry is None:
                entry = per_job[c.job] = [0, 0, []]
            entry[0] += n
            entry[1] += 1
            if sent and c.channel == CHANNEL_MPC and c.offset == 0 and c.job in jobs:
                entry[2].extend(jobs[c.job].take_ops(peer, c.msg))
        if not any(j in jobs for j in per_job):
            return None
        now = _now()
        return _Frame(peer, seq, now, now, total, len(chunks), per_job)

    def frame_sent(self, peer: str, seq: int, chunks: Sequence[Any]) -> None:
        """The link to ``peer`` packed DATA frame ``seq`` with ``chunks``."""
        frame = self._split(peer, seq, chunks, True)
        if frame is None:
            return
        self._unwritten[peer] = [frame]  # a frame still unwritten here was cut off with its connection
        for job in frame.jobs:
            if job in self.jobs:
                self.jobs[job].frames.append(frame)

    def frames_written(self, peer: str) -> None:
        """The frames packed for ``peer`` so far are written to its transport."""
        now = _now()
        for frame in self._unwritten.pop(peer, ()):
            frame.t1 = now

    def frame_received(self, peer: str, seq: int, chunks: Sequence[Any]) -> None:
        """DATA frame ``seq`` from ``peer`` was decoded."""
        frame = self._split(peer, seq, chunks, False)
        if frame is None:
            return
        for job in frame.jobs:
            if job in self.jobs:
                self.jobs[job].received.append(frame)


def _queued(link: Any, job: str) -> bool:
    """True while some of ``job``'s messages wait in the link for the writer (or for credit)."""
    return any(s.queued_bytes for (_, j), s in link.statistics().jobs.items() if j == job)


class NodeTracing:
    """A node's traced jobs: attaches a :class:`Tracer` to the link while any job is traced."""

    def __init__(self, party: str, link: Any) -> None:
        self.party = party
        self._link = link
        self._tracer: Tracer | None = None

    def start(self, job: str, kind: str) -> JobTrace:
        """Trace ``job`` from now on."""
        if self._tracer is None:
            self._tracer = Tracer(self.party)
            self._link.set_tracer(self._tracer)
        trace = JobTrace(self._tracer, job, kind)
        self._tracer.jobs[job] = trace
        return trace

    async def finish(self, trace: JobTrace, target: str | os.PathLike[str] | TraceFile, *, drain: bool = True) -> None:
        """``trace``'s job ended: add its part to ``target`` (a path is written at once).

        With ``drain`` (a job that succeeded), the job's last messages (its closing round) may
        still be queued in the link: their frames are waited for (at most ``DRAIN_S``), so the
        trace has every frame of the job.
        """
        with anyio.CancelScope(shield=True):
            deadline = anyio.current_time() + DRAIN_S
            while drain and _queued(self._link, trace.job) and anyio.current_time() < deadline:
                await anyio.sleep(0.001)
        part = trace.close()
        stats = self._link.statistics()
        part.rtt_ms = {p: (s.rtt_s * 1000 if s.rtt_s is not None else None) for p, s in stats.peers.items()}
        tracer = self._tracer
        if tracer is not None:
            tracer.jobs.pop(trace.job, None)
            if not tracer.jobs:
                self._link.set_tracer(None)
                self._tracer = None
        if isinstance(target, TraceFile):
            target.add(part)
            return
        try:  # off the event loop: other jobs of the node go on meanwhile
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(write_trace, target, [part])
        except OSError as exc:  # the job's outcome matters more than its trace: say so, go on
            get_logger(party=self.party).error("trace not written", job=trace.job, path=str(target), error=str(exc))

    async def psi(self, target: str | os.PathLike[str] | TraceFile, run_psi: Callable[..., Any], link: Any, **kwargs: Any) -> Any:
        """``await run_psi(link, **kwargs)`` with its job traced (phases from its progress events)."""
        trace = self.start(str(kwargs.get("job")), "psi")
        user = kwargs.get("progress")

        def progress(event: Any) -> None:
            trace.phase(event.phase)
            if user is not None:
                user(event)

        ok = False
        try:
            result = await run_psi(link, **{**kwargs, "progress": progress})
            ok = True
            return result
        finally:
            await self.finish(trace, target, drain=ok)


@dataclasses.dataclass(slots=True)
class TracePart:
    """One job's trace at one party, ready to be written."""

    party: str
    trace: JobTrace
    rtt_ms: dict[str, float | None] = dataclasses.field(default_factory=dict)


class TraceFile:
    """Collects the parts of one process's traced jobs (every party of a simulation, or every
    job of a CLI process) and writes them as one trace-event JSON file."""

    def __init__(self) -> None:
        self.parts: list[TracePart] = []

    def add(self, part: TracePart) -> None:
        self.parts.append(part)

    def document(self) -> dict[str, Any]:
        """The trace-event document: ``{"traceEvents": [...], "otherData": {...}}``."""
        return trace_document(self.parts)

    def write(self, path: str | os.PathLike[str]) -> None:
        write_trace(path, self.parts)


def write_trace(path: str | os.PathLike[str], parts: Sequence[TracePart]) -> None:
    """Write ``parts`` as a trace-event JSON file at ``path`` (through a temporary file)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(trace_document(parts), separators=(",", ":")))
    tmp.replace(target)


# ---- events ----------------------------------------------------------------------------------
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
    end = tr.end if tr.end is not None else _now()
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
    zero = min((p.trace.start for p in parts), default=_now())
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
