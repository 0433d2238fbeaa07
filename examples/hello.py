"""A first secure program: three parties, each with a private number.

    mpcactors run examples/hello.py --config configs/local3.toml --party alice   (and bob, carol)
    python examples/hello.py                                                     (simulated)
"""

from __future__ import annotations

import numpy as np

import mpcactors as mpc


async def main(job):
    salaries = {p: job.input(p, lambda p=p: np.array([{"alice": 52.5, "bob": 61.0, "carol": 58.25}[p]])) for p in job.parties}
    total = sum(salaries.values())
    richest_is_bob = salaries["bob"] > mpc.maximum(salaries["alice"], salaries["carol"])
    out = await job.reveal({"mean": total / len(job.parties), "bob_earns_most": richest_is_bob})
    return {"mean": float(out["mean"][0]), "bob_earns_most": bool(out["bob_earns_most"][0])}


if __name__ == "__main__":
    print(mpc.simulate(main, parties=["alice", "bob", "carol"], protocol="rep3"))
