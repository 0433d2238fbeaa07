"""A job's divergence probe (``Node._probe``): first probe ``after`` seconds without progress,
then backing off while the job stays still, and never spinning however long it stays still."""

from __future__ import annotations

import itertools
import types

import trio
import trio.testing

from mpcactors._runtime import Node


def _run(stall_until: float, horizon: float, moves: tuple[float, ...] = ()) -> list[float]:
    """Probe times of a job that moves at ``moves`` and then not until the horizon."""
    probes: list[float] = []
    state = types.SimpleNamespace(last_progress=0.0, failure=None)
    node = types.SimpleNamespace(_executor=types.SimpleNamespace(probe=lambda s: probes.append(trio.current_time())))

    async def main() -> None:
        async def mover() -> None:
            for t in moves:
                await trio.sleep_until(t)
                state.last_progress = trio.current_time()

        with trio.move_on_after(horizon):
            async with trio.open_nursery() as n:
                n.start_soon(mover)
                await Node._probe(node, state)  # type: ignore[arg-type]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return probes


def test_a_still_job_is_probed_after_one_second_then_ever_more_rarely() -> None:
    probes = _run(0.0, 200.0)
    assert probes[:5] == [1.0, 3.0, 7.0, 15.0, 31.0]  # 1 s idle, then 2, 4, 8, 16 s apart
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert all(g >= 16.0 for g in gaps[4:]), gaps  # never faster than every 16 s
    assert len(probes) <= 5 + (200 - 31) // 16 + 1  # (a spinning probe made thousands)


def test_progress_resets_the_back_off() -> None:
    probes = _run(0.0, 60.0, moves=(40.0,))
    # 1, 3, 7, 15, 31 without progress; the job moves at 40: probed again 1 s later, then 2 s after
    assert probes[:7] == [1.0, 3.0, 7.0, 15.0, 31.0, 41.0, 43.0], probes
