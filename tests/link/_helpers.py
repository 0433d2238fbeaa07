"""Helpers for the link tests: TLS clusters on 127.0.0.1 and a sans-IO LinkPair."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from mpcactors._certs import generate_certs
from mpcactors._config import ClusterConfig, LinkOptions, PartyConfig, TlsConfig
from mpcactors._errors import ProtocolError
from mpcactors.link._frames import NEED_DATA
from mpcactors.link._mux import Mux
from mpcactors.link._session import Established, Session

FAST: dict[str, Any] = {
    "connect_retry_times": 5,
    "connect_retry_interval_ms": 50,
    "connect_timeout_s": 10.0,
    "peer_timeout_s": 5.0,
    "heartbeat_interval_s": 0.5,
}


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def link_options(**overrides: Any) -> LinkOptions:
    return LinkOptions(**{**FAST, **overrides})


def tls_cluster(
    tmp: Path, parties: tuple[str, ...] = ("alice", "bob"), *, cluster: str = "test",
    certs: bool = True, **link: Any,
) -> ClusterConfig:
    """A cluster on free loopback ports with fresh certificates under ``tmp``."""
    ports = free_ports(len(parties))
    cfg = ClusterConfig(
        cluster_id=cluster,
        parties=tuple(
            PartyConfig(p, "127.0.0.1", port, tmp / f"{p}.pem", tmp / f"{p}.key")
            for p, port in zip(parties, ports)
        ),
        tls=TlsConfig(tmp / "ca.pem", tmp / "ca.key"),
        link=link_options(**link),
    )
    if certs:
        generate_certs(cfg)
    return cfg


def memory_cluster(parties: tuple[str, ...] = ("alice", "bob"), **link: Any) -> ClusterConfig:
    return ClusterConfig.local(list(parties), link=link_options(**link))


class Side:
    """One party of a sans-IO link: a Session and a Mux."""

    def __init__(self, party: str, peer: str, *, window: int = 1 << 16, chunk: int = 1 << 12,
                 budget: int = 1 << 14, cluster: str = "c", session_id: str | None = None,
                 version: int = 1, max_channels: int = 64, max_jobs: int = 1024,
                 max_unopened: int = 1 << 24) -> None:
        self.party, self.peer = party, peer
        self.session = Session(
            party=party, peer=peer, cluster=cluster, session_id=session_id or f"{party}-1",
            job_window=window, max_frame_bytes=1 << 20, version=version,
        )
        self.mux = Mux(party=party, peer=peer, job_window=window, chunk_bytes=chunk,
                       frame_budget=budget, max_message_bytes=1 << 24,
                       max_channels_per_job=max_channels, max_jobs_per_peer=max_jobs,
                       max_unopened_bytes=max_unopened)
        self.events: list[Any] = []
        self.wire_frames = 0
        self.now = 0.0  # the clock the sans-IO cores are given

    def flush(self) -> bytes:
        """What the writer would send now (control frames, one DATA frame, an ACK)."""
        s = self.session
        if s.is_open:
            for f in self.mux.control_due(self.now):
                s.send_control(f)
            chunks = self.mux.pack()
            if chunks:
                s.send_data(chunks)
        s.send_ack()
        return b"".join(s.data_to_send())

    def feed(self, data: bytes, now: float = 0.0) -> None:
        self.session.receive_data(data)
        while (ev := self.session.next_event()) is not NEED_DATA:
            self.events.append(ev)
            if isinstance(ev, Established):
                self.mux.on_established(ev.peer_job_window)
            elif type(ev).__name__ == "Data":
                try:
                    self.mux.on_data(ev, now)
                except ProtocolError as exc:  # what PeerLink does: the link fails
                    self.session.fail(exc)
                    raise
            elif type(ev).__name__ == "Credit":
                self.mux.on_credit(ev)
            elif type(ev).__name__ == "JobAbort":
                self.mux.on_job_abort(ev)
            elif type(ev).__name__ == "Pong":
                self.mux.on_pong(ev.t)


class LinkPair:
    """Two sans-IO sides with bytes piped between them (h11's tests/helpers.py, for links)."""

    def __init__(self, **kw: Any) -> None:
        self.a = Side("alice", "bob", **kw)
        self.b = Side("bob", "alice", **kw)

    def connect(self) -> None:
        self.a.session.connect()
        self.b.session.connect()
        self.pump()

    def pump(self, rounds: int = 50, *, drop_a_to_b: bool = False) -> int:
        """Exchange bytes until both sides are quiet; returns the bytes moved."""
        moved = 0
        for _ in range(rounds):
            x, y = self.a.flush(), self.b.flush()
            if not x and not y:
                return moved
            moved += len(x) + len(y)
            if x and not drop_a_to_b:
                self.b.feed(x)
            if y:
                self.a.feed(y)
        raise AssertionError("link pair did not settle")

    def disconnect(self) -> None:
        self.a.session.connection_lost()
        self.b.session.connection_lost()
