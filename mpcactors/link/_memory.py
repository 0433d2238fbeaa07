"""In-memory transport: every party of a simulation in one process, no sockets, no TLS.

Theory of operation
-------------------
A :class:`MemoryNetwork` is a registry of listening parties. ``open_node(config, party,
network=net)`` registers the party while the node runs; dialing a party that is not (yet)
registered fails with ``ConnectionRefusedError``, exactly like TCP, so retry and backoff behave
the same (and can be tested under trio's autojump clock). A connection is a pair of
:class:`MemoryByteStream` ends over two bounded memory object streams; bytes objects travel
without copying. The network authenticates by construction: the accepting side learns the
dialer's party from the network itself.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
from anyio.abc import ByteStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._transport import Connection, Handler

__all__ = ["MemoryByteStream", "MemoryNetwork", "memory_stream_pair"]


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte pipe (an ``anyio.abc.ByteStream``)."""

    def __init__(self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._send = send
        self._receive = receive
        self._leftover: bytes | memoryview = b""  # the unread tail of the last item
        self._dead = False

    def _kill(self) -> None:
        self._dead = True
        self._send.close()
        self._receive.close()

    async def send(self, item: bytes) -> None:
        await self._send.send(item if type(item) is bytes else bytes(item))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = bytes(self._leftover) if self._leftover else await self._receive.receive()
        if len(data) > max_bytes:
            self._leftover = memoryview(data)[max_bytes:]
            return data[:max_bytes]
        self._leftover = b""
        return data

    async def receive_into(self, buffer: memoryview) -> int:
        """Copy the next bytes into ``buffer`` (as many as the pending item has, up to its
        size): the link's reader passes the body of a big frame, so each byte is copied once
        on the way in instead of sliced into reads and joined again."""
        data = self._leftover if self._leftover else memoryview(await self._receive.receive())
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        self._leftover = data[n:] if n < len(data) else b""
        return n

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        self._dead = True
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair(buffer_items: int = 64) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte stream ends (bounded by ``buffer_items`` writes each way)."""
    a_send, b_recv = anyio.create_memory_object_stream[bytes](buffer_items)
    b_send, a_recv = anyio.create_memory_object_stream[bytes](buffer_items)
    return MemoryByteStream(a_send, a_recv), MemoryByteStream(b_send, b_recv)


class MemoryNetwork:
    """All parties of one process. Pass the same object to every ``open_node(network=...)``.

    Args:
        buffer_items: writes buffered per direction before a sender waits.
    """

    def __init__(self, *, buffer_items: int = 64) -> None:
        self.buffer_items = buffer_items
        self._listeners: dict[str, tuple[Handler, TaskGroup]] = {}
        self._down: set[str] = set()
        self._streams: list[tuple[frozenset[str], MemoryByteStream, MemoryByteStream]] = []

    def partition(self, party: str) -> None:
        """Cut ``party`` off (a chaos hook): its connections die, new ones are refused.

        Like a crashed host or a pulled cable: nobody sends CLOSE.
        """
        self._down.add(party)
        keep = []
        for pair, a, b in self._streams:
            if party in pair:
                a._kill()
                b._kill()
            else:
                keep.append((pair, a, b))
        self._streams = keep

    def heal(self, party: str) -> None:
        """Let ``party`` connect again after :meth:`partition`."""
        self._down.discard(party)

    def transport(self, party: str) -> MemoryTransport:
        """The transport of one party on this network."""
        return MemoryTransport(self, party)

    @property
    def listening(self) -> tuple[str, ...]:
        return tuple(sorted(self._listeners))


class MemoryTransport:
    """One party's view of a :class:`MemoryNetwork` (implements the node's Transport)."""

    def __init__(self, network: MemoryNetwork, party: str) -> None:
        self.network = network
        self.party = party

    def address(self, peer: str) -> str:
        return f"memory:{peer}"

    async def connect(self, peer: str) -> Connection:
        await anyio.lowlevel.checkpoint()
        net = self.network
        entry = net._listeners.get(peer)
        if entry is None or peer in net._down or self.party in net._down:
            raise ConnectionRefusedError(f"party {peer!r} is not listening on the memory network")
        handler, tg = entry
        mine, theirs = memory_stream_pair(net.buffer_items)
        net._streams = [t for t in net._streams if not t[1]._dead] + [
            (frozenset((self.party, peer)), mine, theirs)
        ]
        tg.start_soon(cast(Any, handler), Connection(theirs, self.party, f"memory:{self.party}"))
        return Connection(mine, peer, self.address(peer))

    async def serve(self, handler: Handler, *, task_status: TaskStatus[Any]) -> None:
        if self.party in self.network._listeners:
            raise RuntimeError(f"party {self.party!r} already listens on this memory network")
        async with anyio.create_task_group() as tg:
            self.network._listeners[self.party] = (handler, tg)
            try:
                task_status.started(None)
                await anyio.sleep_forever()
            finally:
                del self.network._listeners[self.party]
