"""Secure aggregation benchmark: 10 clients x 10^6-element vectors on in-memory link nodes,
beside plain (insecure) aggregation on the same runtime.

    .venv/bin/python bench/secagg_bench.py [--n 1000000] [--clients 10] [--reps 1] [--record]

Every party (the server and the clients) runs on its own link node in this one process, so a
time is the wall time of the whole cluster sharing this machine's cores: all clients' mask
expansion, the server's unmasking and the link's encoding run one after another on one event
loop. Time is the server's ``secure_sum`` call from start to sum (best of ``--reps``). Bytes are
the link's payload bytes of the job (``node.statistics().jobs``), per client (mean) and at the
server. A dropped client leaves (its node closes), as a crashed process would; the server
learns it from the link at once, so no stage timeout is waited out. Every secure result is
checked against the plain sum of the survivors' quantised vectors.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

from mpcactors import ClusterConfig
from mpcactors._log import configure_logging
from mpcactors.link import MemoryNetwork, open_node
from mpcactors.secagg import Quantizer, plain_sum, secure_aggregate

HERE = Path(__file__).resolve().parent
SERVER = "server"
HEADING = "## Secure aggregation"


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str
    secure: bool = True
    ring_bits: int = 64
    clip: float = 2.0**20
    frac_bits: int = 18
    neighbours: int | None = None
    drops: int = 0
    drop_after: str = "share_keys"


SETUPS = [
    Setup("plain (insecure), float64", secure=False),
    Setup("plain (insecure), 2 clients absent", secure=False, drops=2),
    Setup("SecAgg, Z_2^64"),
    Setup("SecAgg, Z_2^32", ring_bits=32, clip=8.0, frac_bits=16),
    Setup("SecAgg, Z_2^32, 1 drop after share_keys", ring_bits=32, clip=8.0, frac_bits=16, drops=1),
    Setup(
        "SecAgg, Z_2^32, 2 drops after share_keys", ring_bits=32, clip=8.0, frac_bits=16, drops=2
    ),
    Setup(
        "SecAgg, Z_2^32, 2 drops after masked_input",
        ring_bits=32,
        clip=8.0,
        frac_bits=16,
        drops=2,
        drop_after="masked_input",
    ),
    Setup("SecAgg+ k=4, Z_2^32", ring_bits=32, clip=8.0, frac_bits=16, neighbours=4),
    Setup(
        "SecAgg+ k=4, Z_2^32, 2 drops after share_keys",
        ring_bits=32,
        clip=8.0,
        frac_bits=16,
        neighbours=4,
        drops=2,
    ),
]


async def run_once(setup: Setup, n: int, n_clients: int, job: str) -> dict[str, Any]:
    clients = [f"c{i}" for i in range(n_clients)]
    dropped = set(clients[1 : 1 + setup.drops])
    rng = np.random.default_rng(0)
    vectors = {c: rng.uniform(-1, 1, size=n) for c in clients}
    net, cfg = MemoryNetwork(), ClusterConfig.local([SERVER, *clients])
    out: dict[str, Any] = {}
    go = trio.Event()
    ready = 0

    async def party(name: str) -> None:
        nonlocal ready
        async with open_node(cfg, name, network=net) as node:
            ready += 1
            if ready == n_clients + 1:
                go.set()
            await go.wait()
            t0 = time.perf_counter()
            if not setup.secure:
                if name in dropped:
                    return
                result = await plain_sum(
                    node, job=job, vector=vectors.get(name), server=SERVER, clients=clients
                )
            else:
                report = await secure_aggregate(
                    node, job=job, vector=vectors.get(name), server=SERVER, clients=clients,
                    threshold=n_clients // 2 + 1 if setup.neighbours is None else 3,
                    clip=setup.clip, frac_bits=setup.frac_bits, ring_bits=setup.ring_bits,
                    neighbours=setup.neighbours, stage_timeout_s=60.0,
                    dropout_after=setup.drop_after if name in dropped else None,
                )  # fmt: skip
                result = report.result
            seconds = time.perf_counter() - t0
            with trio.move_on_after(30):  # let the link hand the last queued bytes to frames
                while any(s.queued_bytes for s in node.statistics().jobs.values()):
                    await trio.sleep(0.005)
            stats = node.statistics().jobs
            if name == SERVER:
                got = sum(s.bytes_received for (_, j), s in stats.items() if j == job)
                out[name] = {"result": result, "seconds": seconds, "received": got}
            else:
                s = stats.get((SERVER, job))
                sent, received = (s.bytes_sent, s.bytes_received) if s else (0, 0)
                out[name] = {"seconds": seconds, "sent": sent, "received": received}

    async with trio.open_nursery() as nursery:
        for p in [SERVER, *clients]:
            nursery.start_soon(party, p)

    early = setup.drop_after in ("share_keys",) or not setup.secure
    included = [c for c in clients if not (early and c in dropped)]
    if setup.secure:
        q = Quantizer(setup.clip, setup.frac_bits, setup.ring_bits)
        total = np.zeros(n, dtype=q.dtype)
        for c in included:
            total += q.quantise(vectors[c])[0]
        ok = np.array_equal(out[SERVER]["result"], q.dequantise(total))
    else:
        ok = np.allclose(out[SERVER]["result"], sum(vectors[c] for c in included))
    full = [c for c in clients if c not in dropped]
    return {
        "seconds": out[SERVER]["seconds"],
        "client_sent": statistics.mean(out[c]["sent"] for c in full),
        "client_received": statistics.mean(out[c]["received"] for c in full),
        "server_received": out[SERVER]["received"],
        "ok": ok,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vector length")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--reps", type=int, default=1, help="runs per setup; the best time is kept")
    ap.add_argument("--only", default="", help="comma-separated substrings of setup names")
    ap.add_argument("--record", action="store_true", help=f"append to bench/RESULTS.md ({HEADING})")
    a = ap.parse_args()
    configure_logging("error")  # dropouts log warnings by design; keep the table readable
    setups = [s for s in SETUPS if not a.only or any(k in s.name for k in a.only.split(","))]
    rows = []
    print(f"{a.clients} clients x {a.n:,} elements, in-memory nodes, one process")
    header = f"{'setup':<48} {'time s':>7} {'MB sent/client':>15} {'MB recv/client':>15} {'MB at server':>13}  ok"
    print(header)
    for i, setup in enumerate(setups):
        runs = [trio.run(run_once, setup, a.n, a.clients, f"bench-{i}-{r}") for r in range(a.reps)]
        best = min(runs, key=lambda r: r["seconds"])
        best["ok"] = all(r["ok"] for r in runs)
        rows.append((setup, best))
        print(
            f"{setup.name:<48} {best['seconds']:>7.2f} {best['client_sent'] / 1e6:>15.3f} "
            f"{best['client_received'] / 1e6:>15.3f} {best['server_received'] / 1e6:>13.1f}  "
            f"{'yes' if best['ok'] else 'NO'}"
        )
    if a.record:
        record(rows, a)
    return 0 if all(r["ok"] for _, r in rows) else 1


def record(rows: list[tuple[Setup, dict[str, Any]]], a: argparse.Namespace) -> None:
    lines = [
        "",
        (
            f"### {datetime.date.today()}: {a.clients} clients x {a.n:,} elements, in-memory "
            f"nodes ({platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} "
            f"cores, load average {os.getloadavg()[0]:.1f} from other work, python "
            f"{platform.python_version()}; best of {a.reps})"
        ),
        "",
        (
            "All parties in one process on one event loop: a time is the whole cluster's work "
            "(every client's masking and the server's unmasking, serialised). Bytes are link "
            "payload bytes of the job. `bench/secagg_bench.py --record`."
        ),
        "",
        "| setup | time s | MB sent / client | MB received / client | MB received at server | sum correct |",
        "|---|---|---|---|---|---|",
    ]
    for setup, r in rows:
        lines.append(
            f"| {setup.name} | {r['seconds']:.2f} | {r['client_sent'] / 1e6:.3f} | "
            f"{r['client_received'] / 1e6:.3f} | {r['server_received'] / 1e6:.1f} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    block = "\n".join(lines) + "\n"
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n"
    start = text.index(HEADING) + len(HEADING)
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt + 1
    text = text[:end].rstrip("\n") + "\n" + block + ("\n" + text[end:] if nxt >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
