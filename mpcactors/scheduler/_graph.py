"""The dataflow graph of one job: op nodes with deterministic ids.

Theory of operation
-------------------
Every operation on a secret value creates an :class:`OpNode` in its job's :class:`Graph`. The op
id is the node's position in the job's construction order, which is the same at every party
because every party runs the same program; together with the job id and the round number it
addresses the op's messages, so concurrent ops and jobs can never mix their messages (unlike a
shared per-context counter, SPU's secretflow#1818).

A node holds a *step factory*: given an :class:`~mpcactors.ops._context.OpContext` and its inputs'
results it returns a protocol step (a generator of Exchanges, see ``ops/_comm.py``). The executor
starts the step when every input is done and drives it round by round. Nodes are submitted to
the executor as soon as they are created (eager dataflow), so independent ops overlap without
the program having to ask.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LOADER_COST", "Graph", "OpNode", "OpState", "StepFactory"]

# The cost of a loader (``job.input(owner, callable)``) or of an input of unknown size: always big
# enough for a worker thread, and not charged to the memory budget (its size is not known).
LOADER_COST = 1 << 62

# (ctx, [results of inputs]) -> Step (generator) or a plain value for purely local ops.
StepFactory = Callable[[Any, list[Any]], Any]


class OpState(enum.Enum):
    WAITING = "waiting"  # some input is not done yet
    READY = "ready"  # inputs done; step not started or resumable
    RUNNING = "running"  # a step is computing in a worker thread (not to be stepped again)
    BLOCKED = "blocked"  # step yielded an Exchange; waiting for peers' messages
    DONE = "done"  # step returned; ``result`` holds its value
    FAILED = "failed"  # step raised; the job is aborting


class OpNode:
    """One op of a job's graph (see module doc)."""

    __slots__ = (
        "_pending_inputs",
        "consumers",
        "cost",
        "depth",
        "detail",
        "error",
        "expect",
        "factory",
        "fingerprint",
        "gen",
        "graph",
        "height",
        "inputs",
        "name",
        "op_id",
        "result",
        "round",
        "state",
        "told",
        "waiters",
    )

    def __init__(
        self,
        graph: Graph,
        op_id: int,
        name: str,
        inputs: Sequence[OpNode],
        factory: StepFactory,
        cost: int = 0,
    ) -> None:
        self.graph = graph
        self.cost = cost  # elements the op's local work touches (estimate; decides inline vs thread)
        self.op_id = op_id
        self.name = name
        self.inputs = tuple(inputs)
        self.factory = factory
        self.state = OpState.WAITING
        self.result: Any = None
        self.error: BaseException | None = None
        self.consumers: list[OpNode] = []
        self.gen: Any = None
        self.round = 0
        self.expect: frozenset[str] = frozenset()
        self.waiters: list[Any] = []  # trio/anyio Events set when the op finishes
        self._pending_inputs = sum(1 for i in self.inputs if i.state is not OpState.DONE)
        self.height = 0  # longest path to a sink, for critical-path priority
        self.depth = 0  # communication rounds on the longest path from the job's start to here
        self.detail = ""  # attributes that tell the op apart (axis=1, fxp, to=alice), for fingerprints
        self.fingerprint: str | None = None  # set when the step starts (see executor: divergence)
        self.told: frozenset[str] = frozenset()  # peers sent our fingerprint of this op
        for i in self.inputs:
            i.consumers.append(self)

    def __repr__(self) -> str:
        return f"<op {self.graph.job}#{self.op_id} {self.name} {self.state.value}>"

    @property
    def done(self) -> bool:
        return self.state is OpState.DONE

    def input_done(self) -> bool:
        """Record that one input finished; True when all have."""
        self._pending_inputs -= 1
        return self._pending_inputs == 0

    @property
    def inputs_ready(self) -> bool:
        return self._pending_inputs == 0


class Graph:
    """The ops of one job, in construction order."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.nodes: list[OpNode] = []

    def add(self, name: str, inputs: Sequence[OpNode], factory: StepFactory, cost: int = 0) -> OpNode:
        node = OpNode(self, len(self.nodes), name, inputs, factory, cost)
        self.nodes.append(node)
        return node

    def update_heights(self, ready: Sequence[OpNode]) -> None:
        """Recompute ``height`` (longest path to a known sink) for ``ready`` nodes."""
        memo: dict[int, int] = {}

        def height(n: OpNode) -> int:
            stack = [n]
            while stack:
                top = stack[-1]
                if top.op_id in memo:
                    stack.pop()
                    continue
                missing = [c for c in top.consumers if c.op_id not in memo]
                if missing:
                    stack.extend(missing)
                    continue
                memo[top.op_id] = 1 + max((memo[c.op_id] for c in top.consumers), default=0)
                stack.pop()
            return memo[n.op_id]

        for n in ready:
            n.height = height(n)
