"""Sans-IO session between two parties: handshake, sequenced DATA, ACKs, replay, PING, CLOSE.

Theory of operation
-------------------
A :class:`Session` lives as long as both parties keep their state about each other, across any
number of TCP connections. It has no sockets and no clocks: the shell calls :meth:`connect` when
a new connection is up, feeds received bytes to :meth:`receive_data`, pulls events from
:meth:`next_event`, and writes whatever :meth:`data_to_send` returns.

* **Handshake.** On every connection both sides send HELLO (party, cluster id, protocol version,
  own session id, the peer session id it knows and the last DATA seq it received from that
  session). A HELLO naming the wrong party or cluster or version raises
  :class:`~mpcactors.AuthenticationError` (and queues a CLOSE telling the peer why).
* **Reliability.** Every DATA frame gets the next sequence number and stays in the replay buffer
  until the peer acknowledges it (ACK frames, or the ``ack`` field piggybacked on DATA). After a
  reconnect the peer's HELLO says what it has; everything after that is retransmitted, in order,
  before any new frame. A DATA frame at or below the received seq is a duplicate and dropped; a
  gap is a ProtocolError.
* **Incarnations.** If the peer's HELLO carries a session id different from the one we resumed
  with, the peer lost its state (it restarted, or declared us lost): nothing can be resumed, so the
  session starts over at seq 0 and the :class:`Established` event says ``restarted=True``; the
  shell fails every job it had with that peer.
* **Errors.** Any error on the receive path of an open session poisons it (state FAILED); it is
  re-raised on every later call. An error during the handshake only ends that connection (state
  DISCONNECTED): nothing was exchanged yet. An unexpected frame raises ProtocolError naming the
  frame and the state.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from typing import Final

from .._errors import AuthenticationError, LinkError, ProtocolError
from ._frames import (
    NEED_DATA,
    Ack,
    Chunk,
    Close,
    Credit,
    Data,
    Frame,
    FrameDecoder,
    Hello,
    JobAbort,
    Ping,
    Pong,
    _NeedData,
    encode_frame,
    frame_bytes,
)

__all__ = ["PROTOCOL_VERSION", "Established", "PeerClosed", "Session", "State"]

PROTOCOL_VERSION: Final = 1
ACK_EVERY_FRAMES: Final = 8
ACK_EVERY_BYTES: Final = 4 << 20


class State(enum.Enum):
    IDLE = "idle"  # created; no connection yet
    HANDSHAKING = "handshaking"  # connection up, our HELLO queued, waiting for the peer's
    OPEN = "open"  # established: DATA and control frames flow
    DISCONNECTED = "disconnected"  # connection dropped; unacked DATA kept for replay
    CLOSING = "closing"  # we sent CLOSE; DATA still accepted until the peer's CLOSE
    CLOSED = "closed"  # both sides said goodbye (terminal)
    FAILED = "failed"  # poisoned by an error (terminal)


class Trigger(enum.Enum):
    CONNECT = "connect"  # the shell attached a new connection
    HELLO = "hello"  # the peer's HELLO was accepted
    LOST = "lost"  # the connection dropped
    SEND_CLOSE = "send_close"  # we start an orderly close
    RECV_CLOSE = "recv_close"  # the peer said goodbye


_TRANSITIONS: Final[dict[tuple[State, Trigger], State]] = {
    (State.IDLE, Trigger.CONNECT): State.HANDSHAKING,
    (State.DISCONNECTED, Trigger.CONNECT): State.HANDSHAKING,
    (State.HANDSHAKING, Trigger.HELLO): State.OPEN,
    (State.HANDSHAKING, Trigger.LOST): State.DISCONNECTED,
    (State.HANDSHAKING, Trigger.SEND_CLOSE): State.CLOSED,
    (State.OPEN, Trigger.LOST): State.DISCONNECTED,
    (State.OPEN, Trigger.SEND_CLOSE): State.CLOSING,
    (State.OPEN, Trigger.RECV_CLOSE): State.CLOSED,
    (State.CLOSING, Trigger.RECV_CLOSE): State.CLOSED,
    (State.CLOSING, Trigger.LOST): State.CLOSED,
    (State.DISCONNECTED, Trigger.SEND_CLOSE): State.CLOSED,
    (State.DISCONNECTED, Trigger.LOST): State.DISCONNECTED,
    (State.IDLE, Trigger.SEND_CLOSE): State.CLOSED,
    (State.IDLE, Trigger.LOST): State.IDLE,
    (State.CLOSED, Trigger.LOST): State.CLOSED,
    (State.CLOSED, Trigger.SEND_CLOSE): State.CLOSED,
    (State.FAILED, Trigger.LOST): State.FAILED,
    (State.FAILED, Trigger.SEND_CLOSE): State.FAILED,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Established:
    """The handshake on a connection completed."""

    peer_job_window: int  # the byte window the peer grants each of our jobs initially
    resumed: bool  # True if this continues an earlier connection of the same session
    restarted: bool  # True if the peer lost its state: every job with it must fail
    replayed: int  # DATA frames queued again for retransmission


@dataclasses.dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer said goodbye (orderly CLOSE)."""

    reason: str


