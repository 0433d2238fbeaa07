"""SPU's practice-guide program on secret data: deduct an amount from bank accounts.

The accounts are a list of dicts at alice (``[{"id": 1, "deposit": 1000.0}, ...]``), the amount
is bob's; ``deduct`` is plain JAX and runs unchanged in plain JAX and through ``mpcactors.jit``.
Only alice learns the new balances; nobody learns the amount or which accounts could pay.

    python examples/bank_accounts.py                                        # simulate, compare
    mpcactors run examples/bank_accounts.py --config configs/local3.toml --party alice   (bob, carol)
"""

from __future__ import annotations

import jax.numpy as jnp

import mpcactors as mpc


def load_accounts():
    return [
        {"id": 1, "deposit": 1000.0},
        {"id": 2, "deposit": 250.0},
        {"id": 3, "deposit": 5230.5},
    ]


def load_amount():
    return 600.0


def deduct(accounts, amount):
    """Deduct ``amount`` from every account that holds at least that much."""
    return [
        {"id": acc["id"], "deposit": jnp.where(acc["deposit"] >= amount, acc["deposit"] - amount, acc["deposit"])}
        for acc in accounts
    ]


async def main(job):
    accounts = job.input("alice", load_accounts)  # a pytree: the structure travels with it
    amount = job.input("bob", load_amount)
    new_accounts = await mpc.jit(deduct)(accounts, amount)
    return await job.reveal(new_accounts, to="alice")


if __name__ == "__main__":
    print("plain JAX:", deduct(load_accounts(), load_amount()))
    for protocol, opts in (("rep3", {}), ("semi2k", {"dealer": "carol"})):
        got = mpc.simulate(main, parties=["alice", "bob", "carol"], protocol=protocol, **opts)
        print(f"{protocol:7s}:", [{k: v.item() for k, v in acc.items()} for acc in got["alice"]])
