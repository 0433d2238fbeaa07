"""check_ranges=True: a product that would leave the fixed-point range aborts naming the op
(issue 13 point 2); without it the value wraps silently, as the README says."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors.scheduler._tensor import product_bound

PARTIES = ["alice", "bob", "carol"]


async def square(job):
    x = job.input("alice", np.array([60000.0, 2.0]))
    return await job.reveal(x * x)


async def times_public(job):
    x = job.input("alice", np.array([60000.0, 2.0]))
    return await job.reveal(x * 60000.5)  # a non-integral public factor: a fixed-point product


async def matmul(job):
    a = job.input("alice", np.full((2, 3), 9000.0))
    b = job.input("bob", np.full((3, 2), 9000.0))
    return await job.reveal(a @ b)


def test_the_readme_range_is_where_products_wrap():
    assert product_bound(2 * 18) == 2.0**26  # the README's +-6.7e7 at fxp_bits=18
    out = mpc.simulate(square, parties=PARTIES, protocol="rep3", timeout=60)
    assert abs(out["alice"][0] - 3.6e9) > 1e9  # wrapped: 60000^2 is beyond 2^26 (issue: 110339072.0)
    out = mpc.simulate(times_public, parties=PARTIES, protocol="rep3", timeout=60)
    assert abs(out["alice"][0] - 60000.0 * 60000.5) > 1e9


@pytest.mark.parametrize(("program", "op"), [(square, "mul of input[alice], input[alice]"), (times_public, "mul of input[alice]"), (matmul, "matmul of input[alice], input[bob]")])
def test_check_ranges_names_the_op_that_would_wrap(program, op):
    with pytest.raises(mpc.JobAborted, match=rf"OverflowError: check_ranges: op \d+ \({re.escape(op)}\) reaches .*fixed-point product range"):
        mpc.simulate(program, parties=PARTIES, protocol="rep3", timeout=60, check_ranges=True)


def test_check_ranges_passes_values_in_range():
    async def fine(job):
        x = job.input("alice", np.array([6000.0, 2.0]))
        return await job.reveal(x * x)

    out = mpc.simulate(fine, parties=PARTIES, protocol="semi2k", dealer="carol", timeout=60, check_ranges=True)
    np.testing.assert_allclose(out["alice"], [3.6e7, 4.0], rtol=1e-4)
