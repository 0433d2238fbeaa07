"""KKRT PSI over real (in-memory) links: the async shell, the codec and concurrent jobs."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mpcactors.psi._kkrt import KkrtReceiverResult, item_hashes
from mpcactors.psi._kkrt_shell import kkrt_psi

from .conftest import memory_nodes


@pytest.mark.anyio
async def test_kkrt_over_links_many_jobs_at_once() -> None:
    jobs = {f"k{i}": ([f"a{i}-{j}" for j in range(300 * i, 300 * i + 900)],
                      [f"a{i}-{j}" for j in range(300 * i + 450, 300 * i + 1700)]) for i in range(6)}
    results: dict[tuple[str, str], Any] = {}
    async with memory_nodes("alice", "bob") as nodes:
        async def one(job: str, party: str, ids: list[str], receiver: bool) -> None:
            peer = "bob" if party == "alice" else "alice"
            results[job, party] = await kkrt_psi(nodes[party], peer=peer, job=job,
                                                 items=item_hashes(ids), receiver=receiver)

        async with anyio.create_task_group() as tg:
            for job, (a, b) in jobs.items():
                tg.start_soon(one, job, "alice", a, True)
                tg.start_soon(one, job, "bob", b, False)
    for job, (a, b) in jobs.items():
        r = results[job, "alice"]
        assert isinstance(r, KkrtReceiverResult)
        assert {a[i] for i in r.own} == set(a) & set(b)
        assert [a[i] for i in r.own] == [b[j] for j in r.peer]
        assert results[job, "bob"].n_peer == len(a)
