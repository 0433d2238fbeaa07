"""Async shell of one peer link: connection manager, reader, writer, heartbeat.

Theory of operation
-------------------
A :class:`PeerLink` owns the sans-IO :class:`~._session.Session` and :class:`~._mux.Mux` of one
peer and drives them with four kinds of tasks, all in the node's task group:

* ``run`` (one per link, node lifetime) obtains connections -- the dialer (the party whose name
  sorts lower) dials with retry, the other side waits for the listener to hand one over -- and
  runs each connection until it ends: HELLO exchange, then a reader and ONE writer task in a
  task group bound to that connection. When a connection drops, unacked DATA stays in the
  session and the loop obtains a new one, until the deadline :class:`~._liveness.Liveness` gives
  (``last_heard + peer_timeout_s``); past that, every
  job with the peer fails with :class:`~mpcactors.PeerLost`, the session is replaced by a new
  incarnation, and the link keeps (quietly) trying, so a restarted peer can be reached again.
  A closing link (``close``, the node's linger) goes on reconnecting and resuming the same way
  until its queued and unacked DATA is acknowledged or the linger runs out; then CLOSE goes.
* The reader never blocks on the application: it feeds bytes to the session and sorts DATA into
  the mux's inboxes, waking receivers.
* The writer packs everything queued since its last write (control frames, then one DATA frame
  with chunks of all jobs) and sends it; encoding happens before the send lock is taken.
* ``heartbeat`` acts on :class:`~._liveness.Liveness`'s decisions (PING every
  ``heartbeat_interval_s``, drop a connection that has been silent for too long: the peer then
  has to come back through a new connection) and expires data of jobs never opened locally.
  ``close`` lingers as :class:`~._liveness.Linger` says. Those policies are sans-IO.

Transport exceptions are classified once (``is_disconnect``) in ``_guard``: a dropped
connection is not an error, it is a reconnect.
"""

from __future__ import annotations

import random
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
from anyio.abc import ByteStream

from .._config import ClusterConfig, WanProfile
from .._errors import AuthenticationError, LinkError, PeerLost, PeerUnavailable, ProtocolError
from .._log import get_logger
from ._frames import NEED_DATA, Credit, Data, JobAbort, Ping, Pong
from ._hooks import FrameTracer, Signal
from ._liveness import Linger, Liveness
from ._mux import Mux, detached
from ._pump import KEEPALIVE_T, PumpStream
from ._session import Established, PeerClosed, Session, State
from ._stats import JobLinkStatistics, LinkStatistics
from ._tls import TlsSocketStream
from ._transport import (
    BACKOFF_CAP_S,
    HANDSHAKE_TIMEOUT_S,
    Connection,
    Transport,
    auth_error_from_ssl,
    connect_with_retry,
    is_disconnect,
)
from ._wan import WanStream

__all__ = ["PeerLink"]

RECV_BYTES = 1 << 18
_COALESCE_BYTES = 1 << 16
_RTT_GAIN = 0.125
_CHUNKS_PER_TURN = 2048
_BYTES_PER_TURN = 1 << 20  # copying this much into messages takes ~1-2 ms: then others run


