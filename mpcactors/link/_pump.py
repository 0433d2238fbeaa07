"""The link's socket I/O on its own thread: a busy event loop does not make a party look dead.

Theory of operation
-------------------
Liveness is not responsiveness (DESIGN.md section 9). A party's event loop can be held for a
minute by user code (a program that builds a long graph in a Python loop); its peers must still
hear from it, while a party that is killed, frozen (SIGSTOP) or cut off must still be lost within
``peer_timeout_s``.

Once a TLS connection has completed its handshake, :class:`PumpStream` hands the socket to one
daemon thread (the *pump*) that does every ``send`` and ``recv`` on it with ``selectors``:

* the loop side queues **units** (the complete frames of one writer turn) with
  :meth:`PumpStream.send_frames`; the pump writes them in order, joining small buffers;
* the pump reads whatever arrives into a bounded inbox (``INBOX_BYTES``; past it, it stops
  reading and TCP pushes back on the peer), records the time, and wakes the loop, whose reader
  takes the bytes with :meth:`PumpStream.receive_into`;
* when nothing has been written for ``keepalive_s`` and no unit is half-written, the pump writes
  a keepalive PING of its own (``t = -1``: no timestamp, no RTT sample; the peer answers with a
  PONG like any other). The peer's reader counts it as hearing from us.

The pump needs the GIL only for microseconds per wake-up, and CPython hands the GIL over every
``sys.getswitchinterval()`` (5 ms), so a pure-Python busy loop on the event loop does not stop it.
A frozen process stops every thread, so its peers hear nothing and lose it, as before.

The loop side never blocks: it waits on an ``anyio.Event`` that the pump sets through the loop's
thread-safe call (trio's ``TrioToken.run_sync_soon``, asyncio's ``call_soon_threadsafe``). The
time of the last received byte is kept on the monotonic clock and converted to the loop's clock
when read (:meth:`PumpStream.last_received`).
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence

import anyio
import sniffio
from anyio.abc import ByteStream

from ._frames import Ping, frame_bytes
from ._tls import TlsSocketStream

__all__ = ["KEEPALIVE_T", "PumpStream"]

INBOX_BYTES = 16 << 20  # the pump stops reading past this (TCP flow control takes over)
OUTBOX_BYTES = 8 << 20  # send_frames waits while more than this is queued
_READ = 1 << 18
_JOIN = 1 << 16
KEEPALIVE_T = -1.0  # the t of a keepalive PING: no timestamp


def _coalesce(buffers: Sequence[bytes | memoryview]) -> list[memoryview]:
    """Join runs of small buffers (fewer, fuller TLS records); big ones pass as views."""
    out: list[memoryview] = []
    small: list[bytes | memoryview] = []
    size = 0
    for buf in buffers:
        if len(buf) >= _JOIN:
            if small:
                out.append(memoryview(b"".join(small)))
                small, size = [], 0
            out.append(memoryview(buf).cast("B"))
        else:
            small.append(buf)
            size += len(buf)
            if size >= _JOIN:
                out.append(memoryview(b"".join(small)))
                small, size = [], 0
    if small:
        out.append(memoryview(b"".join(small)))
    return out


def _thread_safe_caller() -> Callable[[Callable[[], object]], object]:
    """A function that runs a callback on the current event loop, from any thread."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    loop = asyncio.get_running_loop()
    return lambda callback: loop.call_soon_threadsafe(callback)


