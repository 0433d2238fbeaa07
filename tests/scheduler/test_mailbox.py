"""The executor's mailbox accepts only entries an honest peer can send (issue 10, point 3)."""

from __future__ import annotations

import pytest
import trio

from mpcactors import ProtocolError
from mpcactors.ops._registry import make_protocol
from mpcactors.scheduler._executor import MAX_OPS_AHEAD, Executor, JobState
from mpcactors.scheduler._graph import OpState


def _job_with_ops(n: int) -> tuple[Executor, JobState]:
    ex = Executor(link=None, party="alice")
    state = JobState("j", "alice", make_protocol("rep3", "alice", ["alice", "bob", "carol"]))
    ex.open_job(state)
    for _ in range(n):
        state.graph.add("local", [], lambda ctx, ins: 0)
    return ex, state


def _deliver(entries: list[list[object]]) -> JobState:
    async def main() -> JobState:
        ex, state = _job_with_ops(3)
        first = state.graph.nodes[0]
        first.round = 2  # rounds 0 and 1 were taken
        first.state = OpState.BLOCKED
        state.graph.nodes[1].state = OpState.DONE
        ex.deliver("j", "bob", entries)
        return state

    return trio.run(main)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ([0, 1, 1, b"late"], "op 0 round 1 from 'bob'.*at round 2"),  # a round already taken
        ([1, 0, 1, b"done"], "op 1 round 0 from 'bob'.*that op is done"),
        ([3 + MAX_OPS_AHEAD, 0, 1, b"far"], f"op {3 + MAX_OPS_AHEAD} round 0 .*graph has 3 ops"),
        ([-1, 0, 1, b"neg"], "op -1 round 0"),
        ([5, -2, 1, b"neg"], "op 5 round -2"),
    ],
)
def test_entries_an_honest_peer_cannot_send_fail_the_job(entry: list[object], match: str) -> None:
    state = _deliver([entry])
    assert isinstance(state.failure, ProtocolError), state.failure
    assert state.failure.peer == "bob"
    with pytest.raises(ProtocolError, match=match):
        raise state.failure
    assert not state.mailbox.get((entry[0], entry[1]))  # nothing was filed


def test_current_and_future_rounds_and_ops_ahead_are_filed() -> None:
    state = _deliver([[0, 2, 1, b"now"], [0, 3, 1, b"next"], [2, 0, 1, b"x"], [40, 0, 1, b"ahead"]])
    assert state.failure is None
    assert {k for k, box in state.mailbox.items() if box} == {(0, 2), (0, 3), (2, 0), (40, 0)}
