"""One party of the multi-process TCP+TLS secure aggregation test (run as a script).

python tests/secagg/_party.py CONFIG PARTY OUT.npy [DROPOUT_AFTER]
"""

from __future__ import annotations

import sys

import numpy as np
import trio

from mpcactors import load_config
from mpcactors.link import open_node
from mpcactors.secagg import secure_sum

SERVER = "server"
CLIENTS = ["c1", "c2", "c3"]


def vector_of(party: str) -> np.ndarray:
    return np.random.default_rng(int(party[1:])).uniform(-5, 5, size=1000)


async def main(config: str, party: str, out: str, dropout_after: str | None) -> None:
    async with open_node(load_config(config), party) as node:
        result = await secure_sum(
            node, job="tcp-job", vector=None if party == SERVER else vector_of(party),
            server=SERVER, clients=CLIENTS, threshold=2, clip=8.0, frac_bits=16, ring_bits=32,
            stage_timeout_s=20.0, dropout_after=dropout_after,
        )  # fmt: skip
        if result is not None:
            np.save(out, result)


if __name__ == "__main__":
    trio.run(
        main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None
    )
