"""Orderly stops for the command line: SIGTERM and SIGINT abort the party's jobs and tell its peers.

The first signal calls ``stop(reason)`` (a node's :meth:`~mpcactors.Node.stop`: every job fails
with ``JobAborted(..., "stopped by signal SIGTERM")``, JOB_ABORT goes to every peer, and the node
then closes its links with CLOSE) or, before the node exists, cancels what is running. A second
signal cancels everything at once. The command exits with ``128 + signal number``.

Library code never installs signal handlers: embedders call ``node.stop`` or cancel the node.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

__all__ = ["StopSignal", "stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Which signal stopped the command (None: none), and what to call when one arrives."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self.signal: signal.Signals | None = None
        self.stop: Callable[[str], None] | None = None  # set once a node exists
        self._scope = scope

    @property
    def reason(self) -> str:
        return f"stopped by signal {self.signal.name}" if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal) if self.signal is not None else 0

    def _on_signal(self, signum: int) -> None:
        if self.signal is not None or self.stop is None:
            self.signal = self.signal or signal.Signals(signum)
            self._scope.cancel()  # a second signal, or nothing to stop in order yet
            return
        self.signal = signal.Signals(signum)
        self.stop(self.reason)


@asynccontextmanager
async def stop_on_signals() -> AsyncIterator[StopSignal]:
    """Watch SIGTERM and SIGINT while the block runs (trio only; the CLI's loop).

    Set ``.stop`` to the node's ``stop`` once it exists. If a signal cancelled the block
    (no node yet, or a second signal), the block ends quietly; check ``.signal`` after it.
    """
    with trio.CancelScope() as scope, trio.open_signal_receiver(*SIGNALS) as signals:
        state = StopSignal(scope)
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    state._on_signal(signum)

            nursery.start_soon(watch)
            try:
                yield state
            finally:
                nursery.cancel_scope.cancel()
