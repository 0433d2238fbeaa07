"""The node: one party's links to all its peers, and the channels jobs talk through.

Theory of operation
-------------------
``async with open_node(config, party) as node:`` picks a transport (TCP+TLS from the config, or
a :class:`~._memory.MemoryNetwork`), optionally wraps every connection in the WAN emulator,
starts a listener if some peer sorts lower than this party (those peers dial us), and one
:class:`~._peer.PeerLink` per peer with its tasks, all in one task group owned by the node.
By default it returns once every link has completed its handshake and raises
:class:`~mpcactors.PeerUnavailable` (or :class:`~mpcactors.AuthenticationError`) otherwise.

The listener reads the dialer's HELLO to learn which link a connection belongs to (it must match
the party the TLS certificate names) and hands the connection over to that link.

On exit the node flushes what its links can still send (bounded by ``linger_s``), sends CLOSE
and cancels its tasks; an exception leaving the block skips the flush.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._config import ClusterConfig, WanProfile
from .._errors import AuthenticationError, ConfigError, ProtocolError
from .._log import get_logger
from ._codec import decode_payload, encode_payload
from ._frames import NEED_DATA, Close, FrameDecoder, Hello, frame_bytes
from ._hooks import FrameTracer
from ._memory import MemoryNetwork
from ._peer import RECV_BYTES, PeerLink
from ._stats import JobLinkStatistics, LinkStatistics, NodeStatistics
from ._transport import HANDSHAKE_TIMEOUT_S, Connection, TcpTlsTransport, Transport, is_disconnect

__all__ = ["Channel", "Node", "open_node"]

JobAbortHook = Callable[[str, str, str], None]


class Channel:
    """One named, ordered, reliable message channel of a job with one peer.

    Made by :meth:`Node.channel`. Both parties use the same (job, name); messages travel both
    ways and arrive exactly once, in order, per direction.
    """

    __slots__ = ("_link", "_max", "job", "name", "peer")

    def __init__(self, link: PeerLink, job: str, name: str) -> None:
        self.peer = link.peer
        self.job = job
        self.name = name
        self._link = link
        self._max = link.opts.max_message_bytes

    def __repr__(self) -> str:
        return f"<Channel {self._link.party}->{self.peer} job={self.job!r} name={self.name!r}>"

    async def send(self, obj: Any) -> None:
        """Encode ``obj`` and queue it; waits only while the job's outbox exceeds its window.

        Raises:
            TypeError: ``obj`` holds a value the payload codec does not carry.
            JobAborted: the job was aborted (by any party) or closed.
            PeerLost, PeerUnavailable, AuthenticationError, ProtocolError: the link failed.
        """
        await self._link.send(self.job, self.name, encode_payload(obj))

    def send_nowait(self, obj: Any) -> None:
        """Encode ``obj`` and queue it without waiting.

        Everything queued (on any channel of any job to this peer) before the writer next runs
        leaves in one DATA frame, within the frame budget.

        Raises:
            Same as :meth:`send`.
        """
        self._link.send_nowait(self.job, self.name, encode_payload(obj))

    def send_encoded_nowait(self, payload: bytes | memoryview) -> None:
        """Queue a payload that :func:`~._codec.encode_payload` made (e.g. in a worker thread,
        so a big message is not encoded on the event loop); otherwise as :meth:`send_nowait`."""
        self._link.send_nowait(self.job, self.name, payload)

    async def receive(self) -> Any:
        """The next message, in order.

        Raises:
            JobAborted: the job was aborted (names the aborting party and the cause) or closed.
            PeerLost: the peer is gone (buffered messages are delivered first).
            ProtocolError: the message is malformed.
        """
        data = await self._link.receive(self.job, self.name)
        return decode_payload(data, max_bytes=self._max)


class Node:
    """One party's links. Made by :func:`open_node`; use :meth:`channel` to talk.

    Attributes:
        party: this party's name.
        peers: the other parties of the cluster, in config order.
        config: the cluster config.
        on_job_abort: called as ``on_job_abort(job, party, reason)`` when a peer aborts a job
            (a scheduler uses it to fail the job's local work). Exceptions it raises propagate
            out of the node.
    """

    def __init__(
        self,
        config: ClusterConfig,
        party: str,
        transport: Transport,
        *,
        wan: WanProfile | None,
        rng: random.Random,
        on_job_abort: JobAbortHook | None,
    ) -> None:
        self.config = config
        self.party = party
        self.peers: tuple[str, ...] = tuple(p for p in config.party_names if p != party)
        self.on_job_abort = on_job_abort
        self._transport = transport
        self._log = get_logger(party=party)
        self._links = {
            peer: PeerLink(
                party=party, peer=peer, config=config, transport=transport, wan=wan,
                rng=random.Random(rng.random()), on_job_abort=self._job_aborted,
                on_ready=self._link_ready,
            )
            for peer in self.peers
        }
        self.rejected_connections = 0
        self._ready_changed = anyio.Event()

    def _link_ready(self) -> None:
        self._ready_changed.set()

    def _job_aborted(self, job: str, party: str, reason: str) -> None:
        if self.on_job_abort is not None:
            self.on_job_abort(job, party, reason)

    def _link(self, peer: str) -> PeerLink:
        link = self._links.get(peer)
        if link is None:
            raise ValueError(f"{peer!r} is not a peer of {self.party!r}; peers are {self.peers}")
        return link

    @property
    def listen_port(self) -> int | None:
        """The TCP port this node listens on (None for in-memory networks or pure dialers)."""
        return getattr(self._transport, "listen_port", None)

    def channel(self, peer: str, job: str, name: str) -> Channel:
        """A channel of ``job`` with ``peer``; opens the job locally for that peer.

        Raises:
            ValueError: ``peer`` is not a peer of this node.
        """
        link = self._link(peer)
        link.mux.open_job(job)
        return Channel(link, job, name)

    def abort_job(self, job: str, reason: str) -> None:
        """Abort ``job`` with every peer: their receives of it raise JobAborted(job, us, reason).

        Local sends and receives of the job raise JobAborted too. Aborts are re-sent after a
        reconnect, so they are not lost with a dropped connection.
        """
        for link in self._links.values():
            link.abort_job(job, reason)

    def abort_all(self, reason: str) -> None:
        """Abort every job opened here and not ended yet, with every peer (the node stops)."""
        for link in self._links.values():
            for job in link.mux.live_opened_jobs():
                link.abort_job(job, reason)

    def close_job(self, job: str) -> None:
        """Free the job's buffers on every link; queued outgoing messages are still sent."""
        for link in self._links.values():
            link.close_job(job)

    def set_tracer(self, tracer: FrameTracer | None) -> None:
        """Tell ``tracer`` about every DATA frame of every peer's link (None: stop)."""
        for link in self._links.values():
            link.tracer = tracer

    def drop_connection(self, peer: str) -> bool:
        """Cut the current connection to ``peer`` (a chaos/test hook).

        The session survives: the dialer reconnects and both sides resume from the last
        acknowledged frame. Returns False if there was no connection to cut.
        """
        return self._link(peer).drop_connection()

    def statistics(self) -> NodeStatistics:
        """A snapshot of every link's and job's counters (see :mod:`._stats`)."""
        peers: dict[str, LinkStatistics] = {}
        jobs: dict[tuple[str, str], JobLinkStatistics] = {}
        for peer, link in self._links.items():
            peers[peer], per_job = link.statistics()
            jobs.update(per_job)
        rejected = self.rejected_connections + getattr(self._transport, "rejected", 0)
        rejected += sum(link.rejected for link in self._links.values())
        return NodeStatistics(self.party, peers, jobs, rejected)

    async def wait_connected(self) -> None:
        """Wait until every link completed a handshake; raise the first link that failed."""
        while True:
            for link in self._links.values():
                if not link.ever_connected and link.failure is not None:
                    raise link.failure
            if all(link.ready.is_set() for link in self._links.values()):
                return
            await self._ready_changed.wait()
            self._ready_changed = anyio.Event()

    # ---- listener ----------------------------------------------------------------------------

    async def _on_incoming(self, conn: Connection) -> None:
        stream = conn.stream
        received: list[bytes] = []
        decoder = FrameDecoder(self.config.link.max_frame_bytes)
        try:
            with anyio.fail_after(HANDSHAKE_TIMEOUT_S):
                while (frame := decoder.next_frame()) is NEED_DATA:
                    data = await stream.receive(RECV_BYTES)
                    received.append(data)
                    decoder.receive_data(data)
            if not isinstance(frame, Hello):
                raise ProtocolError(f"expected HELLO, got {type(frame).__name__}")
            link = self._links.get(frame.party)
            if link is None or link.dialer:
                raise AuthenticationError(
                    f"party {frame.party!r} is not a peer that dials {self.party!r}"
                )
            if conn.party is not None and conn.party != frame.party:
                raise AuthenticationError(
                    f"the certificate names party {conn.party!r}, the HELLO names {frame.party!r}"
                )
        except (ProtocolError, AuthenticationError) as exc:
            self.rejected_connections += 1
            self._log.warning("rejected connection", address=conn.address, error=str(exc))
            with anyio.move_on_after(1.0):
                try:
                    await stream.send(frame_bytes(Close(str(exc))))
                except Exception as send_exc:
                    if not is_disconnect(send_exc):
                        raise
            await anyio.aclose_forcefully(stream)
            return
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            self._log.info("incoming connection dropped during handshake", error=repr(exc))
            await anyio.aclose_forcefully(stream)
            return
        link.offer(conn, b"".join(received))


@asynccontextmanager
async def open_node(
    config: ClusterConfig,
    party: str,
    *,
    network: MemoryNetwork | None = None,
    wan: WanProfile | None = None,
    wait_connected: bool = True,
    linger_s: float | None = None,
    on_job_abort: JobAbortHook | None = None,
    seed: int | None = None,
) -> AsyncIterator[Node]:
    """Run one party's node: links to every peer of the cluster.

    Args:
        config: the cluster.
        party: this party's name.
        network: None for TCP + TLS 1.3 from the config; a :class:`MemoryNetwork` shared by all
            nodes of this process for in-memory links.
        wan: emulate a WAN on every link (default: ``config.wan`` if enabled).
        wait_connected: return only once every peer completed the handshake.
        linger_s: on exit, how long to wait for queued messages to be delivered
            (default: ``min(5, peer_timeout_s)``).
        on_job_abort: hook called as ``(job, party, reason)`` when a peer aborts a job.
        seed: seeds backoff jitter and WAN jitter (reproducible tests).

    Raises:
        ConfigError: ``party`` is not in the config, or TLS files are missing.
        PeerUnavailable: a peer could not be reached after the configured attempts.
        AuthenticationError: a peer failed authentication.
    """
    if party not in config.party_names:
        raise ConfigError(
            f"party {party!r} is not in the cluster {list(config.party_names)}", key="parties"
        )
    transport: Transport = (
        network.transport(party) if network is not None else TcpTlsTransport(config, party)
    )
    if wan is None and config.wan.enabled:
        wan = config.wan
    if wan is not None and not wan.enabled:
        wan = None
    node = Node(
        config, party, transport, wan=wan, rng=random.Random(seed), on_job_abort=on_job_abort
    )
    linger = min(5.0, config.link.peer_timeout_s) if linger_s is None else linger_s
    try:
        async with anyio.create_task_group() as tg:
            if any(peer < party for peer in node.peers):
                await tg.start(transport.serve, node._on_incoming)
            for link in node._links.values():
                tg.start_soon(link.run)
                tg.start_soon(link.heartbeat)
            try:
                if wait_connected:
                    await node.wait_connected()
                yield node
            except BaseException:
                # briefly deliver what is queued (JOB_ABORTs telling peers why), then CLOSE
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await _close_links(node, min(linger, 0.5))
                raise
            else:
                await _close_links(node, linger)
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        exc = _unwrap(group)
        if exc is None:
            raise
        exc.__suppress_context__ = True
        raise exc


async def _close_links(node: Node, linger_s: float) -> None:
    async with anyio.create_task_group() as tg:
        for link in node._links.values():
            tg.start_soon(link.close, linger_s)


def _unwrap(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one meaningful exception of a task group's group (cancellation excluded), if any."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for e in exc.exceptions:
                walk(e)
        elif not isinstance(exc, cancelled):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None
