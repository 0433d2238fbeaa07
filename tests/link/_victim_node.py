"""A node in its own process for the memory-attack tests: echoes job "echo" channel "c" with
carol, and otherwise just keeps its links (alice is the hostile peer).

Usage: python _victim_node.py CONFIG.toml PARTY
Logs (warnings) go to stderr; it serves until terminated.
"""

from __future__ import annotations

import sys

import anyio

from mpcactors import load_config
from mpcactors._log import configure_logging
from mpcactors.link import open_node


async def main(path: str, party: str) -> None:
    configure_logging("warning")
    config = load_config(path)
    async with open_node(config, party, wait_connected=False) as node:
        ch = node.channel("carol", "echo", "c")
        while True:
            await ch.send(await ch.receive())


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
