"""Every party's node of one in-memory cluster, each running one job: what each one raised."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import trio

import mpcactors as mpc
from mpcactors._config import ClusterConfig
from mpcactors.link import MemoryNetwork

__all__ = ["job_errors"]


def job_errors(
    configs: Mapping[str, ClusterConfig], program_of: Callable[[str], Any], *, job: str, timeout: float = 20.0
) -> dict[str, mpc.MpcError]:
    """Open ``configs[party]``'s node for every party on one memory network and run
    ``program_of(party)`` as job ``job`` there; returns ``{party: the MpcError it raised}`` (a
    party whose job succeeded is absent)."""

    async def main() -> dict[str, mpc.MpcError]:
        network = MemoryNetwork()
        errors: dict[str, mpc.MpcError] = {}

        async def party(name: str) -> None:
            async with mpc.open_node(configs[name], name, network=network) as node:
                try:
                    await node.run(program_of(name), job=job, timeout=timeout)
                except mpc.MpcError as exc:
                    errors[name] = exc

        async with trio.open_nursery() as nursery:
            for name in configs:
                nursery.start_soon(party, name)
        return errors

    return trio.run(main)
