"""Statistics of the link layer: frozen values returned by ``node.statistics()``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["JobLinkStatistics", "LinkStatistics", "NodeStatistics"]


@dataclasses.dataclass(frozen=True, slots=True)
class LinkStatistics:
    """One peer's link, over the node's lifetime (all connections and sessions)."""

    peer: str
    state: str  # session state: idle, handshaking, open, disconnected, closing, closed, failed
    connected: bool
    bytes_sent: int  # wire bytes (frames, before TLS)
    bytes_received: int
    frames_sent: int  # every frame kind
    frames_received: int
    data_frames_sent: int
    messages_sent: int  # messages whose last chunk was sent
    messages_received: int  # complete messages received
    retransmitted_frames: int  # DATA frames replayed after reconnects
    duplicate_frames: int  # DATA frames received twice and dropped
    unacked_frames: int  # DATA frames kept for replay right now
    rtt_s: float | None  # smoothed PING/PONG round-trip time (None before the first PONG)
    reconnects: int  # connections established after the first one
    jobs: int  # jobs with state on this link (open or recently closed)


@dataclasses.dataclass(frozen=True, slots=True)
class JobLinkStatistics:
    """One job's traffic with one peer."""

    peer: str
    job: str
    bytes_sent: int  # payload bytes (encoded messages) packed into frames
    bytes_received: int
    messages_sent: int
    messages_received: int
    frames_sent: int  # DATA frames that carried at least one chunk of the job
    frames_received: int
    queued_bytes: int  # waiting in the outbox (for the writer or for credit)
    buffered_bytes: int  # received, not yet read by the application


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of every link of a node: ``peers[peer]`` and ``jobs[(peer, job)]``."""

    party: str
    peers: Mapping[str, LinkStatistics]
    jobs: Mapping[tuple[str, str], JobLinkStatistics]
    rejected_connections: int = 0  # refused at TLS, at routing or at the HELLO check
