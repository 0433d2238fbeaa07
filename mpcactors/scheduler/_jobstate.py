"""The executor's record of one running job (:class:`JobState`) and the statistics a job reports.

Plain state owned by :class:`~mpcactors.scheduler._executor.Executor`: the graph, the mailbox of
messages not consumed yet, seeds, failure, and counters. Kept apart from the executor so its
scheduling logic reads on its own.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..ops._context import OpContext
from ..ops._protocol import Protocol
from ._graph import Graph, OpNode

if TYPE_CHECKING:
    from .._trace import JobTrace

__all__ = ["JobState", "JobStatistics", "PeerJobStatistics"]


@dataclasses.dataclass(frozen=True, slots=True)
class PeerJobStatistics:
    """What one job sent to one peer."""

    flushes: int  # executor ticks in which the job sent this peer something
    messages: int  # link messages (one per tick per peer at most)
    payload_bytes: int  # bytes on the link, from the link's per-job counters
    frames: int  # link DATA frames that carried the job's messages


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatistics:
    """Per-job statistics, returned by ``job.statistics()``."""

    job: str
    party: str
    rounds: int  # communication rounds on the critical path of the job's finished ops
    flushes: int  # executor ticks in which the job sent anything (<= rounds x ops)
    ops: int  # ops in the job's graph
    bytes_sent: int  # payload bytes packed into frames
    frames: int
    peers: dict[str, PeerJobStatistics]
    # payload bytes handed to the link and not yet packed into frames: a message is queued as
    # soon as its op step yields it, so bytes_sent + bytes_queued counts everything the job's
    # finished steps sent, whenever the writer gets to it
    bytes_queued: int = 0


class JobState:
    """The executor's side of one running job."""

    def __init__(
        self,
        job: str,
        party: str,
        protocol: Protocol,
        *,
        on_fail: Callable[[BaseException], None] | None = None,
        tracer: JobTrace | None = None,
    ) -> None:
        self.id = job
        self.party = party
        self.protocol = protocol
        self.parties = protocol.parties
        self.peers = tuple(p for p in self.parties if p != party)
        self.graph = Graph(job)
        self.seeds: dict[frozenset[str], bytes] | None = None
        self.mailbox: dict[tuple[int, int], dict[str, tuple[int, Any]]] = defaultdict(dict)
        self.failure: BaseException | None = None
        self.gone: dict[str, BaseException] = {}  # peers whose link ended (PeerLost), by name
        self.on_fail = on_fail
        self.rounds = 0  # critical-path depth of finished ops (see OpNode.depth)
        self.flushes = 0
        self.peer_rounds: dict[str, int] = defaultdict(int)
        self.peer_messages: dict[str, int] = defaultdict(int)
        self.unfinished = 0
        self.last_progress = anyio.current_time()  # a message arrived or an op finished
        self.idle = anyio.Event()
        self.idle.set()
        self.held: dict[str, int] = defaultdict(int)  # mailbox bytes per peer, not yet taken
        self.mailbox_moved = anyio.Event()  # set when the mailbox shrinks or an op blocks
        self.claims: dict[int, dict[str, str]] = {}  # peers' fingerprints of ops not started here
        self.tracer = tracer  # None: the job is not traced (every trace hook tests this once)

    def context(self, node: OpNode) -> OpContext:
        seeds = self.seeds if self.seeds is not None else {}
        return OpContext(self.party, self.parties, seeds, (self.id.encode(), node.op_id))