class PumpStream(ByteStream):
    """A TLS connection whose socket I/O runs on its own thread (see the module docstring).

    Made with :meth:`start` from a :class:`~._tls.TlsSocketStream` that finished its handshake;
    the TLS stream must not be used afterwards. One task may receive and one send at a time.
    """

    def __init__(self, sock: ssl.SSLSocket, keepalive_s: float, name: str) -> None:
        self._sock = sock
        self._keepalive_s = keepalive_s
        self._keepalive = frame_bytes(Ping(KEEPALIVE_T))
        self._lock = threading.Lock()
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inbox_bytes = 0
        self._inbox_offset = 0  # bytes of inbox[0] already taken
        self._outbox: collections.deque[list[memoryview]] = collections.deque()
        self._outbox_bytes = 0
        self._eof = False
        self._error: BaseException | None = None
        self._closed = False
        self._last_rx = time.monotonic()
        self.keepalives_sent = 0
        self._call_soon = _thread_safe_caller()
        self._readable = anyio.Event()
        self._space = anyio.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._pump, name=f"mpcactors-pump-{name}", daemon=True)

    @classmethod
    def start(cls, tls: TlsSocketStream, *, keepalive_s: float, name: str) -> PumpStream:
        """Take over ``tls``'s socket and start the pump thread."""
        stream = cls(tls.detach(), keepalive_s, name)
        stream._thread.start()
        return stream

    # ---- loop side ------------------------------------------------------------------------------

    def last_received(self) -> float:
        """When the pump last received bytes, on the event loop's clock."""
        return anyio.current_time() - (time.monotonic() - self._last_rx)

    def _raise_if_failed(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        err = self._error
        if err is not None:
            if isinstance(err, ssl.SSLError) and not isinstance(err, ssl.SSLEOFError):
                raise err  # a TLS alert: the link reports it as an authentication failure
            raise anyio.BrokenResourceError from err

    async def receive_into(self, buffer: memoryview) -> int:
        """Take at least one received byte into ``buffer`` (as many as are there, up to its size).

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            anyio.BrokenResourceError: the connection broke.
            ssl.SSLError: a TLS alert from the peer.
        """
        await anyio.lowlevel.checkpoint()  # like any stream: other tasks run between receives
        while True:
            with self._lock:
                if self._inbox:
                    return self._take(buffer)
                if self._eof:
                    raise anyio.EndOfStream
                self._raise_if_failed()
                self._readable = anyio.Event()
                readable = self._readable
            await readable.wait()

    def _take(self, buffer: memoryview) -> int:
        got, size = 0, len(buffer)
        was_full = self._inbox_bytes >= INBOX_BYTES
        while self._inbox and got < size:
            head = self._inbox[0]
            n = min(size - got, len(head) - self._inbox_offset)
            buffer[got : got + n] = head[self._inbox_offset : self._inbox_offset + n]
            got += n
            self._inbox_offset += n
            if self._inbox_offset == len(head):
                self._inbox.popleft()
                self._inbox_offset = 0
        self._inbox_bytes -= got
        if was_full and self._inbox_bytes < INBOX_BYTES:
            self._poke()  # the pump may read again
        return got

    async def receive(self, max_bytes: int = 65536) -> bytes:
        buf = bytearray(max_bytes)
        n = await self.receive_into(memoryview(buf))
        del buf[n:]
        return bytes(buf)

    async def send_frames(self, buffers: Sequence[bytes | memoryview]) -> None:
        """Queue complete frames as one unit (no keepalive goes between them).

        Waits while more than ``OUTBOX_BYTES`` are queued. The buffers must not change
        afterwards (the session keeps them for replay anyway).
        """
        unit = _coalesce(buffers)
        size = sum(len(b) for b in unit)
        while True:
            with self._lock:
                self._raise_if_failed()
                if not self._outbox or self._outbox_bytes + size <= OUTBOX_BYTES:
                    self._outbox.append(unit)
                    self._outbox_bytes += size
                    break
                self._space = anyio.Event()
                space = self._space
            await space.wait()
        self._poke()
        await anyio.lowlevel.checkpoint()

    async def send(self, item: bytes | memoryview) -> None:
        await self.send_frames([item])

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS streams do not support half-close")

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
        self._poke()
        await anyio.lowlevel.checkpoint()

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the wake-up pipe is full (the pump will look anyway) or already closed

    # ---- pump thread ----------------------------------------------------------------------------

    def _notify(self, event_attr: str) -> None:
        event: anyio.Event = getattr(self, event_attr)
        try:
            self._call_soon(event.set)
        except RuntimeError:
            pass  # the event loop is gone: nobody waits any more

    def _pump(self) -> None:
        sock = self._sock
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        fd_events = 0
        unit: list[memoryview] = []  # the unit being written
        last_tx = time.monotonic()
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    if not unit and self._outbox:
                        unit = list(self._outbox.popleft())
                        self._outbox_bytes -= sum(len(b) for b in unit)
                        space = True
                    else:
                        space = False
                    reading = self._inbox_bytes < INBOX_BYTES and not self._eof
                if space:
                    self._notify("_space")
                now = time.monotonic()
                if not unit and now - last_tx >= self._keepalive_s:
                    unit = [memoryview(self._keepalive)]
                    self.keepalives_sent += 1
                if unit:
                    unit, wrote = self._write(sock, unit)
                    if wrote:
                        last_tx = time.monotonic()
                self._read(sock, reading)
                if not unit and self._outbox:
                    continue  # the next queued unit (its wake-up byte may be drained already)
                want = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if unit else 0)
                if want != fd_events:
                    if fd_events:
                        sel.unregister(sock)
                    if want:
                        sel.register(sock, want)
                    fd_events = want
                timeout = None if unit else max(0.0, last_tx + self._keepalive_s - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
        except Exception as exc:  # noqa: BLE001 - the connection failed: the loop side raises it
            with self._lock:
                self._error = exc
        finally:
            sel.close()
            try:
                sock.close()
            finally:
                self._wake_r.close()
                self._wake_w.close()
                self._notify("_readable")
                self._notify("_space")

    def _write(self, sock: ssl.SSLSocket, unit: list[memoryview]) -> tuple[list[memoryview], bool]:
        """Write as much of ``unit`` as the socket takes; returns what is left and whether any went."""
        wrote = False
        while unit:
            head = unit[0]  # retried unchanged after WANT_WRITE, as OpenSSL requires
            try:
                n = sock.send(head)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return unit, wrote
            wrote = True
            if n == len(head):
                unit.pop(0)
            else:
                unit[0] = head[n:]
        return unit, wrote

    def _read(self, sock: ssl.SSLSocket, reading: bool) -> None:
        """Read until TLS wants more from the kernel (so ``select`` may wait), or the inbox fills.

        OpenSSL can hold whole records the kernel no longer reports as readable; stopping
        before ``SSLWantReadError`` could leave them unread until the next keepalive.
        """
        if not reading:
            return
        got: list[bytes] = []
        size, eof = 0, False
        room = INBOX_BYTES - self._inbox_bytes
        while size < room:
            try:
                data = sock.recv(_READ)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            if not data:
                eof = True
                break
            got.append(data)
            size += len(data)
        if not got and not eof:
            return
        self._last_rx = time.monotonic()
        with self._lock:
            self._inbox.extend(got)
            self._inbox_bytes += size
            self._eof = eof
        self._notify("_readable")

