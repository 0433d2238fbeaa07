"""The executor: steps every ready op of every job and merges their messages into rounds.

Theory of operation
-------------------
One executor serves a whole node. It keeps a ready list of ops (of all jobs) whose inputs are
done or whose expected messages have all arrived. A *tick* steps every ready op in
critical-path order until each one either returns (its consumers may become ready and are stepped
in the same tick) or yields an :class:`~mpcactors.ops._comm.Exchange` whose messages are not all
here yet. The messages produced during the tick are then flushed: per peer and job, one link
message ``[[op_id, round, depth, payload], ...]``, and all of them are handed to the link without an
await in between, so the link's writer packs the messages of every job to a peer into one frame.
Hence k independent ops cost the rounds of one, and concurrent jobs share frames.

Incoming link messages are filed in the job's mailbox under ``(op_id, round)`` and wake the op
when its expected set is complete. Messages may arrive before the op exists or before it gets
to that round (a dealer runs ahead: correlated randomness arrives before it is needed); they
wait in the mailbox.

A big step runs in a worker thread. When it yields an Exchange whose messages are not all here
and that carries ``meanwhile`` work (e.g. the OT receiver's next chunk), the worker runs that work
while the messages travel; the op stays RUNNING until it is done, then takes its messages or
blocks. So compute overlaps the transfer instead of waiting for it.

A failing step fails its job only: the job's waiters wake with the error, its peers are told
(``JOB_ABORT``) and the executor keeps serving the other jobs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import types
from collections import defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np

from .._errors import JobAborted, JobError, MpcError, PeerLost, ProtocolError
from .._log import get_logger
from ..link._abc import JobLink
from ..link._codec import encode_payload
from ..ops._comm import Exchange
from ..ops._protocol import Share
from ._budget import BYTES_PER_ELEMENT, MemoryBudget, default_budget_bytes
from ._fingerprint import MAX_FINGERPRINT_CHARS, PROBE_ROUND, diverged, fingerprint
from ._graph import LOADER_COST, OpNode, OpState
from ._jobstate import JobState, JobStatistics, PeerJobStatistics

__all__ = ["Executor", "JobState", "JobStatistics", "PeerJobStatistics"]

CHANNEL = "mpc"
MAX_OPS_AHEAD = 1 << 20  # a peer's messages may address ops this far beyond our graph
MAX_ROUNDS_AHEAD = 1 << 12  # ... and rounds this far beyond the op's current round


class Executor:
    """Node-wide scheduler of ops (see module doc).

    Args:
        link: the node's links (:class:`~mpcactors.link._abc.JobLink`): ``channel(peer, job, name)``.
        party: this party's name.
        tick_budget_s: inline stepping longer than this flushes the messages produced so far
            and yields to the event loop, so no tick holds the loop for long.
        compute_threads: worker threads for big op steps, node-wide (default: the CPU count),
            or a CapacityLimiter shared with other nodes of the process; 0 steps every op
            inline on the event loop (for virtual-clock tests: a trio MockClock with autojump
            would race ahead while a worker thread runs).
        thread_min_elements: an op whose local work touches at least this many elements
            (``OpNode.cost``) steps in a worker thread; smaller ones run inline.
        memory_budget: bytes that worker-thread steps may use at once, node-wide (default:
            half the physical memory), or a :class:`MemoryBudget` shared with other nodes of the
            process; a step holds its estimated working memory while it computes.
    """

    def __init__(
        self,
        link: JobLink,
        party: str,
        *,
        tick_budget_s: float = 0.005,
        compute_threads: int | anyio.CapacityLimiter | None = None,
        thread_min_elements: int = 1 << 14,
        mailbox_bytes: int = 16 * 1024 * 1024,
        memory_budget: int | MemoryBudget | None = None,
    ) -> None:
        self._link = link
        self.party = party
        self._ready: list[OpNode] = []
        self._wake = anyio.Event()
        self._jobs: dict[str, JobState] = {}
        self._tick_budget = tick_budget_s
        self._inline_only = compute_threads == 0
        if isinstance(compute_threads, anyio.CapacityLimiter):
            self._limiter = compute_threads  # shared (simulate: every party of the process)
        else:
            threads = compute_threads if compute_threads is not None else (os.cpu_count() or 1)
            if threads < 0:
                raise ValueError(f"compute_threads must be at least 0, not {compute_threads!r}")
            self._limiter = anyio.CapacityLimiter(max(threads, 1))
        self._thread_min = thread_min_elements
        if isinstance(memory_budget, MemoryBudget):
            self.memory = memory_budget
        else:
            self.memory = MemoryBudget(memory_budget if memory_budget is not None else default_budget_bytes())
        self._mailbox_bytes = mailbox_bytes
        self._threads: Any = None  # the serve() task group that owns the worker-thread steps
        self._log = get_logger(party=party)
        self.ticks = 0

    # ---- jobs --------------------------------------------------------------------------------
    def open_job(self, state: JobState) -> None:
        if state.id in self._jobs:
            raise JobError(f"job {state.id!r} is already running at {self.party!r}", job=state.id)
        self._jobs[state.id] = state

    def live_jobs(self) -> list[JobState]:
        """The jobs open at this executor that have not failed."""
        return [job for job in self._jobs.values() if job.failure is None]

    def close_job(self, state: JobState) -> None:
        if self._jobs.get(state.id) is state:
            del self._jobs[state.id]
        self._ready = [n for n in self._ready if n.graph is not state.graph]

    async def release(self, state: JobState, *, step_bytes: int = 16 << 20) -> None:
        """Free a closed job's op results a few at a time, yielding to the loop in between.

        A job's graph is one reference cycle (inputs <-> consumers, graph <-> nodes), so its
        results (every intermediate share) were freed only by Python's cyclic garbage collector,
        all at once and at a moment of its choosing: measured, a gen-1 collection in the middle
        of a later job held the event loop 200 ms freeing the previous job's arrays. Here the
        cycle is cut node by node and the loop gets a turn after every ``step_bytes`` freed.
        """
        with anyio.CancelScope(shield=True):
            freed = 0
            for node in state.graph.nodes:
                freed += _payload_bytes(node.result)
                node.result = node.gen = None
                node.inputs = ()
                node.consumers = []
                if freed >= step_bytes:
                    freed = 0
                    await anyio.lowlevel.checkpoint()
            state.mailbox.clear()

    def submit(self, node: OpNode) -> OpNode:
        """Register a freshly created op; it runs as soon as its inputs are done."""
        job = self._job_of(node)
        job.unfinished += 1
        if job.unfinished == 1:
            job.idle = anyio.Event()
        if job.failure is not None:
            self._finish(job, node, error=job.failure)
        elif node.inputs_ready:
            self._make_ready(node)
        return node

    def deliver(self, job_id: str, peer: str, message: Any) -> None:
        """File one link message ``[[op_id, round, depth, payload(, fingerprint)], ...]`` from
        ``peer`` (an op's first entry to a peer carries its fingerprint; see ``_fingerprint``)."""
        job = self._jobs.get(job_id)
        if job is None or job.failure is not None:
            return
        job.last_progress = anyio.current_time()
        if not isinstance(message, list):
            self.fail_job(job, ProtocolError(f"malformed executor message from {peer!r}", peer=peer))
            return
        nodes = job.graph.nodes
        for item in message:
            if not (isinstance(item, list) and len(item) in (4, 5) and isinstance(item[0], int) and isinstance(item[1], int) and isinstance(item[2], int)) or (
                len(item) == 5 and not (isinstance(item[4], str) and len(item[4]) <= MAX_FINGERPRINT_CHARS)
            ):
                self.fail_job(job, ProtocolError(f"malformed executor entry from {peer!r}", peer=peer))
                return
            op_id, rnd, depth, payload = item[:4]
            if len(item) == 5 and 0 <= op_id < len(nodes) + MAX_OPS_AHEAD:
                if not self._claim(job, peer, op_id, item[4]):
                    return
                if rnd == PROBE_ROUND and payload is None:
                    continue
            # Bound the mailbox: an entry must be for an op not finished, at a round it has not
            # taken yet, and not absurdly far ahead of our graph or of the op's round.
            node = nodes[op_id] if 0 <= op_id < len(nodes) else None
            current = node.round if node is not None else 0
            stale = node is not None and node.state in (OpState.DONE, OpState.FAILED)
            if min(op_id, rnd, depth) < 0 or op_id >= len(nodes) + MAX_OPS_AHEAD or stale or not (
                current <= rnd < current + MAX_ROUNDS_AHEAD
            ):
                self.fail_job(job, ProtocolError(
                    f"message for op {op_id} round {rnd} from {peer!r} in job {job.id!r}: the "
                    f"graph has {len(nodes)} ops" + (f", that op is {node.state.value} at round "
                    f"{node.round}" if node is not None else "") + f" (at most {MAX_OPS_AHEAD} "
                    f"ops and {MAX_ROUNDS_AHEAD} rounds ahead)", peer=peer))  # fmt: skip
                return
            box = job.mailbox[(op_id, rnd)]
            if peer in box:
                self.fail_job(job, ProtocolError(f"duplicate message {op_id}/{rnd} from {peer!r}", peer=peer))
                return
            box[peer] = (depth, payload)
            if op_id < len(nodes):
                node = nodes[op_id]
                if node.state is OpState.BLOCKED and node.round == rnd and node.expect <= box.keys():
                    if job.tracer is not None:
                        job.tracer.unblocked(node)
                    self._make_ready(node)

    def _claim(self, job: JobState, peer: str, op_id: int, theirs: str) -> bool:
        """Check ``peer``'s fingerprint of op ``op_id`` now, or keep it for when the op starts."""
        nodes = job.graph.nodes
        node = nodes[op_id] if op_id < len(nodes) else None
        if node is not None and node.fingerprint is not None:
            error = diverged(job.id, self.party, peer, op_id, node.fingerprint, theirs)
            if error is not None:
                self.fail_job(job, error)
                return False
            return True
        claims = job.claims.setdefault(op_id, {})
        job.held[peer] += len(theirs) - len(claims.get(peer, ""))
        claims[peer] = theirs
        return True

    def probe(self, job: JobState) -> None:
        """Send every peer that a blocked op waits for the op's fingerprint, if not sent yet.

        Called when the job has not moved for a while: two parties whose programs diverged can
        each wait on an op that sends nothing to the other, and so never compare fingerprints.
        """
        outbox: Outbox = defaultdict(lambda: defaultdict(list))
        for node in self.blocked_ops(job):
            box = job.mailbox.get((node.op_id, node.round), {})
            for peer in sorted(node.expect - node.told - box.keys()):
                outbox[peer][job.id].append([node.op_id, PROBE_ROUND, node.depth, None, node.fingerprint or node.name])
            node.told |= node.expect
        self._flush(outbox)

    async def receive(self, job: JobState, peer: str) -> None:
        """Read ``job``'s executor channel from ``peer`` into its mailbox until the job ends.

        Backpressure: while the messages of ``peer`` that the job has not consumed yet exceed
        ``mailbox_bytes``, reading stops, so the link's credit window pushes back on the peer
        (a flood costs at most one window in the mailbox and one in the link). Reading goes on
        past that only while an op of the job waits for a message of ``peer`` that is not here
        (it may be behind the held ones in the stream); past ``8 * mailbox_bytes`` the job
        fails with a ProtocolError naming the peer instead of growing without bound.
        """
        ch = self._link.channel(peer, job.id, CHANNEL)
        while job.failure is None:
            while job.held[peer] > self._mailbox_bytes and not self._needs(job, peer):
                # one event for all the job's receive loops: replace it only once it has fired
                # (replacing an unset one would strand the loops already waiting on it)
                moved = job.mailbox_moved
                if moved.is_set():
                    moved = job.mailbox_moved = anyio.Event()
                await moved.wait()
            if job.held[peer] > 8 * self._mailbox_bytes:
                self.fail_job(job, ProtocolError(
                    f"{peer!r} sent more than {8 * self._mailbox_bytes} bytes of messages that job "
                    f"{job.id!r} has not consumed", peer=peer))  # fmt: skip
                return
            try:
                message = await ch.receive()
            except PeerLost as exc:  # fails only the ops that still wait for this peer
                self.peer_gone(job, peer, exc)
                return
            except MpcError as exc:
                self.fail_job(job, exc)
                return
            job.held[peer] += _payload_bytes(message)
            self.deliver(job.id, peer, message)

    def _needs(self, job: JobState, peer: str) -> bool:
        """Some op of ``job`` waits for a message of ``peer`` that is not in the mailbox."""
        return any(
            node.state is OpState.BLOCKED
            and peer in node.expect
            and peer not in job.mailbox.get((node.op_id, node.round), {})
            for node in job.graph.nodes
        )

    def peer_gone(self, job: JobState, peer: str, error: BaseException) -> None:
        """``peer``'s link ended after its last message: ops still waiting on it fail.

        A peer that finished its part of the job and closed its node is not an error for the
        ops that need nothing more from it.
        """
        job.gone[peer] = error
        for node in job.graph.nodes:
            if node.state is OpState.BLOCKED and self._missing_from_gone(job, node):
                if self._end_without_gone(job, node):
                    continue
                self.fail_job(job, error)
                return

    def _end_without_gone(self, job: JobState, node: OpNode) -> bool:
        """The job's closing ``end`` op compares op counts with the parties still there: a peer
        that left the job (its process died after its last message; e.g. a dropped client of
        secure aggregation, which the program carried on without) is not waited for. A gone
        peer whose end message arrived before its link ended stays expected (it is here)."""
        if node.name != "end" or node.op_id != len(job.graph.nodes) - 1:
            return False
        box = job.mailbox.get((node.op_id, node.round), {})
        node.expect = frozenset(p for p in node.expect if p not in job.gone or p in box)
        if node.expect <= box.keys():
            self._make_ready(node)
        return True

    def _missing_from_gone(self, job: JobState, node: OpNode) -> bool:
        box = job.mailbox.get((node.op_id, node.round), {})
        return any(p in job.gone and p not in box for p in node.expect)

    def fail_job(self, job: JobState, error: BaseException) -> None:
        """Fail every unfinished op of ``job`` with ``error`` (first failure wins)."""
        if job.failure is not None:
            return
        job.failure = error
        for node in job.graph.nodes:
            if node.state is not OpState.DONE and node.state is not OpState.FAILED:
                self._finish(job, node, error=error)
        if job.on_fail is not None:
            job.on_fail(error)

    # ---- the loop ----------------------------------------------------------------------------
    async def serve(self) -> None:
        """Run ticks forever (until cancelled with the node); big steps go to worker threads."""
        async with anyio.create_task_group() as tg:
            self._threads = tg
            while True:
                await self._wake.wait()
                # one scheduling pass for every task woken with us (programs of other jobs
                # building their next ops) so that their ops join this tick and share its frames
                await anyio.lowlevel.checkpoint()
                self._wake = anyio.Event()
                await self._tick()

    async def _tick(self) -> None:
        """Step every ready op; small steps inline, big ones in worker threads.

        Inline steps run in critical-path order and their messages leave together (one link
        message per peer and job, so one frame per peer). After ``tick_budget_s`` of inline work
        the messages so far are flushed and the loop yields, so no tick holds the event loop
        for long whatever the number of ops.
        """
        self.ticks += 1
        outbox: Outbox = defaultdict(lambda: defaultdict(list))
        start = time.perf_counter()
        while self._ready:
            batch = self._ready
            self._ready = []
            if len(batch) > 1:
                by_graph: dict[int, list[OpNode]] = defaultdict(list)
                for n in batch:
                    by_graph[id(n.graph)].append(n)
                for nodes in by_graph.values():
                    nodes[0].graph.update_heights(nodes)
                batch.sort(key=lambda n: -n.height)
            for node in batch:
                if node.state is not OpState.READY:  # failed meanwhile, or already running
                    continue
                if node.cost < self._thread_min:  # shapes unknown when it was built (loaded inputs)
                    node.cost = max(node.cost, _input_elements(node))
                if node.cost >= self._thread_min and self._threads is not None and not self._inline_only:
                    node.state = OpState.RUNNING
                    self._threads.start_soon(self._step_in_thread, node)
                    continue
                self._step(node, outbox)
                if time.perf_counter() - start > self._tick_budget:
                    self._flush(outbox)
                    outbox = defaultdict(lambda: defaultdict(list))
                    await anyio.lowlevel.checkpoint()
                    start = time.perf_counter()
        self._flush(outbox)

    def _step(self, node: OpNode, outbox: Outbox) -> None:
        """Drive ``node`` inline until it finishes or waits for messages not here yet."""
        job = self._live_job(node)
        if job is None:
            return
        try:
            reply = self._reply(job, node)
            while True:
                outcome = _advance(node, job, reply) if job.tracer is None else job.tracer.step(_advance, node, job, reply)
                reply = self._after(job, node, outcome, outbox)
                if reply is None:
                    return
        except Exception as exc:  # noqa: BLE001 - a loader or an op raised: the job fails, not the node
            self._failed(job, node, exc)

    async def _step_in_thread(self, node: OpNode) -> None:
        """Drive ``node`` one exchange at a time in a worker thread (its local work is big).

        Only the generator's own computation runs in the thread; the mailbox, the outbox and
        the graph are touched on the event loop, so results, message addresses and PRG streams
        do not depend on thread timing. The step's messages are flushed as soon as they exist.
        """
        job = self._live_job(node)
        if job is None:
            return
        try:
            reply = self._reply(job, node)
            while True:
                step = _advance if job.tracer is None else functools.partial(job.tracer.step, _advance)
                async with self.memory.hold(_step_bytes(node)):
                    outcome = await anyio.to_thread.run_sync(step, node, job, reply, limiter=self._limiter)
                if node.state is OpState.FAILED or job.failure is not None:
                    _close(node)
                    return
                outbox: Outbox = defaultdict(lambda: defaultdict(list))
                meanwhile = None if outcome.done else outcome.value.meanwhile
                reply = self._after(job, node, outcome, outbox, hold=meanwhile is not None)
                if outbox:  # a big step's messages are big: encode them off the loop too
                    encoded = await anyio.to_thread.run_sync(_encode_outbox, outbox, limiter=self._limiter)
                    self._flush(outbox, encoded)
                if reply is _HELD and meanwhile is not None:
                    # the step's local work for its next round, while this round's messages
                    # travel; the op stays RUNNING, so no message wakes it meanwhile
                    async with self.memory.hold(_step_bytes(node)):
                        await anyio.to_thread.run_sync(meanwhile, limiter=self._limiter)
                    if node.state is OpState.FAILED or job.failure is not None:
                        _close(node)
                        return
                    reply = self._wait_or_take(job, node)
                if reply is None:
                    return
        except Exception as exc:  # noqa: BLE001 - a loader or an op raised: the job fails, not the node
            self._failed(job, node, exc)

    def _live_job(self, node: OpNode) -> JobState | None:
        job = self._jobs.get(node.graph.job)
        if job is None or job.graph is not node.graph:  # the job ended (failed) meanwhile
            return None
        if job.failure is not None or node.state in (OpState.DONE, OpState.FAILED):
            return None
        return job

    def _reply(self, job: JobState, node: OpNode) -> Any:
        """The messages a resumed step receives (None for a step not started yet)."""
        if node.gen is None:
            node.depth = max((i.depth for i in node.inputs), default=0)
            if node.fingerprint is None:
                node.fingerprint = fingerprint(node)
            for peer, theirs in job.claims.pop(node.op_id, {}).items():
                job.held[peer] -= len(theirs)
                error = diverged(job.id, self.party, peer, node.op_id, node.fingerprint, theirs)
                if error is not None:
                    raise error
            return None
        return self._take(job, node)

    def _after(self, job: JobState, node: OpNode, outcome: _Outcome, outbox: Outbox, *, hold: bool = False) -> Any:
        """File a step's outcome on the event loop; return the next reply if it can go on now.

        ``hold``: if the round's messages are not all here, return :data:`_HELD` and leave the
        op RUNNING (its worker runs the step's ``meanwhile``, then :meth:`_wait_or_take`)."""
        if outcome.done:
            self._finish(job, node, result=outcome.value)
            return None
        ex: Exchange = outcome.value
        node.depth += 1
        for peer, payload in ex.send.items():
            if peer not in job.peers:
                raise ProtocolError(f"op {node.name!r} sends to {peer!r}, not a peer of the job")
            entry = [node.op_id, node.round, node.depth, payload]
            if peer not in node.told:  # the op's first message to this peer: who we think it is
                entry.append(node.fingerprint or node.name)
                node.told |= {peer}
            outbox[peer][job.id].append(entry)
        node.expect = ex.recv
        if hold and not self._arrived(job, node):
            return _HELD
        return self._wait_or_take(job, node)

    def _arrived(self, job: JobState, node: OpNode) -> bool:
        box = job.mailbox.get((node.op_id, node.round))
        return not node.expect or (box is not None and node.expect <= box.keys())

    def _wait_or_take(self, job: JobState, node: OpNode) -> Any:
        """The op's next reply if its expected messages are all here, else None (it blocks)."""
        if not self._arrived(job, node):
            node.state = OpState.BLOCKED
            if job.tracer is not None:
                job.tracer.blocked_on(node)
            job.mailbox_moved.set()  # a receive loop held back by backpressure may be needed now
            if job.gone and self._missing_from_gone(job, node) and not self._end_without_gone(job, node):
                lost = next(p for p in node.expect if p in job.gone)
                self.fail_job(job, job.gone[lost])
            return None
        return self._take(job, node)

    def _failed(self, job: JobState, node: OpNode, exc: Exception) -> None:
        if not isinstance(exc, MpcError):
            self._log.warning("op failed", job=job.id, op=node.name, op_id=node.op_id, error=repr(exc))
        self.fail_job(job, exc)

    def _take(self, job: JobState, node: OpNode) -> dict[str, Any]:
        box = job.mailbox.pop((node.op_id, node.round), {}) if node.expect else {}
        if box:
            for peer, (_, payload) in box.items():
                job.held[peer] -= _payload_bytes([payload])
            job.mailbox_moved.set()
        extra = box.keys() - node.expect
        if extra:
            raise ProtocolError(f"op {node.name!r} round {node.round}: unexpected messages from {sorted(extra)}")
        node.round += 1
        if node.state is not OpState.RUNNING:
            node.state = OpState.READY
        # Lamport-style: a value that waited for a message is at least one round deeper than
        # the sender was when it sent (so depth is the causal critical path at every party)
        for depth, _ in box.values():
            node.depth = max(node.depth, depth)
        return {peer: payload for peer, (_, payload) in box.items()}

    def _flush(self, outbox: Outbox, encoded: dict[tuple[str, str], bytes | memoryview] | None = None) -> None:
        for peer, jobs in outbox.items():
            for job_id, items in jobs.items():
                job = self._jobs.get(job_id)
                if job is None or job.failure is not None:
                    continue
                try:
                    channel = self._link.channel(peer, job_id, CHANNEL)
                    if encoded is not None:
                        channel.send_encoded_nowait(encoded[(peer, job_id)])
                    else:
                        channel.send_nowait(items)
                except MpcError as exc:
                    self.fail_job(job, exc)
                    continue
                job.peer_messages[peer] += 1
                job.peer_rounds[peer] += 1
                if job.tracer is not None:
                    job.tracer.flushed(peer, items)
        touched = {job_id for jobs in outbox.values() for job_id in jobs}
        for job_id in touched:
            if job_id in self._jobs:
                self._jobs[job_id].flushes += 1

    # ---- bookkeeping -------------------------------------------------------------------------
    def _job_of(self, node: OpNode) -> JobState:
        job = self._jobs.get(node.graph.job)
        if job is None:
            raise JobError(f"job {node.graph.job!r} is not running", job=node.graph.job)
        return job

    def _make_ready(self, node: OpNode) -> None:
        node.state = OpState.READY
        self._ready.append(node)
        self._wake.set()

    def _finish(
        self, job: JobState, node: OpNode, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        if error is not None:
            running = node.state is OpState.RUNNING
            node.state = OpState.FAILED
            node.error = error
            if running:  # its worker thread closes the generator when it returns
                self._unfinished_done(job, node)
                return
            _close(node)
        else:
            node.state = OpState.DONE
            node.result = result
            if node.gen is None:  # a local op: no rounds of its own
                node.depth = max((i.depth for i in node.inputs), default=0)
            job.rounds = max(job.rounds, node.depth)
            if job.tracer is not None:
                job.tracer.finished(node, job.rounds)
            for c in node.consumers:
                if c.input_done() and c.state is OpState.WAITING and job.failure is None:
                    self._make_ready(c)
        node.gen = None
        self._unfinished_done(job, node)

    def _unfinished_done(self, job: JobState, node: OpNode) -> None:
        job.last_progress = anyio.current_time()
        for w in node.waiters:
            w.set()
        node.waiters.clear()
        job.unfinished -= 1
        if job.unfinished == 0:
            job.idle.set()

    def blocked_ops(self, job: JobState) -> list[OpNode]:
        """Ops of ``job`` waiting for peers' messages right now."""
        return [n for n in job.graph.nodes if n.state is OpState.BLOCKED]

    async def wait(self, node: OpNode) -> Any:
        """Wait until ``node`` is done and return its result (raise the job's failure)."""
        if node.state is not OpState.DONE and node.state is not OpState.FAILED:
            ev = anyio.Event()
            node.waiters.append(ev)
            await ev.wait()
        if node.state is OpState.FAILED:
            assert node.error is not None  # FAILED implies an error is recorded
            raise node.error
        return node.result

    def job_failure_as_abort(self, job: JobState) -> JobAborted | None:
        err = job.failure
        if err is None or isinstance(err, JobAborted):
            return err
        return JobAborted(job.id, self.party, f"{type(err).__name__}: {err}")


Outbox = dict[str, dict[str, list[list[Any]]]]  # peer -> job -> [[op_id, round, depth, payload]]


_HELD = object()  # _after's reply: messages still missing, the op's meanwhile work runs first


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    done: bool  # the step returned ``value``; else ``value`` is the Exchange it yielded
    value: Any


def _advance(node: OpNode, job: JobState, reply: Any) -> _Outcome:
    """Run ``node``'s step until it returns or yields a non-empty Exchange.

    Pure computation on the op's own state (its generator, its inputs' results): safe in a
    worker thread while the event loop serves other ops. ``reply`` is None to start the step.
    """
    if node.gen is None:
        made = node.factory(job.context(node), [i.result for i in node.inputs])
        if not isinstance(made, types.GeneratorType):
            return _Outcome(True, made)
        node.gen = made
    while True:
        try:
            ex: Exchange = node.gen.send(reply) if reply is not None else next(node.gen)
        except StopIteration as stop:
            return _Outcome(True, stop.value)
        if not ex.empty:
            return _Outcome(False, ex)
        reply = {}


def _close(node: OpNode) -> None:
    if node.gen is not None:
        node.gen.close()
        node.gen = None


def _encode_outbox(outbox: Outbox) -> dict[tuple[str, str], bytes | memoryview]:
    """Every (peer, job) message of ``outbox``, encoded (runs in a worker thread)."""
    return {(peer, job_id): encode_payload(items) for peer, jobs in outbox.items() for job_id, items in jobs.items()}


def _step_bytes(node: OpNode) -> int:
    """The working memory a step is charged against the node's budget (loaders: none known)."""
    return 0 if node.cost >= LOADER_COST else node.cost * BYTES_PER_ELEMENT


def _input_elements(node: OpNode) -> int:
    """Elements of the op's inputs' results (their shapes are known once they are done)."""
    total = 0
    for i in node.inputs:
        if isinstance(i.result, (Share, np.ndarray)):  # other results (pytrees) may refuse .shape
            total += math.prod(i.result.shape)
    return total


def _payload_bytes(obj: Any) -> int:
    """Bytes of the arrays, bytes and strings inside a received message (its memory weight)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, Share):
        return sum(p.nbytes for p in obj.parts)
    if isinstance(obj, (bytes, bytearray, memoryview, str)):
        return len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_payload_bytes(k) + _payload_bytes(v) for k, v in obj.items())
    return 0
