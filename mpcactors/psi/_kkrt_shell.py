"""The async shell of KKRT PSI: drives the sans-IO steps of :mod:`._kkrt` over one job channel.

Theory of operation
-------------------
A step yields ``Exchange(send, recv)``; :func:`drive` sends the payload on the job's channel,
receives the expected message, and resumes the step in a worker thread (the numpy work of a
chunk is ~0.1 s, so it never runs on the event loop). Send and receive of a round run
concurrently, so two parties that both send in a round never wait on each other's flow-control
window. One channel per job (``"kkrt"``): the link keeps per-channel order, and a round carries
at most one message each way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from .._errors import PsiError
from ..link._abc import JobChannel, JobLink
from ..ops._comm import Exchange, Step
from ._kkrt import KkrtReceiverResult, KkrtSenderResult, psi_receive, psi_send

__all__ = ["CHANNEL", "Advance", "drive", "drive_rounds", "kkrt_psi", "local_advance"]

CHANNEL = "kkrt"


# Advances a step by one round: given the previous round's reply (None first), returns
# (False, the next Exchange) or (True, the step's result). Blocking; runs in a worker thread.
Advance = Callable[[Any], tuple[bool, Any]]


def local_advance(step: Step[Any]) -> Advance:
    """An :data:`Advance` over a step generator of this process."""
    started = [False]

    def advance(reply: Any) -> tuple[bool, Any]:
        try:
            if not started[0]:
                started[0] = True
                return False, next(step)
            return False, step.send(reply)
        except StopIteration as stop:
            return True, stop.value

    return advance


async def drive(step: Step[Any], channel: JobChannel, peer: str,
                on_round: Callable[[], None] | None = None) -> Any:
    """Run ``step`` to completion against ``peer`` over ``channel``; returns its result."""
    return await drive_rounds(local_advance(step), channel, peer, on_round)


async def drive_rounds(advance: Advance, channel: JobChannel, peer: str,
                       on_round: Callable[[], None] | None = None, *,
                       abandon_on_cancel: bool = False) -> Any:
    """Relay the rounds of ``advance`` (a local step or a worker's) over ``channel``."""
    reply: dict[str, Any] | None = None
    while True:
        done, value = await anyio.to_thread.run_sync(advance, reply,
                                                     abandon_on_cancel=abandon_on_cancel)
        if done:
            return value
        ex: Exchange = value
        if set(ex.send) - {peer} or set(ex.recv) - {peer}:
            raise PsiError(f"a KKRT step addressed parties other than {peer!r}")
        got: dict[str, Any] = {}

        async def receive(into: dict[str, Any] = got) -> None:
            into[peer] = await channel.receive()

        async with anyio.create_task_group() as tg:
            if ex.recv:
                tg.start_soon(receive)
            for payload in ex.send.values():
                await channel.send(payload)
        reply = got
        if on_round is not None:
            on_round()


async def kkrt_psi(node: JobLink, *, peer: str, job: str, items: np.ndarray, receiver: bool,
                   on_round: Callable[[], None] | None = None) -> KkrtReceiverResult | KkrtSenderResult:
    """One KKRT PSI exchange of ``items`` (``(n, 16)`` uint8) with ``peer`` in ``job``."""
    channel = node.channel(peer, job, CHANNEL)
    step = psi_receive(peer, items) if receiver else psi_send(peer, items)
    return await drive(step, channel, peer, on_round)  # type: ignore[no-any-return]