class PeerLink:
    """Everything a node keeps about one peer. Made by the node; not public."""

    def __init__(
        self,
        *,
        party: str,
        peer: str,
        config: ClusterConfig,
        transport: Transport,
        wan: WanProfile | None,
        rng: random.Random,
        on_job_abort: Callable[[str, str, str], None],
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.party = party
        self.peer = peer
        self.config = config
        self.opts = config.link
        self.transport = transport
        self.dialer = party < peer
        self.wan = wan
        self._rng = rng
        self._on_job_abort = on_job_abort
        self._on_ready = on_ready
        self._log = get_logger(party=party, peer=peer)
        opts = self.opts
        self.mux = Mux(
            party=party,
            peer=peer,
            job_window=opts.job_window_bytes,
            chunk_bytes=opts.chunk_bytes,
            frame_budget=min(opts.max_frame_bytes // 2, 4 * opts.chunk_bytes),
            max_message_bytes=opts.max_message_bytes,
            max_channels_per_job=opts.max_channels_per_job,
            max_jobs_per_peer=opts.max_jobs_per_peer,
            max_unopened_bytes=opts.max_unopened_bytes,
        )
        self.session = self._new_session()
        self.failure: LinkError | None = None
        self.connected = False
        self.liveness = Liveness(
            heartbeat_interval_s=opts.heartbeat_interval_s, peer_timeout_s=opts.peer_timeout_s,
            connect_timeout_s=opts.connect_timeout_s, now=anyio.current_time(),
        )  # fmt: skip
        self.ready = anyio.Event()  # set on the first handshake or the first failure
        self.closing = False  # close() started: lingering until delivered, then goodbye
        self._closed = False  # close() sent CLOSE or gave up: no more connections
        self._run_scope: anyio.CancelScope | None = None
        self._incoming: deque[tuple[Connection, bytes]] = deque()
        self._incoming_signal = Signal()
        self._conn_scope: anyio.CancelScope | None = None
        self._conn_error: BaseException | None = None
        self._writer_signal = Signal()
        self._force_ack = False
        self._send_lock = anyio.Lock()
        self._waiters: dict[tuple[str, str], anyio.Event] = {}
        self._space: dict[str, anyio.Event] = {}
        self.bytes_sent = self.bytes_received = 0
        self.reconnects = 0
        self.rejected = 0  # incoming connections refused at the handshake
        self.rtt_s: float | None = None
        self._old = [0, 0, 0, 0, 0]  # frame counters of retired sessions
        self._pump: PumpStream | None = None  # the live connection's I/O thread, if any
        self.tracer: FrameTracer | None = None  # set while a traced job runs at this node

    @property
    def ever_connected(self) -> bool:
        return self.liveness.ever_connected

    @property
    def last_heard(self) -> float:
        return self.liveness.last_heard

    def _new_session(self) -> Session:
        return Session(
            party=self.party,
            peer=self.peer,
            cluster=self.config.cluster_id,
            session_id=secrets.token_hex(8),
            job_window=self.opts.job_window_bytes,
            max_frame_bytes=self.opts.max_frame_bytes,
        )

    def _retire_session(self) -> None:
        s = self.session
        for i, v in enumerate(
            (s.frames_sent, s.frames_received, s.data_frames_sent, s.retransmitted, s.duplicates)
        ):
            self._old[i] += v
        self.session = self._new_session()

    # ---- waking ------------------------------------------------------------------------------

    def _wake(self, key: tuple[str, str]) -> None:
        ev = self._waiters.pop(key, None)
        if ev is not None:
            ev.set()

    def _wake_job(self, job: str) -> None:
        for key in [k for k in self._waiters if k[0] == job]:
            self._wake(key)
        ev = self._space.pop(job, None)
        if ev is not None:
            ev.set()

    def _wake_all(self) -> None:
        for ev in self._waiters.values():
            ev.set()
        for ev in self._space.values():
            ev.set()
        self._waiters.clear()
        self._space.clear()

    def _wake_space(self) -> None:
        window = self.opts.job_window_bytes
        for job in [j for j in self._space if self.mux.job_backlog(j) < window]:
            self._space.pop(job).set()

    # ---- application side --------------------------------------------------------------------

    def send_nowait(self, job: str, channel: str, payload: bytes | memoryview) -> None:
        self.mux.enqueue(job, channel, payload)
        self._writer_signal.set()

    async def send(self, job: str, channel: str, payload: bytes | memoryview) -> None:
        window = self.opts.job_window_bytes
        while self.mux.job_backlog(job) >= window and self.mux.job_error(job) is None:
            ev = self._space.get(job)
            if ev is None:
                ev = self._space[job] = anyio.Event()
            await ev.wait()
        self.send_nowait(job, channel, payload)

    async def receive(self, job: str, channel: str) -> memoryview:
        key = (job, channel)
        while True:
            msg = self.mux.take(job, channel)
            if msg is not None:
                if self.mux.control_pending:
                    self._writer_signal.set()
                return msg
            ev = self._waiters.get(key)
            if ev is None:
                ev = self._waiters[key] = anyio.Event()
            self.mux.set_waiting(job, channel, +1)
            if self.mux.control_pending:
                self._writer_signal.set()
            try:
                await ev.wait()
            finally:
                self.mux.set_waiting(job, channel, -1)

    def abort_job(self, job: str, reason: str) -> None:
        self.mux.abort_job(job, reason)
        self._wake_job(job)
        self._writer_signal.set()

    def close_job(self, job: str) -> None:
        self.mux.close_job(job)
        self._wake_job(job)
        self._writer_signal.set()

    def drop_connection(self) -> bool:
        """Cut the current connection (chaos/test hook); the link reconnects and resumes."""
        if self._conn_scope is None:
            return False
        self._conn_scope.cancel()
        return True

    def offer(self, conn: Connection, initial: bytes) -> None:
        """The listener accepted a connection from this peer; it supersedes the current one."""
        self._incoming.append((conn, initial))
        self._incoming_signal.set()
        if self._conn_scope is not None:
            self._conn_scope.cancel()

    # ---- failure -----------------------------------------------------------------------------

    def _fail(self, error: LinkError, *, orderly: bool = False) -> None:
        """The link failed for good: every job fails; a new session starts for later.

        ``orderly``: the peer closed the link on purpose (its node is shutting down): logged at
        info, not as a warning; its jobs still fail with PeerLost if they wait for it.
        """
        if self.failure is None and not self.closing:
            if orderly:
                self._log.info("link closed by peer", reason=str(error))
            else:
                self._log.warning("link failed", error=str(error))
        self.failure = error = detached(error)
        self.mux.fail_all(error)
        self._retire_session()
        self._wake_all()
        self.ready.set()
        self._on_ready()

    # ---- connection manager ------------------------------------------------------------------

    async def run(self) -> None:
        """Obtain and run connections for the node's lifetime.

        A closing link keeps obtaining connections (the dialer redials, the acceptor accepts)
        until :meth:`close` has delivered what it could and said goodbye, so a connection cut
        during the linger does not lose the last messages.
        """
        with anyio.CancelScope() as scope:
            self._run_scope = scope
            await self._run()

    async def _run(self) -> None:
        while not self._closed:
            background = self.failure is not None
            if background and self.closing:
                return  # nothing left to deliver to a peer already given up on
            deadline = self.liveness.obtain_deadline(given_up=background)
            try:
                conn = await self._obtain(deadline)
            except (PeerUnavailable, AuthenticationError, ProtocolError) as exc:
                if background:
                    await anyio.sleep(BACKOFF_CAP_S)
                elif self.ever_connected and isinstance(exc, PeerUnavailable):
                    lost = PeerLost(
                        f"peer {self.peer!r} lost: no connection for {self.opts.peer_timeout_s:g} s"
                        f" ({exc})",
                        peer=self.peer,
                    )
                    lost.__cause__ = exc
                    self._fail(lost)
                else:
                    self._fail(exc)
                continue
            await self._serve(conn)

    async def _obtain(self, deadline: float) -> Connection:
        """A connection whose handshake completed, before ``deadline``."""
        timeout = deadline - anyio.current_time()
        address = self.transport.address(self.peer)
        if self.dialer:
            return await connect_with_retry(
                self._dial_once,
                peer=self.peer,
                address=address,
                attempts=self.opts.connect_retry_times if not self.ever_connected else None,
                interval_s=self.opts.connect_retry_interval_ms / 1000,
                timeout_s=timeout,
                rng=self._rng,
            )
        with anyio.move_on_after(timeout):
            while True:
                while not self._incoming:
                    await self._incoming_signal.wait()
                conn, initial = self._incoming.popleft()
                try:
                    await self._handshake(conn, initial)
                except (AuthenticationError, ProtocolError) as exc:
                    self.rejected += 1
                    self._log.warning("rejected incoming connection", error=str(exc))
                    continue
                except (
                    OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    anyio.EndOfStream,
                ) as exc:  # fmt: skip
                    self._log.info("incoming connection failed its handshake", error=repr(exc))
                    continue
                return conn
        # a deadline already past (a reconnect after last_heard + peer_timeout_s) waited 0 s
        raise PeerUnavailable(self.peer, address, 0, f"it did not connect within {max(timeout, 0.0):g} s")

    async def _dial_once(self) -> Connection:
        conn = await self.transport.connect(self.peer)
        await self._handshake(conn, b"")
        return conn

    async def _handshake(self, conn: Connection, initial: bytes) -> None:
        """Exchange HELLOs on a fresh connection (closed again if anything fails).

        Raises:
            AuthenticationError: the peer's identity is wrong, or it refused ours.
            ProtocolError: the peer spoke nonsense (poisons the session).
            OSError, TimeoutError, anyio errors: the connection dropped (retry).
        """
        stream = conn.stream
        session = self.session
        try:
            session.connect()
            with anyio.fail_after(HANDSHAKE_TIMEOUT_S):
                await self._flush(stream)
                if initial:
                    session.receive_data(initial)
                while not isinstance(event := session.next_event(), Established):
                    if event is not NEED_DATA:
                        raise ProtocolError(f"{event!r} before the handshake completed")
                    data = await stream.receive(RECV_BYTES)
                    self.bytes_received += len(data)
                    session.receive_data(data)
        except BaseException as exc:
            if isinstance(exc, LinkError) and session.has_output:
                with anyio.move_on_after(1.0, shield=True):
                    try:
                        await self._flush(stream)  # a CLOSE telling the peer why
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass
            await anyio.aclose_forcefully(stream)
            if session.state is State.HANDSHAKING:
                session.connection_lost()
            if isinstance(exc, ssl.SSLError) and not is_disconnect(exc):
                raise auth_error_from_ssl(exc, self.peer, conn.address) from exc
            if isinstance(exc, ssl.SSLError):
                raise ConnectionResetError(str(exc)) from exc
            raise
        was_connected = self.ever_connected
        self.liveness.established(anyio.current_time())
        if event.restarted:
            self.mux.fail_all(PeerLost(f"peer {self.peer!r} restarted: its jobs are gone"))
            self._wake_all()
        self.mux.on_established(event.peer_job_window)
        if was_connected:
            self.reconnects += 1
        self._log.info(
            "link established", resumed=event.resumed, replayed=event.replayed,
            restarted=event.restarted, reconnects=self.reconnects,
        )  # fmt: skip
        self.failure = None
        self.connected = True
        self.ready.set()
        self._on_ready()
        self._writer_signal.set()

    async def _serve(self, conn: Connection) -> None:
        """Run reader and writer on an established connection until it ends."""
        self._conn_error = None
        try:
            async with AsyncExitStack() as stack:
                stack.push_async_callback(anyio.aclose_forcefully, conn.stream)
                stream: ByteStream = conn.stream
                if self.wan is not None:
                    stream = await stack.enter_async_context(
                        WanStream(stream, self.wan, rng=random.Random(self._rng.random()))
                    )
                elif self.opts.io_thread and isinstance(stream, TlsSocketStream):
                    stream = self._pump = PumpStream.start(
                        stream, keepalive_s=self.opts.heartbeat_interval_s,
                        name=f"{self.party}-{self.peer}",
                    )  # fmt: skip
                    stack.push_async_callback(stream.aclose)
                with anyio.CancelScope() as scope:
                    self._conn_scope = scope
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._guard, self._reader, stream, scope)
                        tg.start_soon(self._guard, self._writer, stream, scope)
                if isinstance(self._conn_error, LinkError) and self.session.has_output:
                    with anyio.move_on_after(1.0, shield=True):
                        try:
                            await self._flush(stream)  # a CLOSE telling the peer why
                        except Exception as exc:
                            if not is_disconnect(exc):
                                raise
        finally:
            self._conn_scope = None
            self._pump = None
            self.connected = False
        self._after_connection(self._conn_error)

    def _after_connection(self, exc: BaseException | None) -> None:
        if isinstance(exc, ssl.SSLError) and not is_disconnect(exc):
            exc = auth_error_from_ssl(exc, self.peer, self.transport.address(self.peer))
        if isinstance(exc, LinkError):
            if exc.peer is None:
                exc.peer = self.peer
            self._fail(exc)
            return
        if isinstance(exc, _PeerClosedSignal):
            self._fail(PeerLost(f"peer {self.peer!r} closed the link: {exc}", peer=self.peer), orderly=True)
            return
        if self.session.state in (State.CLOSED, State.FAILED):
            self._retire_session()
            return
        self.session.connection_lost()
        self._log.info("connection lost", error=repr(exc) if exc else "cut")

    async def _guard(self, fn: Any, stream: ByteStream, scope: anyio.CancelScope) -> None:
        try:
            await fn(stream)
        except (LinkError, ssl.SSLError, _PeerClosedSignal) as exc:
            self._conn_error = self._conn_error or exc
            scope.cancel()
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            self._conn_error = self._conn_error or exc
            scope.cancel()

    # ---- reader and writer -------------------------------------------------------------------

    async def _reader(self, stream: ByteStream) -> None:
        session = self.session
        receive_into = getattr(stream, "receive_into", None)  # TLS sockets: no copies
        while True:
            while self._process(session):
                await anyio.lowlevel.checkpoint()  # let receivers run between big frames
            if receive_into is not None:
                n = await receive_into(session.get_buffer())
                session.buffer_updated(n)
            else:
                data = await stream.receive(RECV_BYTES)
                n = len(data)
                session.receive_data(data)
            self.bytes_received += n
            self.liveness.heard(anyio.current_time())

    def _process(self, session: Session) -> bool:
        """Handle buffered frames; True if it stopped early to let other tasks run."""
        wake_writer = more = False
        chunks = size = 0
        while True:
            if chunks >= _CHUNKS_PER_TURN or size >= _BYTES_PER_TURN:
                more = True
                break
            event = session.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Data):
                if self.tracer is not None:
                    self.tracer.frame_received(self.peer, event.seq, event.chunks)
                chunks += len(event.chunks)
                size += sum(len(c.data) for c in event.chunks)
                try:
                    woken = self.mux.on_data(event, self.last_heard)
                except ProtocolError as exc:  # a window or a per-peer limit: the link fails
                    session.fail(exc)
                    raise
                for key in woken:
                    self._wake(key)
                if self._space:
                    self._wake_space()  # a job failed by bad data must not leave senders waiting
            elif isinstance(event, Credit):
                self.mux.on_credit(event)
                wake_writer = True
            elif isinstance(event, JobAbort):
                applied = self.mux.on_job_abort(event)
                if applied.party != event.party:
                    self._log.warning(
                        "JOB_ABORT names another party; attributed to the peer that sent it",
                        job=event.job, claimed=event.party,
                    )  # fmt: skip
                self._wake_job(event.job)
                self._log.info("job aborted by peer", job=event.job, reason=applied.reason)
                self._on_job_abort(applied.job, applied.party, applied.reason)
            elif isinstance(event, Pong):
                if event.t == KEEPALIVE_T:
                    continue  # the answer to our I/O thread's keepalive: no timestamp
                self.mux.on_pong(event.t)
                sample = max(0.0, anyio.current_time() - event.t)
                self.rtt_s = sample if self.rtt_s is None else (
                    (1 - _RTT_GAIN) * self.rtt_s + _RTT_GAIN * sample
                )  # fmt: skip
            elif isinstance(event, PeerClosed):
                self._writer_signal.set()
                raise _PeerClosedSignal(event.reason)
        if wake_writer or session.has_output or session.ack_urgent or self.mux.control_pending:
            self._writer_signal.set()
        return more

    def _collect(self) -> list[bytes | memoryview]:
        session = self.session
        if session.is_open:
            for frame in self.mux.control_due(anyio.current_time()):
                session.send_control(frame)
            chunks = self.mux.pack()
            if chunks:
                seq = session.send_data(chunks)
                if self.tracer is not None:
                    self.tracer.frame_sent(self.peer, seq, chunks)
                self._wake_space()
        session.send_ack(force=self._force_ack)
        self._force_ack = False
        return session.data_to_send()

    async def _writer(self, stream: ByteStream) -> None:
        while True:
            out = self._collect()
            if out:
                await self._send(stream, out)
                if self.tracer is not None:
                    self.tracer.frames_written(self.peer)
            else:
                await self._writer_signal.wait()

    async def _flush(self, stream: ByteStream) -> None:
        out = self.session.data_to_send()
        if out:
            await self._send(stream, out)

    async def _send(self, stream: ByteStream, out: list[bytes | memoryview]) -> None:
        batch: list[bytes | memoryview] = []
        size = 0
        async with self._send_lock:
            if isinstance(stream, PumpStream):  # whole frames as one unit to the I/O thread
                await stream.send_frames(out)
                self.bytes_sent += sum(len(buf) for buf in out)
                return
            for buf in out:
                if len(buf) >= _COALESCE_BYTES:
                    if batch:
                        await stream.send(b"".join(batch))
                        batch, size = [], 0
                    await stream.send(buf)  # type: ignore[arg-type]
                else:
                    batch.append(buf)
                    size += len(buf)
                self.bytes_sent += len(buf)
            if batch:
                await stream.send(b"".join(batch))

    # ---- timers and closing ------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """PING, silence detection and unopened-job expiry, for the node's lifetime."""
        liveness = self.liveness
        next_at = anyio.current_time() + liveness.heartbeat_interval_s
        while True:
            await anyio.sleep_until(next_at)
            now = anyio.current_time()
            pump = self._pump
            if pump is not None:  # heard by the I/O thread while this loop was busy
                liveness.heard(pump.last_received())
            tick = liveness.tick(now, connection_open=self.connected and self.session.is_open)
            if tick.ping:
                self.session.send_control(Ping(now))
                self._force_ack = True  # delayed ACKs leave at the latest now
                self._writer_signal.set()
            if tick.drop:
                self._log.info("peer silent; dropping the connection", silent_s=tick.silent_s)
                self.drop_connection()
            next_at = tick.next_at
            for job in self.mux.expire_unopened(now, self.opts.unopened_job_timeout_s):
                self._log.warning("messages for a job never opened here; aborting it", job=job)
                self._wake_job(job)
                self._writer_signal.set()

    def _undelivered(self) -> bool:
        """True while queued or unacknowledged DATA could still reach the peer.

        A dropped connection does not end the linger: ``run`` keeps reconnecting and the
        session replays its unacked frames. Only a failed link (the peer was given up on, or
        it said goodbye) or a link that never connected has nothing more to hope for.
        """
        if self.failure is not None or not self.ever_connected:
            return False
        if self.session.state not in (State.OPEN, State.DISCONNECTED, State.HANDSHAKING):
            return False
        return bool(self.session.unacked_frames or self.mux.has_sendable or self.mux.control_pending)

    async def close(self, linger_s: float) -> None:
        """Flush what can be delivered (bounded by ``linger_s``), say goodbye, fail local waiters.

        While lingering the link still reconnects and resumes like any session (the dialer
        redials with the normal retry rules, the acceptor accepts), so frames cut off with a
        connection are replayed. CLOSE goes once everything is acknowledged, or when
        ``linger_s`` runs out (if a connection is up then).
        """
        self.closing = True
        linger = Linger(anyio.current_time(), linger_s)
        while True:
            now = anyio.current_time()
            step = linger.step(
                now, undelivered=self._undelivered(),
                connection_open=self.connected and self.session.is_open,
            )  # fmt: skip
            if step.done:
                break
            if step.ping:
                self.session.send_control(Ping(now))  # the PONG brings an ACK
                self._writer_signal.set()
            await anyio.sleep(min(Linger.POLL_S, max(0.0, linger.deadline - now)))
        self._closed = True
        if not self.connected and self._run_scope is not None:
            self._run_scope.cancel()  # no half-made connection after the goodbye
        if self.connected and self.session.is_open:
            self.session.close("the node is closing")
            self._writer_signal.set()
            with anyio.move_on_after(linger.goodbye_s):
                while self.connected and self.session.state is State.CLOSING:
                    await anyio.sleep(0.005)
        self.mux.fail_all(PeerLost(f"the link to {self.peer!r} is closed", peer=self.peer))
        self._wake_all()

    def statistics(self) -> tuple[LinkStatistics, dict[tuple[str, str], JobLinkStatistics]]:
        s, old = self.session, self._old
        link = LinkStatistics(
            peer=self.peer,
            state=s.state.value,
            connected=self.connected,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            frames_sent=old[0] + s.frames_sent,
            frames_received=old[1] + s.frames_received,
            data_frames_sent=old[2] + s.data_frames_sent,
            messages_sent=self.mux.messages_sent,
            messages_received=self.mux.messages_received,
            retransmitted_frames=old[3] + s.retransmitted,
            duplicate_frames=old[4] + s.duplicates,
            unacked_frames=s.unacked_frames,
            rtt_s=self.rtt_s,
            reconnects=self.reconnects,
            jobs=len(self.mux.jobs()),
        )
        jobs = {
            (self.peer, name): JobLinkStatistics(
                self.peer, name, c.bytes_sent, c.bytes_received, c.messages_sent,
                c.messages_received, c.frames_sent, c.frames_received,
                self.mux.job_backlog(name), self.mux.job_buffered(name),
            )
            for name, c in self.mux.jobs().items()
        }
        return link, jobs


class _PeerClosedSignal(Exception):
    """Internal: the peer sent CLOSE; ends the connection and fails the link with PeerLost."""
