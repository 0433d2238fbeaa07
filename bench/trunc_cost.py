"""Rounds and bytes of one truncation and one fixed-point product (10^4 elements), from job
statistics (rounds of the op's result, bytes sent by all parties during it), not timing.

    .venv/bin/python bench/trunc_cost.py
"""

import numpy as np

import mpcactors as mpc

N = 10**4
SETUPS = {
    "semi2k 2 holders + dealer": ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"}),
    "semi2k trusted-first-party": ("semi2k", ["alice", "bob"], {"dealer": "trusted-first-party"}),
    "semi2k 3 holders + dealer": ("semi2k", ["alice", "bob", "carol", "dave"], {"dealer": "dave"}),
    "rep3": ("rep3", ["alice", "bob", "carol"], {}),
}
def measure(setup, which):
    protocol, parties, opts = setup
    hs = [p for p in parties if p != opts.get("dealer")]
    async def program(job):
        x = job.input(hs[0], np.full(N, 1.5))
        y = job.input(hs[-1], np.full(N, 2.5))
        await x
        await y
        s0 = job.statistics()
        r0 = s0.rounds
        b0 = s0.bytes_sent
        if which == "trunc":
            z = x * 0.75          # public fixed-point constant: one truncation
        else:
            z = x * y             # fixed-point product: product + truncation
        await z
        s1 = job.statistics()
        return z.rounds - r0, s1.bytes_sent - b0
    out = mpc.simulate(program, parties=parties, protocol=protocol, timeout=120, **opts)
    return max(r for r, _ in out.values()), sum(b for _, b in out.values())


if __name__ == "__main__":
    print("| set-up | truncation rounds | bytes/element | fxp product rounds | bytes/element |")
    print("|---|---|---|---|---|")
    for name, setup in SETUPS.items():
        t = measure(setup, "trunc")
        m = measure(setup, "mul")
        print(f"| {name} | {t[0]} | {t[1] / N:.1f} | {m[0]} | {m[1] / N:.1f} |")
