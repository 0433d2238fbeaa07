"""Small pieces the link's async shells share: a re-armable wake-up, and the tracer hook type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import anyio

__all__ = ["FrameTracer", "Signal"]


class FrameTracer(Protocol):
    """What a link tells a job tracer (``mpcactors._trace.Tracer``) about DATA frames."""

    def frame_sent(self, peer: str, seq: int, chunks: Sequence[Any]) -> None: ...
    def frames_written(self, peer: str) -> None: ...
    def frame_received(self, peer: str, seq: int, chunks: Sequence[Any]) -> None: ...


class Signal:
    """A re-armable wake-up for one waiting task (set before wait is not lost)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()
