"""Sans-IO multiplexing and flow control of (job, channel) messages over one session.

Theory of operation
-------------------
One :class:`Mux` per peer. Messages are addressed by ``(job, channel)``; each direction of each
channel numbers its messages from 0 and delivers them in order.

**Sending.** ``enqueue`` appends an encoded payload to its channel's queue. ``pack`` builds the
chunks of ONE DATA frame from everything queued, in rounds: each round takes one chunk (at most
``chunk_bytes``) from every channel with queued data, across all jobs, until the frame budget is
spent or nothing more may be sent. Channels rotate (least recently served first), so a small
message never waits behind more than one chunk of someone else's bulk, and everything queued in
one scheduler step leaves in one frame when it fits the budget.

**Flow control.** Per job, the receiver grants a cumulative byte ``limit`` (CREDIT frames,
idempotent, re-sent after a reconnect); the sender never lets a job's sent bytes exceed it. The
initial limit is the receiver's ``job_window`` (told in HELLO). The receiver moves the limit to
``taken + window``, where ``taken`` counts bytes the application has received, so a job whose
application does not read stalls itself only: the reader task never blocks, data waits in that
job's inbox, bounded by its window. While the application waits on a channel that has no complete
message (a message larger than the window, or messages read in another order than sent), the
receiver grants a window beyond what it buffers, so such a job still progresses; the sender's own
backpressure (``send`` waits while the job's queue exceeds a window) bounds what it can push.

**Unopened jobs.** Data for a job the application has not opened yet is buffered under the same
window. ``expire_unopened`` drops jobs that stayed unopened for too long and returns JOB_ABORT
frames, so the sender's job fails with a clear error instead of waiting forever.

**Failure.** A job fails by a local or remote abort (``JobAborted``: pending and future receives
raise at once) or with its link (``PeerLost``: buffered messages are still delivered, then it
raises). Late data for failed or closed jobs is dropped and credited back.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from typing import Any, Final

import numpy as np

from .._errors import JobAborted, MpcError, ProtocolError
from ._frames import Chunk, Credit, Data, JobAbort

__all__ = ["JobCounters", "Mux"]

_ENTRY_OVERHEAD: Final = 16  # msgpack bytes of an entry besides its job and channel names
_CLOSED_MEMORY: Final = 4096  # closed job ids remembered, to drop their late data quietly
MAX_FRAME_CHUNKS: Final = 2048  # bounds the CPU time one frame costs either side (~20 ms)


@dataclasses.dataclass(slots=True)
class JobCounters:
    """Traffic of one job with one peer (mutable; snapshotted into statistics)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0


class _OutChannel:
    __slots__ = ("job", "name", "next_msg", "offset", "queue")

    def __init__(self, job: _Job, name: str) -> None:
        self.job = job
        self.name = name
        self.queue: deque[tuple[int, memoryview]] = deque()  # (msg number, payload)
        self.next_msg = 0
        self.offset = 0  # bytes of queue[0] already packed


class _InChannel:
    __slots__ = ("got", "messages", "next_msg", "partial", "waiting")

    def __init__(self) -> None:
        self.messages: deque[memoryview] = deque()  # complete, writable, unread
        self.next_msg = 0
        self.partial: memoryview | None = None
        self.got = 0
        self.waiting = 0  # receivers blocked on this channel


class _Job:
    __slots__ = (
        "backlog",
        "closed",
        "counters",
        "drain_first",
        "error",
        "first_seen",
        "granted",
        "inb",
        "limit",
        "name",
        "opened",
        "out",
        "received",
        "sent",
        "starved",
        "taken",
    )  # fmt: skip

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.opened = False
        self.first_seen = 0.0
        self.error: MpcError | None = None
        self.drain_first = False  # deliver buffered messages before raising error
        self.closed = False  # closed locally; kept only until its queued sends are packed
        self.out: dict[str, _OutChannel] = {}
        self.sent = 0  # cumulative chunk bytes packed
        self.limit = -1  # cumulative credit from the peer; -1: the peer's initial window
        self.backlog = 0  # bytes queued, not yet packed
        self.inb: dict[str, _InChannel] = {}
        self.received = 0  # cumulative chunk bytes received
        self.taken = 0  # cumulative bytes received and released (read, dropped)
        self.granted = window  # cumulative limit granted to the peer
        self.starved: set[str] = set()  # channels with a blocked receiver and no message
        self.counters = JobCounters()