Event = Established | PeerClosed | Data | Credit | JobAbort | Pong


class Session:
    """Per-peer session state machine (sans-IO).

    Args:
        party: our party name.
        peer: the peer's party name (a HELLO naming anyone else is rejected).
        cluster: the cluster id both must share.
        session_id: a fresh random id for this incarnation of our state about the peer.
        job_window: the byte window we grant each job of the peer initially (told in HELLO).
        max_frame_bytes: largest frame accepted on read.
        version: protocol version (tests may override it to test rejection).
    """

    def __init__(
        self,
        *,
        party: str,
        peer: str,
        cluster: str,
        session_id: str,
        job_window: int,
        max_frame_bytes: int,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        self.party = party
        self.peer = peer
        self.cluster = cluster
        self.session_id = session_id
        self.job_window = job_window
        self.max_frame_bytes = max_frame_bytes
        self.version = version
        self.state = State.IDLE
        self.peer_session_id = ""  # learned from the first accepted HELLO
        self.error: LinkError | None = None
        self._decoder = FrameDecoder(max_frame_bytes, reuse_buffers=True)
        self._out: list[bytes | memoryview] = []
        self._replay: deque[tuple[int, list[bytes | memoryview]]] = deque()  # unacked frames
        self.sent_seq = 0  # last DATA seq assigned
        self.acked_seq = 0  # last seq the peer acknowledged
        self.recv_seq = 0  # last DATA seq received in order
        self._ack_sent = 0  # last recv_seq told to the peer
        self._bytes_since_ack = 0  # DATA chunk bytes received since then
        self._ack_asked = False  # a PING arrived: answer with an ACK now
        # Counters for statistics.
        self.frames_sent = 0
        self.frames_received = 0
        self.data_frames_sent = 0
        self.retransmitted = 0
        self.duplicates = 0

    # ---- state -------------------------------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, trigger)]
        except KeyError:
            raise ProtocolError(
                f"session with {self.peer!r}: {trigger.value} in state {self.state.value}",
                peer=self.peer,
            ) from None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _poison(self, exc: LinkError) -> LinkError:
        self.error = exc
        self.state = State.FAILED
        return exc

    @property
    def is_open(self) -> bool:
        """True when DATA and control frames may be sent."""
        return self.state is State.OPEN

    @property
    def unacked_frames(self) -> int:
        return len(self._replay)

    @property
    def unacked_bytes(self) -> int:
        return sum(len(b) for _, bufs in self._replay for b in bufs)

    # ---- connection lifecycle ----------------------------------------------------------------

    def connect(self) -> None:
        """A new connection is up: reset the decoder and queue our HELLO."""
        self._check()
        self._fire(Trigger.CONNECT)
        self._decoder = FrameDecoder(self.max_frame_bytes, reuse_buffers=True)
        self._out.clear()
        hello = Hello(
            self.party,
            self.cluster,
            self.version,
            self.session_id,
            self.peer_session_id,
            self.recv_seq,
            self.job_window,
        )
        self._queue(hello)

    def fail(self, exc: LinkError) -> None:
        """The shell found a violation above the session (a window or a per-peer limit):
        poison the session and queue CLOSE telling the peer why."""
        if exc.peer is None:
            exc.peer = self.peer
        if self.state in (State.OPEN, State.CLOSING):
            self._queue(Close(str(exc)[:4096]))
        self._poison(exc)

    def connection_lost(self) -> None:
        """The connection dropped. Unacked DATA stays for replay; unsent output is discarded."""
        self._fire(Trigger.LOST)
        self._out.clear()

    def close(self, reason: str) -> None:
        """Start an orderly close: queue CLOSE if the session is open."""
        if self.state in (State.OPEN, State.HANDSHAKING):
            self._queue(Close(reason))
        if self.state is not State.CLOSING:
            self._fire(Trigger.SEND_CLOSE)

    # ---- sending -----------------------------------------------------------------------------

    def _queue(self, frame: Frame) -> None:
        self._out.append(frame_bytes(frame))
        self.frames_sent += 1

    def data_to_send(self) -> list[bytes | memoryview]:
        """Return and forget the bytes to write, in order."""
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def send_data(self, chunks: tuple[Chunk, ...]) -> int:
        """Queue a DATA frame carrying ``chunks``; it is kept until acknowledged.

        Returns:
            The frame's sequence number.
        """
        self._check()
        if self.state is not State.OPEN:
            raise ProtocolError(f"DATA in state {self.state.value}", peer=self.peer)
        self.sent_seq += 1
        bufs = encode_frame(Data(self.sent_seq, self.recv_seq, chunks))
        self._replay.append((self.sent_seq, bufs))
        self._out.extend(bufs)
        self._acked_now()
        self.frames_sent += 1
        self.data_frames_sent += 1
        return self.sent_seq

    def _acked_now(self) -> None:
        self._ack_sent = self.recv_seq
        self._bytes_since_ack = 0
        self._ack_asked = False

    @property
    def ack_due(self) -> bool:
        """True if DATA arrived that the peer has not been told about."""
        return self.recv_seq > self._ack_sent

    @property
    def ack_urgent(self) -> bool:
        """True if an ACK should go out now rather than ride on the next DATA frame or timer:
        many frames or bytes unacknowledged (the peer's replay buffer grows), or a PING asked."""
        return self.ack_due and (
            self._ack_asked
            or self.recv_seq - self._ack_sent >= ACK_EVERY_FRAMES
            or self._bytes_since_ack >= ACK_EVERY_BYTES
        )

    def send_ack(self, *, force: bool = True) -> None:
        """Queue a cumulative ACK if one is due (and urgent, unless ``force``).

        Delayed ACKs (like TCP's) spare a frame per round trip: an ACK usually rides on the
        next DATA frame; the shell forces one on its heartbeat.
        """
        if (self.ack_urgent or (force and self.ack_due)) and self.state in (
            State.OPEN, State.CLOSING,
        ):  # fmt: skip
            self._queue(Ack(self.recv_seq))
            self._acked_now()

    def send_control(self, frame: Credit | JobAbort | Ping) -> None:
        """Queue a control frame (only while open; the shell re-sends state after a resume)."""
        self._check()
        if self.state is not State.OPEN:
            raise ProtocolError(f"{type(frame).__name__} in state {self.state.value}")
        self._queue(frame)

    # ---- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes received on the current connection."""
        self._check()
        self._decoder.receive_data(data)

    def get_buffer(self) -> memoryview:
        """Where a transport with ``recv_into`` should receive (see FrameDecoder.get_buffer)."""
        self._check()
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were received into the last :meth:`get_buffer`."""
        self._decoder.buffer_updated(nbytes)

    def next_event(self) -> Event | _NeedData:
        """Process buffered bytes up to the next event for the shell.

        Returns:
            An event (:class:`Established`, :class:`PeerClosed`, a DATA frame, CREDIT,
            JOB_ABORT or PONG) or ``NEED_DATA``. ACK and PING are handled inside.

        Raises:
            AuthenticationError: the peer's HELLO names the wrong party, cluster or version, or
                the peer refused our HELLO.
            ProtocolError: malformed or unexpected frames. Both poison the session.
        """
        self._check()
        try:
            while True:
                frame = self._decoder.next_frame()
                if frame is NEED_DATA:
                    return NEED_DATA
                self.frames_received += 1
                event = self._handle(frame)  # type: ignore[arg-type]
                if event is not None:
                    return event
        except LinkError as exc:
            if exc.peer is None:
                exc.peer = self.peer
            if self.state is State.HANDSHAKING:
                # A refused handshake ends the connection, not the session: nothing was
                # exchanged yet, and the rightful peer may still connect.
                self._fire(Trigger.LOST)
                raise
            raise self._poison(exc) from None

    def _handle(self, frame: Frame) -> Event | None:
        state = self.state
        if isinstance(frame, Hello):
            if state is not State.HANDSHAKING:
                raise ProtocolError(f"HELLO from {self.peer!r} in state {state.value}")
            return self._on_hello(frame)
        if state is State.HANDSHAKING:
            if isinstance(frame, Close):
                raise AuthenticationError(f"peer {self.peer!r} refused the handshake: {frame.reason}")
            raise ProtocolError(f"{type(frame).__name__} before HELLO from {self.peer!r}")
        if state not in (State.OPEN, State.CLOSING):
            raise ProtocolError(f"{type(frame).__name__} from {self.peer!r} in state {state.value}")
        if isinstance(frame, Data):
            self._on_ack(frame.ack)
            if frame.seq <= self.recv_seq:
                self.duplicates += 1
                return None
            if frame.seq != self.recv_seq + 1:
                raise ProtocolError(f"DATA seq {frame.seq} after {self.recv_seq}: frames lost")
            self.recv_seq = frame.seq
            for c in frame.chunks:
                self._bytes_since_ack += len(c.data)
            return frame
        if isinstance(frame, Ack):
            self._on_ack(frame.seq)
            return None
        if isinstance(frame, Ping):
            if state is State.OPEN:
                self._queue(Pong(frame.t))
                self._ack_asked = True
            return None
        if isinstance(frame, Close):
            if state is State.OPEN:
                self._queue(Close("goodbye"))
            self._fire(Trigger.RECV_CLOSE)
            return PeerClosed(frame.reason)
        if isinstance(frame, (Credit, JobAbort, Pong)):
            return frame
        raise ProtocolError(f"unexpected {type(frame).__name__} from {self.peer!r}")

    def _on_ack(self, seq: int) -> None:
        if seq > self.sent_seq:
            raise ProtocolError(f"ACK of seq {seq}, only {self.sent_seq} sent")
        if seq > self.acked_seq:
            self.acked_seq = seq
            replay = self._replay
            while replay and replay[0][0] <= seq:
                replay.popleft()

    def _reject(self, message: str) -> AuthenticationError:
        self._queue(Close(message))
        return AuthenticationError(message)

    def _on_hello(self, hello: Hello) -> Established:
        if hello.party != self.peer:
            raise self._reject(f"expected party {self.peer!r}, the HELLO names {hello.party!r}")
        if hello.cluster != self.cluster:
            raise self._reject(
                f"party {hello.party!r} belongs to cluster {hello.cluster!r}, not {self.cluster!r}"
            )
        if hello.version != self.version:
            raise self._reject(
                f"party {hello.party!r} speaks protocol version {hello.version}, not {self.version}"
            )
        if hello.job_window <= 0:
            raise ProtocolError(f"HELLO with job window {hello.job_window}")
        restarted = bool(self.peer_session_id) and hello.session_id != self.peer_session_id
        resumed = bool(self.peer_session_id) and not restarted
        if restarted:
            # The peer lost its state: nothing of ours can be replayed, nothing of its is owed.
            self._replay.clear()
            self.sent_seq = self.acked_seq = self.recv_seq = 0
            self._acked_now()
        self.peer_session_id = hello.session_id
        peer_has = hello.recv_seq if hello.peer_session_id == self.session_id else 0
        if peer_has < self.acked_seq or peer_has > self.sent_seq:
            raise ProtocolError(
                f"peer {self.peer!r} claims to have DATA up to seq {peer_has}; "
                f"acked {self.acked_seq}, sent {self.sent_seq}"
            )
        self._on_ack(peer_has)
        for _, bufs in self._replay:
            self._out.extend(bufs)
        self.retransmitted += len(self._replay)
        self._fire(Trigger.HELLO)
        return Established(hello.job_window, resumed, restarted, len(self._replay))
