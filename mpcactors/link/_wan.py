"""WAN emulator: wrap any byte stream with one-way latency, bandwidth and jitter.

Theory of operation
-------------------
:class:`WanStream` delays what its owner *sends* (each side wraps its own outgoing direction,
so a link between two wrapped nodes has the profile's latency each way). ``send`` does not
wait for the latency; it stamps the bytes with their arrival time and queues them for a pump
task that writes them to the inner stream at that time. Bandwidth is a token bucket: tokens
refill at ``bandwidth_mbps`` up to a burst of :data:`BURST_S` seconds' worth; a send that
overdraws the bucket returns only when the debt is paid, so a sender feels the bandwidth like
a real socket buffer filling up, and the bytes arrive after their serialisation time plus the
latency. Jitter adds a uniform random delay in ``[-jitter, +jitter]`` (never below zero) and
arrival times never decrease, so order is preserved, as TCP does. Receiving is pass-through.

The pump lives in a task group owned by the stream: use it as ``async with WanStream(...)``.
"""

from __future__ import annotations

import random
from collections import deque
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import ByteStream, TaskGroup

from .._config import WanProfile

__all__ = ["BURST_S", "WanStream"]

BURST_S = 0.002  # token bucket depth, in seconds of bandwidth


class WanStream(ByteStream):
    """A byte stream whose outgoing bytes cross an emulated WAN.

    Args:
        inner: the real stream (TCP, TLS or in-memory).
        profile: one-way latency, bandwidth per direction (0: unlimited) and jitter.
        rng: jitter source (seed it for reproducible runs).
    """

    def __init__(self, inner: ByteStream, profile: WanProfile, *, rng: random.Random | None = None) -> None:
        self.inner = inner
        self.profile = profile
        self._rng = rng or random.Random()
        self._rate = profile.bandwidth_mbps * 1e6 / 8  # bytes per second; 0: unlimited
        self._burst = max(16384.0, self._rate * BURST_S)
        self._tokens = self._burst
        self._refilled = 0.0
        self._last_arrival = 0.0
        self._queue: deque[tuple[float, bytes]] = deque()
        self._wake = anyio.Event()
        self._error: BaseException | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._refilled = anyio.current_time()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._pump)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None  # set by __aenter__; narrows the type only
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(typ, exc, tb)

    def _delay(self) -> float:
        p = self.profile
        jitter = self._rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0.0
        return max(0.0, p.latency_ms + jitter) / 1000.0

    async def send(self, item: bytes) -> None:
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error
        data = item if type(item) is bytes else bytes(item)
        now = anyio.current_time()
        done = now
        if self._rate:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            self._tokens -= len(data)
            if self._tokens < 0:
                done = now - self._tokens / self._rate
        arrival = max(self._last_arrival, done + self._delay())
        self._last_arrival = arrival
        self._queue.append((arrival, data))
        self._wake.set()
        if done > now:
            await anyio.sleep(done - now)

    async def _pump(self) -> None:
        while True:
            if not self._queue:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            arrival, data = self._queue[0]
            wait = arrival - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            self._queue.popleft()
            try:
                await self.inner.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._error = exc
                self._queue.clear()
                return

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        await self.inner.aclose()

    @property
    def extra_attributes(self):  # type: ignore[no-untyped-def]
        return self.inner.extra_attributes
