"""The link layer: authenticated, multiplexed, resumable links between parties.

See docs/LINK.md for the protocol. Public API::

    async with open_node(config, party, network=None, wan=None) as node:
        ch = node.channel(peer, job, name)
        await ch.send(obj); obj = await ch.receive()
        node.statistics()
"""

from __future__ import annotations

from ._codec import DTYPES, decode_payload, encode_payload
from ._memory import MemoryByteStream, MemoryNetwork, memory_stream_pair
from ._node import Channel, Node, open_node
from ._stats import JobLinkStatistics, LinkStatistics, NodeStatistics
from ._wan import WanStream

__all__ = [
    "DTYPES",
    "Channel",
    "JobLinkStatistics",
    "LinkStatistics",
    "MemoryByteStream",
    "MemoryNetwork",
    "Node",
    "NodeStatistics",
    "WanStream",
    "decode_payload",
    "encode_payload",
    "memory_stream_pair",
    "open_node",
]
