"""Parties that run diverged programs abort at the first differing op, at every party, naming
the op and what each side ran (op fingerprints, DESIGN.md section 12; issue 13 point 1).

Each test runs real nodes over in-memory links; each party runs its own variant of a program
(the same function name, so the set-up round's program check passes, as with two different
program files that both define ``main``). The idle watchdog stays at its 600 s default: the
abort must come from the fingerprints, within seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

import mpcactors as mpc
from mpcactors import ClusterConfig, JobAborted
from mpcactors.link import MemoryNetwork

DIVERGED_WITHIN_S = 10.0  # issue 13: every party fails within 10 s


def program(variants):
    """One program whose body depends on the party (the same qualname at every party)."""

    async def main(job):
        x = job.input("alice", np.array([1.0, 2.0, 3.0]))
        y = job.input("bob", np.array([4.0, 5.0, 6.0]))
        return await variants[job.party](job, x, y)

    return main


def run(variants, protocol="rep3", parties=("alice", "bob", "carol"), **options):
    config = ClusterConfig.local(list(parties), cluster_id="diverged", protocol=protocol, **options)
    network = MemoryNetwork()
    outcome: dict[str, object] = {}

    async def party(name):
        try:
            async with mpc.open_node(config, name, network=network) as node:
                outcome[name] = await node.run(program(variants), job="j1")
        except Exception as exc:  # noqa: BLE001 - each party's outcome is checked
            outcome[name] = exc

    async def main():
        with trio.fail_after(DIVERGED_WITHIN_S):
            async with trio.open_nursery() as n:
                for p in parties:
                    n.start_soon(party, p)

    trio.run(main)
    return outcome


def assert_all_diverged(outcome, *needles):
    for party, result in outcome.items():
        assert isinstance(result, JobAborted), (party, result)  # no party returns a value
        text = str(result)
        assert "the programs diverged" in text, (party, text)
        for needle in needles:
            assert needle in text, (party, needle, text)


async def times_two(job, x, y):
    return await job.reveal(x * 2)


async def plus_one(job, x, y):
    return await job.reveal(x + 1)


def test_same_op_count_with_a_different_op_fails_everywhere_naming_both_ops():
    # the case: alice revealed garbage ([-3.2e13, ...]) and exited 0
    outcome = run({"alice": times_two, "bob": plus_one, "carol": plus_one})
    assert_all_diverged(outcome, "mul_public", "add", "'alice' ran", "ran reveal")


async def product(job, x, y):
    return await job.reveal(x * y)


async def total(job, x, y):
    return await job.reveal(x + y)


@pytest.mark.parametrize("setup", ["rep3", "semi2k"])
def test_a_communicating_op_against_a_local_one(setup):
    if setup == "rep3":
        outcome = run({"alice": product, "bob": total, "carol": total})
    else:
        outcome = run({"alice": product, "bob": total, "carol": product}, protocol="semi2k", dealer="carol")
    assert_all_diverged(outcome, "at op", "mul", "add")


async def one_reveal(job, x, y):
    return await job.reveal(x)


async def two_reveals(job, x, y):
    a = await job.reveal(x)
    return a, await job.reveal(y)


def test_an_extra_reveal_at_one_party_fails_everywhere():
    # was: PeerLost "the node is closing" at alice, values returned at bob and carol
    outcome = run({"alice": two_reveals, "bob": one_reveal, "carol": one_reveal})
    assert_all_diverged(outcome, "end of the program after", "reveal(#")


def test_one_op_fewer_at_one_party_fails_everywhere():
    outcome = run({"alice": one_reveal, "bob": two_reveals, "carol": two_reveals})
    assert_all_diverged(outcome, "end of the program after", "reveal(#")


async def reveal_to_alice(job, x, y):
    return await job.reveal(x + y, to="alice")


async def reveal_to_bob(job, x, y):
    return await job.reveal(x + y, to="bob")


def test_programs_that_wait_on_each_other_without_messages_meet_by_probe():
    # alice waits for bob and carol in her reveal, bob for alice and carol in his: nothing
    # crosses between alice and bob (was: a silent hang for the 600 s idle timeout)
    outcome = run({"alice": reveal_to_alice, "bob": reveal_to_bob, "carol": reveal_to_bob})
    assert_all_diverged(outcome, "to alice", "to bob")


async def add_then_double(job, x, y):
    return await job.reveal((x + y) * 2)


async def sub_then_double(job, x, y):
    return await job.reveal((x - y) * 2)


def test_local_ops_that_differ_are_caught_downstream():
    outcome = run({"alice": add_then_double, "bob": sub_then_double, "carol": sub_then_double})
    assert_all_diverged(outcome, "inputs were computed by different ops")


def test_different_input_shapes_are_named():
    async def wide(job, x, y):
        z = job.input("carol", np.ones((2, 3)))
        return await job.reveal(z * z)

    async def narrow(job, x, y):
        z = job.input("carol", np.ones((2, 3)))
        return await job.reveal(z[0] * z[0])

    outcome = run({"alice": wide, "bob": wide, "carol": narrow})
    assert_all_diverged(outcome, "(2, 3)")


def test_the_same_program_is_not_diverged_and_costs_one_closing_round():
    outcome = run({"alice": product, "bob": product, "carol": product})
    for result in outcome.values():
        np.testing.assert_allclose(result, [4.0, 10.0, 18.0], atol=1e-3)
