"""What the layers above need of a node's links, as structural types (trio's ``abc.py`` style).

The scheduler, the runtime, tracing, secure aggregation and PSI are written against these protocols,
not against :class:`~mpcactors.link.Node`, so the arrows between the layers stay visible and a
test or another transport can stand in for the link.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._hooks import FrameTracer
from ._stats import NodeStatistics

__all__ = ["Channels", "JobChannel", "JobLink"]


class JobChannel(Protocol):
    """One named, ordered, reliable message channel of a job with one peer (:class:`~._node.Channel`)."""

    @property
    def peer(self) -> str:
        """The party at the other end."""
        ...

    @property
    def job(self) -> str:
        """The job the channel belongs to."""
        ...

    @property
    def name(self) -> str:
        """The channel's name within the job."""
        ...

    async def send(self, obj: Any) -> None:
        """Encode and queue ``obj``; waits only while the job's outbox exceeds its window."""
        ...

    def send_nowait(self, obj: Any) -> None:
        """Encode and queue ``obj`` without waiting."""
        ...

    def send_encoded_nowait(self, payload: bytes | memoryview) -> None:
        """Queue a payload already encoded by :func:`~._codec.encode_payload`."""
        ...

    async def receive(self) -> Any:
        """The next message, in order."""
        ...


class Channels(Protocol):
    """A party's channels to its peers: what a job that speaks for itself (secure aggregation)
    needs. :class:`~._node.Node` and the runtime's node both have them."""

    @property
    def party(self) -> str:
        """This party's name."""
        ...

    @property
    def peers(self) -> tuple[str, ...]:
        """The other parties of the cluster."""
        ...

    def channel(self, peer: str, job: str, name: str) -> JobChannel:
        """A channel of ``job`` with ``peer``; opens the job locally for that peer."""
        ...


class JobLink(Channels, Protocol):
    """A party's links to all its peers, addressed by job (:class:`~._node.Node`)."""

    def abort_job(self, job: str, reason: str) -> None:
        """Abort ``job`` with every peer."""
        ...

    def abort_all(self, reason: str) -> None:
        """Abort every live job with every peer."""
        ...

    def close_job(self, job: str) -> None:
        """Free the job's buffers on every link."""
        ...

    def set_tracer(self, tracer: FrameTracer | None) -> None:
        """Tell ``tracer`` about every DATA frame (None: stop)."""
        ...

    def statistics(self) -> NodeStatistics:
        """A snapshot of every link's and job's counters."""
        ...
