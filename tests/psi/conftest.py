"""Fixtures for PSI tests: nodes of one process over the in-memory network."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mpcactors._config import ClusterConfig, LinkOptions
from mpcactors.link import MemoryNetwork, open_node


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: Any) -> str:
    return request.param


@contextlib.asynccontextmanager
async def memory_nodes(*parties: str, network: MemoryNetwork | None = None,
                       **link: Any) -> AsyncIterator[dict[str, Any]]:
    """One node per party on one MemoryNetwork (real links, no sockets); yields {party: node}."""
    options = {"peer_timeout_s": 5.0, "connect_timeout_s": 10.0, **link}
    config = ClusterConfig.local(list(parties), link=LinkOptions(**options))
    network = network or MemoryNetwork()
    async with contextlib.AsyncExitStack() as stack:
        nodes = {}
        for p in parties:
            nodes[p] = await stack.enter_async_context(
                open_node(config, p, network=network, wait_connected=False)
            )
        for node in nodes.values():
            await node.wait_connected()
        yield nodes


@pytest.fixture(params=["kkrt", "ecdh"])
def protocol(request: Any) -> str:
    """Both PSI protocols run the same job tests (KKRT is the default)."""
    return str(request.param)