class Mux:
    """Per-peer multiplexer (sans-IO).

    Args:
        party: our party name (named in the JOB_ABORT frames we originate).
        peer: the peer's party name (for error messages).
        job_window: the window we grant each job of the peer.
        chunk_bytes: largest chunk of one message in a frame.
        frame_budget: payload bytes packed into one DATA frame at most.
        max_message_bytes: largest message accepted in either direction.
    """

    def __init__(
        self,
        *,
        party: str,
        peer: str,
        job_window: int,
        chunk_bytes: int,
        frame_budget: int,
        max_message_bytes: int,
    ) -> None:
        self.party = party
        self.peer = peer
        self.window = job_window
        self.chunk_bytes = chunk_bytes
        self.frame_budget = frame_budget
        self.max_message_bytes = max_message_bytes
        self.peer_window = 0  # learned from the peer's HELLO
        self._jobs: dict[str, _Job] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._active: OrderedDict[tuple[str, str], _OutChannel] = OrderedDict()
        self._credits: dict[str, int] = {}  # CREDIT frames due: job -> limit
        self._aborts: dict[str, JobAbort] = {}  # JOB_ABORTs we originated (re-sent on resume)
        self._aborts_due: list[JobAbort] = []
        self._new_job_error: MpcError | None = None  # set while the link is lost
        self.messages_sent = 0
        self.messages_received = 0

    # ---- jobs --------------------------------------------------------------------------------

    def _job(self, name: str) -> _Job:
        job = self._jobs.get(name)
        if job is None:
            job = self._jobs[name] = _Job(name, self.window)
            if self._new_job_error is not None:
                job.error, job.drain_first = self._new_job_error, True
        return job

    def open_job(self, name: str) -> None:
        """The application opened the job: its data is expected (no unopened timeout).

        A job id is used once: a job closed here stays closed (its channels raise JobAborted)
        until it is forgotten, so late or reused traffic can never be mixed into a new job.
        """
        self._job(name).opened = True

    def job_error(self, name: str) -> MpcError | None:
        job = self._jobs.get(name)
        return job.error if job is not None else None

    def jobs(self) -> dict[str, JobCounters]:
        """Counters of every job (closed ones too, until forgotten)."""
        return {name: job.counters for name, job in self._jobs.items()}

    def job_backlog(self, name: str) -> int:
        job = self._jobs.get(name)
        return job.backlog if job is not None else 0

    def job_buffered(self, name: str) -> int:
        job = self._jobs.get(name)
        return job.received - job.taken if job is not None else 0

    def close_job(self, name: str) -> None:
        """Free the job's inbound buffers; its queued outbound data is still sent.

        Later data for the job is dropped and credited back. The last few thousand closed jobs
        are remembered (with their counters); older ones are forgotten.
        """
        job = self._jobs.get(name)
        if job is None:
            return
        job.closed = True
        if job.error is None:
            job.error = JobAborted(name, self.party, "the job was closed")
        job.inb.clear()
        job.starved.clear()
        job.taken = job.received
        self._grant(job)
        self._closed[name] = None
        while len(self._closed) > _CLOSED_MEMORY:
            old, _ = self._closed.popitem(last=False)
            victim = self._jobs.get(old)
            if victim is not None and victim.closed and not victim.backlog:
                del self._jobs[old]

    def _fail_job(self, job: _Job, error: MpcError, *, drain_first: bool) -> None:
        if job.error is not None:
            return
        job.error = error
        job.drain_first = drain_first
        for ch in job.out.values():
            self._active.pop((job.name, ch.name), None)
            ch.queue.clear()
            ch.offset = 0
        job.backlog = 0
        if not drain_first:
            for inch in job.inb.values():
                inch.messages.clear()
                inch.partial = None
            job.taken = job.received

    def abort_job(self, name: str, reason: str) -> None:
        """Abort a job locally and queue a JOB_ABORT for the peer."""
        job = self._job(name)
        self._fail_job(job, JobAborted(name, self.party, reason), drain_first=False)
        self._queue_abort(name, reason)

    def _queue_abort(self, name: str, reason: str) -> None:
        frame = JobAbort(name, self.party, reason)
        self._aborts[name] = frame
        self._aborts_due.append(frame)

    def on_job_abort(self, frame: JobAbort) -> None:
        """The peer aborted a job (or refused data for it)."""
        self._closed.pop(frame.job, None)
        job = self._job(frame.job)
        self._fail_job(job, JobAborted(frame.job, frame.party, frame.reason), drain_first=False)

    def fail_all(self, error: MpcError) -> None:
        """The link failed for good: every job fails (buffered messages are still delivered)."""
        for job in self._jobs.values():
            self._fail_job(job, error, drain_first=True)
        self._new_job_error = error
        self._credits.clear()
        self._aborts.clear()
        self._aborts_due.clear()

    def expire_unopened(self, now: float, timeout: float) -> list[str]:
        """Abort jobs whose data waited unopened longer than ``timeout``; returns their names."""
        expired = []
        for job in list(self._jobs.values()):
            if not job.opened and job.error is None and now - job.first_seen > timeout:
                self.abort_job(
                    job.name,
                    f"job {job.name!r} was not opened at party {self.party!r} within "
                    f"{timeout:g} s of its first message",
                )
                expired.append(job.name)
        return expired

    # ---- sending -----------------------------------------------------------------------------

    def enqueue(self, name: str, channel: str, payload: bytes | memoryview) -> None:
        """Queue one encoded message.

        Raises:
            JobAborted, PeerLost: the job failed.
            ValueError: the payload exceeds max_message_bytes.
        """
        job = self._job(name)
        if job.error is not None:
            raise job.error
        if len(payload) > self.max_message_bytes:
            raise ValueError(
                f"message of {len(payload)} bytes on job {name!r} channel {channel!r} exceeds "
                f"max_message_bytes={self.max_message_bytes}"
            )
        job.opened = True
        ch = job.out.get(channel)
        if ch is None:
            ch = job.out[channel] = _OutChannel(job, channel)
        ch.queue.append((ch.next_msg, memoryview(payload)))
        ch.next_msg += 1
        job.backlog += len(payload)
        key = (name, channel)
        if key not in self._active:
            self._active[key] = ch

    @property
    def has_queued(self) -> bool:
        """True if messages wait to be packed (maybe for credit)."""
        return bool(self._active)

    @property
    def has_sendable(self) -> bool:
        """True if some queued message has credit to go now (what a closing node waits for)."""
        return self.peer_window > 0 and any(
            self._credit_of(ch.job) > 0 for ch in self._active.values()
        )

    def _credit_of(self, job: _Job) -> int:
        limit = job.limit if job.limit >= 0 else self.peer_window
        return limit - job.sent

    def pack(self) -> tuple[Chunk, ...]:
        """Take the chunks of one DATA frame (round-robin over channels, within credit)."""
        if not self.peer_window:
            return ()
        chunks: list[Chunk] = []
        budget = self.frame_budget
        active = self._active
        touched: set[_Job] = set()
        room = MAX_FRAME_CHUNKS
        while budget > 0 and room > 0 and active:
            progressed = False
            for key in list(active):
                ch = active[key]
                job = ch.job
                credit = self._credit_of(job)
                if credit <= 0:
                    continue
                msg, payload = ch.queue[0]
                total = len(payload)
                start = ch.offset
                n = min(self.chunk_bytes, total - start, credit)
                chunks.append(Chunk(job.name, ch.name, msg, start, total, payload[start : start + n]))
                touched.add(job)
                job.sent += n
                job.backlog -= n
                job.counters.bytes_sent += n
                budget -= n + _ENTRY_OVERHEAD + len(job.name) + len(ch.name)
                room -= 1
                progressed = True
                if start + n == total:
                    ch.queue.popleft()
                    ch.offset = 0
                    job.counters.messages_sent += 1
                    self.messages_sent += 1
                    if not ch.queue:
                        del active[key]
                    else:
                        active.move_to_end(key)
                else:
                    ch.offset = start + n
                    active.move_to_end(key)
                if budget <= 0 or room <= 0:
                    break
            if not progressed:
                break
        for job in touched:
            job.counters.frames_sent += 1
        return tuple(chunks)

    def on_credit(self, frame: Credit) -> None:
        job = self._jobs.get(frame.job)
        if job is not None and frame.limit > job.limit:
            job.limit = frame.limit

    @property
    def control_pending(self) -> bool:
        """True if CREDIT or JOB_ABORT frames wait to be sent."""
        return bool(self._credits or self._aborts_due)

    def control_due(self) -> list[Credit | JobAbort]:
        """CREDIT and JOB_ABORT frames to send now (each returned once)."""
        out: list[Credit | JobAbort] = [Credit(j, limit) for j, limit in self._credits.items()]
        out.extend(self._aborts_due)
        self._credits.clear()
        self._aborts_due.clear()
        return out

    def on_established(self, peer_window: int) -> None:
        """A connection (re)opened: re-send every explicit grant and every abort of ours."""
        self.peer_window = peer_window
        self._new_job_error = None
        for job in self._jobs.values():
            if job.granted > self.window and job.error is None:
                self._credits[job.name] = job.granted
        self._aborts_due = list(self._aborts.values())

    # ---- receiving ---------------------------------------------------------------------------

    def on_data(self, frame: Data, now: float) -> set[tuple[str, str]]:
        """Sort the chunks of a DATA frame into inboxes.

        Returns:
            The (job, channel) pairs that got a complete message or whose state changed.

        Raises:
            ProtocolError: the peer overran a window, broke message order or sizes.
        """
        woken: set[tuple[str, str]] = set()
        seen: set[_Job] = set()
        for c in frame.chunks:
            job = self._jobs.get(c.job)
            if job is None:
                job = self._job(c.job)
                job.first_seen = now
                job.closed = c.job in self._closed
            n = len(c.data)
            if job.received + n > job.granted:
                raise ProtocolError(
                    f"peer {self.peer!r} overran the window of job {c.job!r}: "
                    f"{job.received + n} bytes > limit {job.granted}"
                )
            job.received += n
            job.counters.bytes_received += n
            seen.add(job)
            if job.closed or (job.error is not None and not job.drain_first):
                job.taken += n  # dropped: credit it back
                continue
            try:
                self._add_chunk(job, c, woken)
            except ProtocolError as exc:
                # The peer broke this job's message order or sizes: fail the job, not the link.
                self._fail_job(job, exc, drain_first=False)
                self._queue_abort(job.name, f"protocol error: {exc}")
                woken.update((job.name, ch) for ch in job.inb)
        for job in seen:
            job.counters.frames_received += 1
            self._grant(job)
        return woken

    def _add_chunk(self, job: _Job, c: Chunk, woken: set[tuple[str, str]]) -> None:
        ch = job.inb.get(c.channel)
        if ch is None:
            ch = job.inb[c.channel] = _InChannel()
        where = f"job {c.job!r} channel {c.channel!r}"
        if c.offset == 0:
            if ch.partial is not None or c.msg != ch.next_msg:
                raise ProtocolError(f"{where}: message {c.msg} starts, expected {ch.next_msg}")
            if c.total > self.max_message_bytes:
                raise ProtocolError(
                    f"{where}: message of {c.total} bytes > max_message_bytes={self.max_message_bytes}"
                )
            if c.total < 1 << 16:
                buf = memoryview(bytearray(c.data if len(c.data) == c.total else c.total))
            else:
                # Uninitialised (np.empty, huge pages where offered): a zero-filled bytearray
                # would touch every page twice.
                raw: Any = np.empty(c.total, dtype=np.uint8)
                buf = memoryview(raw).cast("B")
            if len(c.data) != c.total:
                buf[: len(c.data)] = c.data
                ch.partial, ch.got = buf, len(c.data)
                return
            if c.total >= 1 << 16:
                buf[:] = c.data
        else:
            buf = ch.partial  # type: ignore[assignment]
            if buf is None or c.msg != ch.next_msg or c.offset != ch.got or c.total != len(buf):
                raise ProtocolError(
                    f"{where}: chunk of message {c.msg} at {c.offset}/{c.total} does not continue "
                    f"message {ch.next_msg} at {ch.got}"
                )
            end = c.offset + len(c.data)
            buf[c.offset : end] = c.data
            ch.got = end
            if end < c.total:
                return
            ch.partial = None
        ch.messages.append(buf)
        job.starved.discard(c.channel)
        ch.next_msg += 1
        job.counters.messages_received += 1
        self.messages_received += 1
        woken.add((c.job, c.channel))

    def take(self, name: str, channel: str) -> memoryview | None:
        """Pop the next complete message of a channel (None if there is none yet).

        Raises:
            JobAborted, PeerLost: the job failed (after buffered messages, for PeerLost).
        """
        job = self._job(name)
        if job.error is not None and not job.drain_first:
            raise job.error
        ch = job.inb.get(channel)
        if ch is not None and ch.messages:
            msg = ch.messages.popleft()
            job.taken += len(msg)
            self._grant(job)
            return msg
        if job.error is not None:
            raise job.error
        return None

    def set_waiting(self, name: str, channel: str, delta: int) -> None:
        """A receiver starts (+1) or stops (-1) waiting on a channel; may open the window."""
        job = self._job(name)
        ch = job.inb.get(channel)
        if ch is None:
            ch = job.inb[channel] = _InChannel()
        ch.waiting += delta
        if ch.waiting > 0 and not ch.messages:
            job.starved.add(channel)
            self._grant(job)
        else:
            job.starved.discard(channel)

    def _grant(self, job: _Job) -> None:
        target = job.taken + self.window
        if job.starved:
            target = max(target, job.received + self.window)
        if target <= job.granted:
            return
        if target - job.granted >= min(self.window // 4, self.chunk_bytes):
            job.granted = target
            self._credits[job.name] = target
