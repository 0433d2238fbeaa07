"""Sans-IO liveness policy of one peer link: heartbeats, silence, the peer-lost deadline, linger.

Theory of operation
-------------------
:class:`Liveness` decides, from the times it is told about, everything about whether a peer is
alive; :class:`Linger` decides how a closing link waits for its last messages to be delivered.
Neither has a clock or a socket: every method takes ``now`` (the shell's monotonic time) and
returns a decision and the time to ask again. The async shell (``PeerLink``) sleeps until then,
acts (queues a PING in the :class:`~mpcactors.link._session.Session`, drops a connection, fails
the link) and reports what it heard. So the rules below are tested without a network
(tests/link/test_liveness.py), like the session and the mux.

* **Heard.** Any bytes from the peer (or the link's I/O thread saying it received some while the
  loop was busy) move ``last_heard`` forward, never back.
* **Heartbeat.** Every ``heartbeat_interval_s`` an open connection gets a PING (its PONG measures
  the RTT and carries an ACK). A connection silent for ``silence_s = max(3 heartbeats,
  peer_timeout_s / 2)`` is dropped, so a half-open TCP connection is replaced long before the
  peer is declared lost.
* **Deadline to (re)connect.** Before the first connection: ``connect_timeout_s`` from the start.
  Afterwards: ``last_heard + peer_timeout_s``; a link with no connection past it has lost its peer
  (every job with the peer fails with ``PeerLost``). A link already given up on retries in the
  background with no deadline.
* **Linger.** A closing link waits until nothing is undelivered or ``linger_s`` passes, asking
  for an ACK (a PING, whose PONG brings one) at once and every ``PING_EVERY_S`` after; then it
  says goodbye and waits ``goodbye_s`` at most for the peer's CLOSE.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

__all__ = ["Linger", "LingerStep", "Liveness", "Tick"]


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """What the heartbeat timer does now."""

    ping: bool  # queue a PING (and let a delayed ACK go)
    drop: bool  # the connection has been silent past ``silence_s``: drop it
    silent_s: float  # how long the peer has been silent
    next_at: float  # when to tick again


class Liveness:
    """Heartbeat, silence and peer-lost policy of one peer link (module doc)."""

    def __init__(
        self, *, heartbeat_interval_s: float, peer_timeout_s: float, connect_timeout_s: float,
        now: float,
    ) -> None:  # fmt: skip
        self.heartbeat_interval_s = heartbeat_interval_s
        self.peer_timeout_s = peer_timeout_s
        self.silence_s = max(3 * heartbeat_interval_s, peer_timeout_s / 2)
        self.last_heard = now
        self.ever_connected = False
        self._first_deadline = now + connect_timeout_s

    def heard(self, when: float) -> None:
        """The peer was heard from at ``when`` (bytes arrived; a handshake completed)."""
        self.last_heard = max(self.last_heard, when)

    def established(self, now: float) -> None:
        """A handshake completed at ``now``."""
        self.heard(now)
        self.ever_connected = True

    def obtain_deadline(self, *, given_up: bool) -> float:
        """Until when a new connection may be obtained before the peer is lost."""
        if given_up:
            return math.inf  # background retries of a failed link
        if not self.ever_connected:
            return self._first_deadline
        return self.last_heard + self.peer_timeout_s

    def tick(self, now: float, *, connection_open: bool) -> Tick:
        """The heartbeat timer fired at ``now``: PING an open connection, drop a silent one."""
        silent = now - self.last_heard
        return Tick(
            ping=connection_open,
            drop=connection_open and silent > self.silence_s,
            silent_s=silent,
            next_at=now + self.heartbeat_interval_s,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class LingerStep:
    """What a closing link does now."""

    done: bool  # stop lingering: say goodbye
    ping: bool  # ask the peer for an ACK (queue a PING)


class Linger:
    """How a closing link waits for its last DATA to be acknowledged (module doc)."""

    POLL_S: Final = 0.005  # how often the shell asks again
    PING_EVERY_S: Final = 0.1  # how often it asks the peer for an ACK while waiting

    def __init__(self, now: float, linger_s: float) -> None:
        self.deadline = now + linger_s
        self.goodbye_s = min(1.0, max(0.2, linger_s))  # then wait this long for the peer's CLOSE
        self._next_ping = now

    def step(self, now: float, *, undelivered: bool, connection_open: bool) -> LingerStep:
        """Decide at ``now``; ``undelivered``: queued or unacknowledged DATA could still arrive."""
        if not undelivered or now >= self.deadline:
            return LingerStep(done=True, ping=False)
        ping = connection_open and now >= self._next_ping
        if ping:
            self._next_ping = now + self.PING_EVERY_S
        return LingerStep(done=False, ping=ping)
