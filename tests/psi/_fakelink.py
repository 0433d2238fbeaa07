"""A stand-in for mpcactors.link nodes with the same channel shape (send/receive/abort)."""

from __future__ import annotations

import math
from typing import Any

import anyio

from mpcactors._errors import JobAborted

_ABORT = object()


class FakeNetwork:
    def __init__(self) -> None:
        self.queues: dict[tuple[str, str, str, str], Any] = {}
        self.aborted: dict[str, tuple[str, str]] = {}
        self.sent_bytes = 0

    def queue(self, src: str, dst: str, job: str, name: str) -> Any:
        key = (src, dst, job, name)
        if key not in self.queues:
            self.queues[key] = anyio.create_memory_object_stream[Any](math.inf)
            if job in self.aborted:
                self.queues[key][0].send_nowait(_ABORT)
        return self.queues[key]

    def node(self, party: str, parties: list[str]) -> FakeNode:
        return FakeNode(self, party, [p for p in parties if p != party])


class FakeChannel:
    def __init__(self, net: FakeNetwork, me: str, peer: str, job: str, name: str) -> None:
        self.net, self.me, self.peer, self.job, self.name = net, me, peer, job, name

    async def send(self, obj: Any) -> None:
        await anyio.lowlevel.checkpoint()
        self.send_nowait(obj)

    def send_nowait(self, obj: Any) -> None:
        self.net.queue(self.me, self.peer, self.job, self.name)[0].send_nowait(obj)

    async def receive(self) -> Any:
        obj = await self.net.queue(self.peer, self.me, self.job, self.name)[1].receive()
        if obj is _ABORT:
            party, reason = self.net.aborted[self.job]
            raise JobAborted(self.job, party, reason)
        return obj


class FakeNode:
    def __init__(self, net: FakeNetwork, party: str, peers: list[str]) -> None:
        self.net, self.party, self.peers = net, party, tuple(peers)

    def channel(self, peer: str, job: str, name: str) -> FakeChannel:
        return FakeChannel(self.net, self.party, peer, job, name)

    def abort_job(self, job: str, reason: str) -> None:
        self.net.aborted.setdefault(job, (self.party, reason))
        for (src, dst, j, _), (send, _r) in list(self.net.queues.items()):
            if j == job and src == self.party:
                send.send_nowait(_ABORT)
        for peer in self.peers:
            for name in ("ctl", "s", "d"):
                self.net.queue(self.party, peer, job, name)

    def close_job(self, job: str) -> None:
        pass
