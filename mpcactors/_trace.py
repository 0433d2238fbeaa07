"""Job traces: what a job did, when, recorded while it runs and written as trace-event JSON.

Theory of operation
-------------------
Tracing is per job: ``node.run(..., trace=PATH)`` (and ``simulate``, ``node.psi``, the CLI's
``--trace``) gives the job's :class:`~mpcactors.scheduler._jobstate.JobState` a
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
parts of one process into Chrome/Perfetto trace events (``_trace_events.py``: ``ts`` and ``dur``
in microseconds from the file's zero; the wall-clock time of that zero is kept in ``otherData``
so files of several processes can be merged; see ``_trace_tools.py`` and docs/TRACE.md).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._log import get_logger
from ._trace_events import trace_document, write_trace

if TYPE_CHECKING:  # annotations only: nothing below the runtime imports the link from here
    from .link._abc import JobLink

__all__ = ["JobTrace", "NodeTracing", "TraceFile", "TracePart", "Tracer"]

CHANNEL_MPC = "mpc"  # the executor's channel (its messages carry op entries)
DRAIN_S = 2.0  # a finished job's trace waits this long at most for its last frames


_now = time.perf_counter_ns  # every recorded time: ns of the process's monotonic clock


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


def _queued(link: JobLink, job: str) -> bool:
    """True while some of ``job``'s messages wait in the link for the writer (or for credit)."""
    return any(s.queued_bytes for (_, j), s in link.statistics().jobs.items() if j == job)


class NodeTracing:
    """A node's traced jobs: attaches a :class:`Tracer` to the link while any job is traced."""

    def __init__(self, party: str, link: JobLink) -> None:
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

    async def psi(self, target: str | os.PathLike[str] | TraceFile, run_psi: Callable[..., Any], link: JobLink, **kwargs: Any) -> Any:
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
