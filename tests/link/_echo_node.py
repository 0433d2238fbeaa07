"""A node in its own process for tests: echoes every message on job "echo" channel "c".

Usage: python _echo_node.py CONFIG.toml PARTY
Prints "ready" once connected to every peer, then serves until killed.
"""

from __future__ import annotations

import sys

import anyio

from mpcactors import load_config
from mpcactors.link import open_node


async def main(path: str, party: str) -> None:
    config = load_config(path)
    async with open_node(config, party) as node:
        print("ready", flush=True)
        async with anyio.create_task_group() as tg:
            for peer in node.peers:

                async def echo(peer: str = peer) -> None:
                    ch = node.channel(peer, "echo", "c")
                    while True:
                        await ch.send(await ch.receive())

                tg.start_soon(echo)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
