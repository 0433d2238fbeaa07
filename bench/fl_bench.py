"""FLModel round benchmark: 10 clients x 10^6 weights, secure aggregation vs the plain sum.

    .venv/bin/python bench/fl_bench.py [--weights 1000000] [--clients 10] [--rounds 3]

Every party runs in this process (``mpc.simulate``: in-memory link nodes, one event loop), so a
round's time is the whole cluster's work serialised: the model broadcast, every client's local
step and masking, the server's unmasking and update. The model is a quadratic loss
|w - t_k|^2 / 2 per client (one SGD step per round), so the numbers are the FL machinery's, not
a training workload's. Bytes are the server's link payload bytes per round (RoundRecord).
Time per round: the median over rounds after the first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import mpcactors as mpc
from mpcactors._log import configure_logging
from mpcactors.fl import FLModel, NumpyModel, PlainAggregator, SecureAggregator

SERVER = "server"


def quadratic(n: int) -> NumpyModel:
    def loss_and_grad(w: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        d = w[0] - x.mean(axis=0)
        return float(d @ d / 2), [d]

    return NumpyModel([np.zeros(n)], loss_and_grad, lambda w, x: x @ w[0], learning_rate=0.5)


def run(setup: str, aggregator: Any, n: int, clients: list[str], rounds: int) -> dict[str, Any]:
    targets = {c: np.random.default_rng(i).uniform(-1, 1, (1, n)) for i, c in enumerate(clients)}

    async def main(job: Any) -> Any:
        fl = FLModel(job, server=SERVER, device_list=clients, model=lambda: quadratic(n), aggregator=aggregator)
        h = await fl.fit(x=targets, y={c: np.zeros(1) for c in clients}, epochs=rounds)
        return h.rounds

    t0 = time.perf_counter()
    records = mpc.simulate(main, parties=[SERVER, *clients], protocol="semi2k", dealer=SERVER, timeout=900)[SERVER]
    wall = time.perf_counter() - t0
    later = records[1:] or records
    return {
        "setup": setup,
        "s/round": statistics.median(r.seconds for r in later),
        "MB sent/round": statistics.median(r.bytes_sent for r in later) / 1e6,
        "MB received/round": statistics.median(r.bytes_received for r in later) / 1e6,
        "wall s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    configure_logging("error")
    clients = [f"c{i:02d}" for i in range(args.clients)]
    setups = [
        ("plain (insecure), float64", PlainAggregator(stage_timeout_s=300)),
        ("SecAgg, Z_2^64 (defaults)", SecureAggregator(stage_timeout_s=300)),
        ("SecAgg, Z_2^32 (max_samples 16, clip_norm 1)",
         SecureAggregator(ring_bits=32, max_samples=16, clip_norm=1.0, stage_timeout_s=300)),
        ("SecAgg+, 4 neighbours, Z_2^64", SecureAggregator(neighbours=4, threshold=3, stage_timeout_s=300)),
    ]
    print(f"{args.clients} clients x {args.weights} weights, {args.rounds} rounds")
    print("| setup | s / round | MB sent / round (server) | MB received / round (server) |")
    print("|---|---|---|---|")
    for name, agg in setups:
        r = run(name, agg, args.weights, clients, args.rounds)
        print(f"| {name} | {r['s/round']:.2f} | {r['MB sent/round']:.1f} | {r['MB received/round']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
