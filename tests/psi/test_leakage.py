"""What each party's messages carry in the result phase: no size a join does not need.

Every message a party receives is recorded (the peer's view of it), for each join, with the
result to both parties (the aligned outputs). ``align_end.only`` -- a party's count of rows
whose key the other lacks -- reaches only a party that writes those rows as padding; ``align.m``
(row multiplicities of common keys) only joins that repeat rows by them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mpcactors.psi import PsiResult

from ._ref import run_pair, write_csv
from .conftest import memory_nodes


class _RecordingChannel:
    def __init__(self, channel: Any, log: list[Any]) -> None:
        self._channel, self._log = channel, log

    async def send(self, obj: Any) -> None:
        await self._channel.send(obj)

    async def receive(self) -> Any:
        msg = await self._channel.receive()
        self._log.append(msg)
        return msg


class _Recorder:
    """A node whose channels record every message this party receives."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.received: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    def channel(self, peer: str, job: str, name: str) -> Any:
        return _RecordingChannel(self._node.channel(peer, job, name), self.received)


# join -> parties that receive the other's one-sided row count (alice is the left table)
RECEIVES_ONLY = {
    "inner": set(),
    "difference": set(),
    "left": {"bob"},
    "right": {"alice"},
    "full": {"alice", "bob"},
}


@pytest.mark.parametrize("join", sorted(RECEIVES_ONLY))
@pytest.mark.trio
async def test_row_counts_reach_only_the_party_that_pads(tmp_path: Path, join: str) -> None:
    # alice: 2 rows whose key bob lacks; bob: 3 such rows; key "1" repeats on both sides
    a = write_csv(tmp_path / "a.csv", ["id", "x"], [["1", "a"], ["1", "b"], ["2", "c"], ["3", "d"], ["4", "e"]])
    b = write_csv(tmp_path / "b.csv", ["id", "y"], [["1", "p"], ["5", "q"], ["6", "r"], ["2", "s"], ["7", "t"]])
    async with memory_nodes("alice", "bob") as nodes:
        rec = {p: _Recorder(n) for p, n in nodes.items()}
        res = await run_pair(
            rec, f"leak-{join}",
            {"input": a, "keys": "id", "join": join, "workers": 0, "output": tmp_path / "oa.csv"},
            {"input": b, "keys": "id", "join": join, "workers": 0, "output": tmp_path / "ob.csv"},
        )  # fmt: skip
    assert all(isinstance(r, PsiResult) for r in res.values()), res
    assert res["alice"].intersection == res["bob"].intersection == 2
    for party, r in rec.items():
        ends = [m for m in r.received if isinstance(m, dict) and m.get("t") == "align_end"]
        assert len(ends) == 1, ends
        peer_only = {"alice": 3, "bob": 2}[party]  # the other's one-sided rows
        if party in RECEIVES_ONLY[join]:
            assert ends[0].get("only") == peer_only
        else:
            assert "only" not in ends[0], f"{party} learns the peer's row count in a {join} join"
        aligns = [m for m in r.received if isinstance(m, dict) and m.get("t") == "align"]
        assert aligns
        assert all(("m" in m) == (join != "difference") for m in aligns), aligns
