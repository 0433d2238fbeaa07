"""Run one coroutine per party, each on its own in-memory link node, in one process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from mpcactors import ClusterConfig, MpcError
from mpcactors.link import MemoryNetwork, open_node

SERVER = "server"


async def run_cluster(
    parties: list[str], fn: Callable[[Any], Awaitable[Any]], cfg: ClusterConfig | None = None
) -> dict[str, Any]:
    """Run ``fn(node)`` at every party on in-memory nodes; MpcErrors become results."""
    net, cfg = MemoryNetwork(), cfg or ClusterConfig.local(parties)
    out: dict[str, Any] = {}

    async def one(party: str) -> None:
        async with open_node(cfg, party, network=net) as node:
            try:
                out[party] = await fn(node)
            except MpcError as exc:
                out[party] = exc

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for p in parties:
                tg.start_soon(one, p)
    return out
