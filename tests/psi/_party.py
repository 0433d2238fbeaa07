"""One PSI party process for the integration tests.

    _party.py cli ARGS...                   -> mpcactors psi ARGS (psi_cli)
    _party.py api --config C --party P --jobs-file F [--mode tasks|threads] [--drop-every S]
        [--protocol kkrt|ecdh]
        runs every job of F (JSON: [{"job", "ids"}...]) concurrently over one node, as a user
        would: anyio tasks, or plain threads calling anyio.from_thread.run; prints one JSON line
        per job result and one with the node's link statistics.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from functools import partial
from typing import Any


def api(argv: list[str]) -> int:
    import anyio
    import anyio.from_thread
    import anyio.lowlevel

    from mpcactors._config import load_config
    from mpcactors.link import open_node
    from mpcactors.psi import run_psi

    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--party", required=True)
    p.add_argument("--jobs-file", required=True)
    p.add_argument("--mode", default="tasks", choices=["tasks", "threads"])
    p.add_argument("--drop-every", type=float, default=0.0)
    p.add_argument("--protocol", default="kkrt")
    a = p.parse_args(argv)
    config = load_config(a.config)
    peer = next(x for x in config.party_names if x != a.party)
    with open(a.jobs_file) as f:
        jobs = json.load(f)

    async def main() -> None:
        results: dict[str, Any] = {}
        drops = 0
        async with open_node(config, a.party) as node:
            run = partial(run_psi, node, peer=peer, chunk_size=256, protocol=a.protocol)

            async def one(job: dict[str, Any]) -> None:
                results[job["job"]] = await run(job=job["job"], ids=job["ids"])

            async with anyio.create_task_group() as tg:
                if a.mode == "tasks":
                    for job in jobs:
                        tg.start_soon(one, job)
                else:
                    token = anyio.lowlevel.current_token()

                    def in_thread(job: dict[str, Any]) -> None:  # plain user threads
                        results[job["job"]] = anyio.from_thread.run(
                            partial(run, job=job["job"], ids=job["ids"]), token=token
                        )

                    threads = [threading.Thread(target=in_thread, args=(j,)) for j in jobs]
                    for t in threads:
                        t.start()

                    def join_all() -> None:
                        for t in threads:
                            t.join()

                    tg.start_soon(partial(anyio.to_thread.run_sync, join_all, abandon_on_cancel=True))
                if a.drop_every:
                    while len(results) < len(jobs):
                        await anyio.sleep(a.drop_every)
                        drops += node.drop_connection(peer)
            stats = node.statistics()
        for name, r in results.items():
            print(json.dumps({"job": name, "ids": sorted(map(str, r.ids)), "intersection": r.intersection}))
        link = stats.peers[peer]
        print(json.dumps({"stats": True, "drops": drops, "reconnects": link.reconnects,
                          "retransmitted": link.retransmitted_frames, "jobs": link.jobs,
                          "bytes_sent": link.bytes_sent}), flush=True)

    anyio.run(main, backend="trio")
    return 0


def main() -> int:
    if sys.argv[1] == "cli":
        from mpcactors.psi import psi_cli

        return psi_cli(sys.argv[2:])
    return api(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
