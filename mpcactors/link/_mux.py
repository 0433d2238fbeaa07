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
idempotent, re-sent after a reconnect); the sender never lets a job's charged bytes exceed it.
Both sides charge the same bytes: a message that fits the window is charged its whole ``total``
when it starts (the receiver allocates it then), so its first chunk needs credit for all of it
and the rest of its chunks are free; a message larger than the window, which the receiver
allocates without touching its pages, is charged chunk by chunk as it fills. A chunk that starts
a message must carry at least one byte. The initial limit is the receiver's ``job_window`` (told
in HELLO). The receiver moves the limit to
``taken + window``, where ``taken`` counts bytes the application has received, so a job whose
application does not read stalls itself only: the reader task never blocks, data waits in that
job's inbox, bounded by its window. While the application waits on a channel that has no complete
message (a message larger than the window, or messages read in another order than sent), the
receiver grants a window beyond what it buffers, so such a job still progresses; the sender's own
backpressure (``send`` waits while the job's queue exceeds a window) bounds what it can push.

**Limits per peer.** A peer may use at most ``max_channels_per_job`` channels in a job, have at
most ``max_jobs_per_peer`` live jobs here, and make us hold at most ``max_unopened_bytes`` for
jobs the application has not opened yet. Exceeding any of them, an empty chunk that starts a
message or a window overrun is a :class:`~mpcactors.ProtocolError` that fails the whole link.

**Unopened jobs.** Data for a job the application has not opened yet is buffered under the same
window (and the per-peer unopened budget). ``expire_unopened`` aborts jobs that stayed unopened
for too long (JOB_ABORT), so the sender's job fails with a clear error instead of waiting forever.

**Forgetting.** Ended jobs (closed, aborted, expired, failed) are remembered for the last
``_ENDED_MEMORY`` of them, so late data is dropped quietly and a late ``open_job`` sees the
error; older ones are forgotten. A JOB_ABORT we originated is re-sent after every reconnect
until a PONG answers a PING sent after it on the same connection (the peer processed it).

**Failure.** A job fails by a local or remote abort (``JobAborted``: pending and future receives
raise at once) or with its link (``PeerLost``: buffered messages are still delivered, then it
raises). Late data for failed or closed jobs is dropped and credited back.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from .._errors import JobAborted, MpcError, ProtocolError
from ._frames import MAX_FRAME_CHUNKS, MAX_NAME_CHARS, Chunk, Credit, Data, JobAbort
from ._mux_state import (
    InChannel,
    JobCounters,
    JobState,
    OutChannel,
    ReceiveMaps,
    detached,
    message_buffer,
)

__all__ = ["JobCounters", "Mux", "detached"]

_ENTRY_OVERHEAD: Final = 16  # msgpack bytes of an entry besides its job and channel names
_ENDED_MEMORY: Final = 4096  # ended job ids remembered, to drop their late data quietly


class Mux:
    """Per-peer multiplexer (sans-IO).

    Args:
        party: our party name (named in the JOB_ABORT frames we originate).
        peer: the peer's party name (for error messages).
        job_window: the window we grant each job of the peer.
        chunk_bytes: largest chunk of one message in a frame.
        frame_budget: payload bytes packed into one DATA frame at most.
        max_message_bytes: largest message accepted in either direction.
        max_channels_per_job: channels the peer may use in one job.
        max_jobs_per_peer: live jobs (not closed, aborted or failed) with the peer at a time; a
            job the peer starts beyond it is a ProtocolError.
        max_unopened_bytes: bytes we hold at most for the peer's jobs not opened here yet.
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
        max_channels_per_job: int,
        max_jobs_per_peer: int,
        max_unopened_bytes: int,
    ) -> None:
        self.party = party
        self.peer = peer
        self.window = job_window
        self.chunk_bytes = chunk_bytes
        self.frame_budget = frame_budget
        self.max_message_bytes = max_message_bytes
        self.max_channels = max_channels_per_job
        self.max_jobs = max_jobs_per_peer
        self.max_unopened_bytes = max_unopened_bytes
        self.peer_window = 0  # learned from the peer's HELLO
        self._jobs: dict[str, JobState] = {}
        self._live = 0  # jobs whose error is None
        self._unopened_held = 0  # bytes charged to live jobs not opened here
        self._ended: OrderedDict[str, None] = OrderedDict()  # ended jobs, oldest first
        self._active: OrderedDict[tuple[str, str], OutChannel] = OrderedDict()
        self._credits: dict[str, int] = {}  # CREDIT frames due: job -> limit
        self._aborts: dict[str, JobAbort] = {}  # JOB_ABORTs we originated (re-sent on resume)
        self._abort_sent: dict[str, float] = {}  # when each was last handed to the session
        self._aborts_due: list[JobAbort] = []
        self._new_job_error: MpcError | None = None  # set while the link is lost
        self.messages_sent = 0
        self.messages_received = 0
        self.receive_maps = ReceiveMaps()  # buffers of big incoming messages, reused

    # ---- jobs --------------------------------------------------------------------------------

    def _job(self, name: str) -> JobState:
        job = self._jobs.get(name)
        if job is None:
            job = self._jobs[name] = JobState(name, self.window)
            self._live += 1
            if self._new_job_error is not None:
                self._end(job, self._new_job_error, drain_first=True)
        return job

    def _unopened(self, job: JobState) -> bool:
        """True while data of the job waits for the application to open it."""
        return not job.opened and not job.closed and (job.error is None or job.drain_first)

    def _held(self, job: JobState) -> int:
        """Bytes ``job`` counts against the peer's unopened budget."""
        return job.received - job.taken if self._unopened(job) else 0

    def _open(self, job: JobState) -> None:
        if not job.opened:
            self._unopened_held -= self._held(job)
            job.opened = True

    def _end(self, job: JobState, error: MpcError, *, drain_first: bool) -> None:
        """The job ends with ``error`` (it must be live); remember it for a while.

        With ``drain_first`` its buffered messages stay readable (and, if it was never opened,
        in the unopened budget until they expire); the caller drops them otherwise.
        """
        before = self._held(job)
        job.error, job.drain_first = detached(error), drain_first
        self._live -= 1
        if not self._live:
            self.receive_maps.release()
        self._unopened_held += self._held(job) - before
        self._ended[job.name] = None
        if len(self._ended) > _ENDED_MEMORY:
            old, _ = self._ended.popitem(last=False)
            victim = self._jobs.get(old)
            if victim is not None and victim.backlog:
                self._ended[old] = None  # its queued sends still go; forget it later
            else:
                self._jobs.pop(old, None)
                self._aborts.pop(old, None)
                self._abort_sent.pop(old, None)

    def open_job(self, name: str) -> None:
        """The application opened the job: its data is expected (no unopened timeout).

        A job id is used once: a job closed here stays closed (its channels raise JobAborted)
        until it is forgotten, so late or reused traffic can never be mixed into a new job.
        """
        self._open(self._job(name))

    def live_opened_jobs(self) -> list[str]:
        """Jobs opened here that have not ended."""
        return [
            name
            for name, job in self._jobs.items()
            if job.opened and job.error is None and not job.closed
        ]

    def job_error(self, name: str) -> MpcError | None:
        job = self._jobs.get(name)
        return job.error if job is not None else None

    def jobs(self) -> dict[str, JobCounters]:
        """Counters of every job (ended ones too, until forgotten)."""
        return {name: job.counters for name, job in self._jobs.items()}

    @property
    def live_jobs(self) -> int:
        """Jobs with the peer that have not ended."""
        return self._live

    @property
    def unopened_bytes(self) -> int:
        """Bytes held for the peer's jobs not opened here."""
        return self._unopened_held

    def job_backlog(self, name: str) -> int:
        job = self._jobs.get(name)
        return job.backlog if job is not None else 0

    def job_buffered(self, name: str) -> int:
        job = self._jobs.get(name)
        return job.received - job.taken if job is not None else 0

    def close_job(self, name: str) -> None:
        """Free the job's inbound buffers; its queued outbound data is still sent.

        Later data for the job is dropped and credited back. The last few thousand ended jobs
        are remembered (with their counters); older ones are forgotten.
        """
        job = self._jobs.get(name)
        if job is None:
            return
        if job.error is None:
            self._end(job, JobAborted(name, self.party, "the job was closed"), drain_first=False)
        self._drop_inbound(job)
        job.closed = True
        job.starved.clear()
        self._grant(job)

    def _drop_inbound(self, job: JobState) -> None:
        """Free everything received for the job (which has ended) and credit it back."""
        before = self._held(job)
        job.drain_first = False
        for inch in job.inb.values():
            inch.messages.clear()
            inch.partial = None
        job.taken = job.received
        self._unopened_held += self._held(job) - before

    def _fail_job(self, job: JobState, error: MpcError, *, drain_first: bool) -> None:
        if job.error is not None:
            return
        self._end(job, error, drain_first=drain_first)
        for ch in job.out.values():
            self._active.pop((job.name, ch.name), None)
            ch.queue.clear()
            ch.offset = 0
        job.backlog = 0
        if not drain_first:
            self._drop_inbound(job)

    def abort_job(self, name: str, reason: str) -> None:
        """Abort a job locally and queue a JOB_ABORT for the peer."""
        job = self._job(name)
        self._fail_job(job, JobAborted(name, self.party, reason), drain_first=False)
        self._queue_abort(name, reason)

    def _queue_abort(self, name: str, reason: str) -> None:
        frame = JobAbort(name, self.party, reason)
        self._aborts[name] = frame
        self._abort_sent.pop(name, None)
        self._aborts_due.append(frame)

    def on_job_abort(self, frame: JobAbort) -> JobAbort:
        """The peer aborted a job (or refused data for it).

        Only the peer itself can abort a job on this link: a frame naming another party is
        attributed to the peer (the claim is kept in the reason).

        Returns:
            The abort as applied: ``party`` is always the peer.
        """
        if frame.party != self.peer:
            frame = JobAbort(
                frame.job,
                self.peer,
                f"{frame.reason} (the JOB_ABORT claimed party {frame.party!r})",
            )
        job = self._job(frame.job)
        self._fail_job(job, JobAborted(frame.job, frame.party, frame.reason), drain_first=False)
        return frame

    def fail_all(self, error: MpcError) -> None:
        """The link failed for good: every job fails (buffered messages are still delivered;
        those of jobs not opened here count against the unopened budget until they expire)."""
        for job in list(self._jobs.values()):
            self._fail_job(job, error, drain_first=True)
        self._new_job_error = error
        self._credits.clear()
        self._aborts.clear()
        self._abort_sent.clear()
        self._aborts_due.clear()

    def expire_unopened(self, now: float, timeout: float) -> list[str]:
        """Abort jobs whose data waited unopened longer than ``timeout``; returns their names.

        Data that a failed link left for jobs never opened is dropped then too.
        """
        expired = []
        for job in list(self._jobs.values()):
            if not self._unopened(job) or now - job.first_seen <= timeout:
                continue
            if job.error is not None:
                self._drop_inbound(job)
            else:
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
            ValueError: the payload is empty or exceeds max_message_bytes, or a name is too long.
        """
        if len(name) > MAX_NAME_CHARS or len(channel) > MAX_NAME_CHARS:
            raise ValueError(
                f"job {name!r:.60} channel {channel!r:.60}: names are at most {MAX_NAME_CHARS} "
                "characters"
            )
        job = self._job(name)
        if job.error is not None:
            raise job.error
        if not 0 < len(payload) <= self.max_message_bytes:
            raise ValueError(
                f"message of {len(payload)} bytes on job {name!r} channel {channel!r}: must be "
                f"1..max_message_bytes={self.max_message_bytes} bytes"
            )
        self._open(job)
        ch = job.out.get(channel)
        if ch is None:
            ch = job.out[channel] = OutChannel(job, channel)
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
            self._next_chunk(ch) is not None for ch in self._active.values()
        )

    def _next_chunk(self, ch: OutChannel) -> tuple[int, int] | None:
        """(bytes, charge) of the channel's next chunk, or None while credit is short.

        The same rule as the receiver's (see :meth:`_charge`): a message that fits the window
        starts when its whole total fits the credit (plus a quarter window of slack, so a job
        whose peer has read everything never waits for a grant below the peer's threshold) and
        its later chunks are free; a larger message is charged chunk by chunk.
        """
        job = ch.job
        limit = job.limit if job.limit >= 0 else self.peer_window
        credit = limit - job.sent
        total = len(ch.queue[0][1])
        start = ch.offset
        if total > self.peer_window:
            n = min(self.chunk_bytes, total - start, credit)
            return (n, n) if n > 0 else None
        n = min(self.chunk_bytes, total - start)
        if start:
            return n, 0
        return (n, total) if total <= credit + self.peer_window // 4 else None

    def pack(self) -> tuple[Chunk, ...]:
        """Take the chunks of one DATA frame (round-robin over channels, within credit)."""
        if not self.peer_window:
            return ()
        chunks: list[Chunk] = []
        budget = self.frame_budget
        active = self._active
        touched: set[JobState] = set()
        room = MAX_FRAME_CHUNKS
        while budget > 0 and room > 0 and active:
            progressed = False
            for key in list(active):
                ch = active[key]
                job = ch.job
                step = self._next_chunk(ch)
                if step is None:
                    continue
                n, charge = step
                msg, payload = ch.queue[0]
                total = len(payload)
                start = ch.offset
                chunks.append(
                    Chunk(job.name, ch.name, msg, start, total, payload[start : start + n])
                )
                touched.add(job)
                job.sent += charge
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

    def control_due(self, now: float) -> list[Credit | JobAbort]:
        """CREDIT and JOB_ABORT frames to send now (each returned once).

        ``now`` stamps the aborts: a PONG to a PING sent later (:meth:`on_pong`) confirms them.
        """
        out: list[Credit | JobAbort] = [Credit(j, limit) for j, limit in self._credits.items()]
        for frame in self._aborts_due:
            if self._aborts.get(frame.job) is frame:
                self._abort_sent[frame.job] = now
            out.append(frame)
        self._credits.clear()
        self._aborts_due.clear()
        return out

    def on_pong(self, t: float) -> None:
        """The peer answered a PING sent at ``t``: it processed every abort sent before it,
        so those need not be re-sent after a reconnect."""
        for name, sent in list(self._abort_sent.items()):
            if sent < t:
                del self._abort_sent[name]
                self._aborts.pop(name, None)

    def on_established(self, peer_window: int) -> None:
        """A connection (re)opened: re-send every explicit grant and every unconfirmed abort."""
        self.peer_window = peer_window
        self._new_job_error = None
        for job in self._jobs.values():
            if job.granted > self.window and job.error is None:
                self._credits[job.name] = job.granted
        self._aborts_due = list(self._aborts.values())
        self._abort_sent.clear()

    # ---- receiving ---------------------------------------------------------------------------

    def _limit_error(self, what: str) -> ProtocolError:
        return ProtocolError(f"peer {self.peer!r} {what}", peer=self.peer)

    def _charge(self, job: JobState, c: Chunk) -> int:
        """Check one chunk against the job's window; return the bytes it is charged.

        Raises:
            ProtocolError: an empty chunk starts a message, or the window is overrun.
        """
        n = len(c.data)
        if c.total > self.window:  # larger than a window: charged as it fills
            if job.received + n > job.granted:
                raise self._limit_error(
                    f"overran the window of job {c.job!r}: {job.received + n} bytes > limit "
                    f"{job.granted}"
                )
            return n
        if c.offset:
            return 0  # paid for when the message started
        if n == 0:
            raise self._limit_error(
                f"started message {c.msg} of {c.total} bytes on job {c.job!r} channel "
                f"{c.channel!r} with an empty chunk"
            )
        if job.received + c.total > job.granted + self.window // 4:
            raise self._limit_error(
                f"overran the window of job {c.job!r}: a message of {c.total} bytes after "
                f"{job.received} > limit {job.granted}"
            )
        return c.total

    def on_data(self, frame: Data, now: float) -> set[tuple[str, str]]:
        """Sort the chunks of a DATA frame into inboxes.

        Returns:
            The (job, channel) pairs that got a complete message or whose state changed.

        Raises:
            ProtocolError: the peer overran a window, started a message with an empty chunk or
                exceeded a per-peer limit (the link fails). A peer that breaks one job's message
                order or sizes fails that job only.
        """
        woken: set[tuple[str, str]] = set()
        seen: set[JobState] = set()
        for c in frame.chunks:
            job = self._jobs.get(c.job)
            if job is None:
                if self._live >= self.max_jobs:
                    raise self._limit_error(
                        f"exceeded link.max_jobs_per_peer={self.max_jobs}: job {c.job!r} would "
                        f"be one more live job"
                    )
                job = self._job(c.job)
                job.first_seen = now
            charge = self._charge(job, c)
            job.received += charge
            job.counters.bytes_received += len(c.data)
            seen.add(job)
            if job.closed or (job.error is not None and not job.drain_first):
                job.taken += charge  # dropped: credit it back
                continue
            if self._unopened(job):
                self._unopened_held += charge
                if self._unopened_held > self.max_unopened_bytes:
                    raise self._limit_error(
                        f"exceeded link.max_unopened_bytes={self.max_unopened_bytes}: "
                        f"{self._unopened_held} bytes for jobs not opened at {self.party!r}"
                    )
            if c.channel not in job.inb and len(job.inb) >= self.max_channels:
                raise self._limit_error(
                    f"exceeded link.max_channels_per_job={self.max_channels} in job {c.job!r} "
                    f"(channel {c.channel!r})"
                )
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

    def _add_chunk(self, job: JobState, c: Chunk, woken: set[tuple[str, str]]) -> None:
        ch = job.inb.get(c.channel)
        if ch is None:
            ch = job.inb[c.channel] = InChannel()
        where = f"job {c.job!r} channel {c.channel!r}"
        if c.offset == 0:
            if ch.partial is not None or c.msg != ch.next_msg:
                raise ProtocolError(f"{where}: message {c.msg} starts, expected {ch.next_msg}")
            if c.total > self.max_message_bytes:
                raise ProtocolError(
                    f"{where}: message of {c.total} bytes > max_message_bytes={self.max_message_bytes}"
                )
            buf = message_buffer(c.total, c.data, self.receive_maps)
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
            self._open(job)  # whoever reads a job has opened it
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
            ch = job.inb[channel] = InChannel()
        ch.waiting += delta
        if ch.waiting > 0 and not ch.messages:
            job.starved.add(channel)
            self._grant(job)
        else:
            job.starved.discard(channel)

    def _grant(self, job: JobState) -> None:
        target = job.taken + self.window
        if job.starved:
            target = max(target, job.received + self.window)
        if target <= job.granted:
            return
        if target - job.granted >= min(self.window // 4, self.chunk_bytes):
            job.granted = target
            self._credits[job.name] = target
