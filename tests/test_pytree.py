"""Pytrees at every boundary: the rules (mpcactors/_pytree.py) and job.input / reveal / results."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors._errors import ShapeError
from mpcactors._pytree import TreeDef, flatten, leaf_paths, tree_map, unflatten

Point = namedtuple("Point", "x y")

ACCOUNTS = [{"id": 1, "deposit": 1000.0}, {"id": 2, "deposit": 2500.25}, {"id": 3, "deposit": 75.5}]


# ---- the rules, without a job ----------------------------------------------------------------
def test_flatten_unflatten_round_trip_keeps_containers_and_order():
    tree = {"b": [1, (2.0, None)], "a": Point(np.ones(2), {"z": 3})}
    leaves, td = flatten(tree)
    assert [np.asarray(v).tolist() for v in leaves] == [1, 2.0, [1.0, 1.0], 3]
    back = unflatten(td, leaves)
    assert list(back) == ["b", "a"] and isinstance(back["a"], Point) and back["b"][1][1] is None
    assert leaf_paths(td) == ['["b"][0]', '["b"][1][0]', '["a"][0]', '["a"][1]["z"]']
    assert leaf_paths(flatten(5)[1]) == [""]


def test_wire_form_round_trips_and_named_tuples_arrive_as_tuples():
    _, td = flatten({"k": [Point(1, 2), None], 7: 1.0})
    back = TreeDef.from_wire(td.to_wire())
    assert back.to_wire() == td.to_wire() and back.num_leaves == 3
    assert unflatten(back, [1, 2, 3]) == {"k": [(1, 2), None], 7: 3}


@pytest.mark.parametrize(
    "wire",
    [["x", []], ["d", [["k", "L"], ["k", "L"]]], ["d", [[1.5, "L"]]], ["l", "L"], 3, ["l"]],
)
def test_a_peers_malformed_structure_is_a_shape_error(wire):
    with pytest.raises(ShapeError):
        TreeDef.from_wire(wire)


def test_a_deep_structure_from_a_peer_is_refused():
    wire = "L"
    for _ in range(100):
        wire = ["l", [wire]]
    with pytest.raises(ShapeError, match="deeper"):
        TreeDef.from_wire(wire)


def test_tree_map_checks_structures():
    assert tree_map(lambda a, b: a + b, {"a": 1, "b": [2]}, {"a": 10, "b": [20]}) == {"a": 11, "b": [22]}
    with pytest.raises(ShapeError, match="differ"):
        tree_map(lambda a, b: a, {"a": 1}, {"a": [1]})
    with pytest.raises(ShapeError, match="too few"):
        unflatten(flatten([1, 2])[1], [1])


# ---- inputs, reveals and results in a job ------------------------------------------------------
PROTOCOLS = [
    ("rep3", ["alice", "bob", "carol"], {}),
    ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"}),
]


@pytest.mark.parametrize(("protocol", "parties", "opts"), PROTOCOLS, ids=["rep3", "semi2k"])
def test_a_list_of_dicts_in_and_out(protocol, parties, opts):
    async def main(job):
        accounts = await job.input("alice", lambda: ACCOUNTS)
        amount = job.input("bob", lambda: np.float64(100.0))
        # shapes and kinds known at every party without another await
        kinds = [(a["id"].shape, a["id"].fxp, a["deposit"].shape, a["deposit"].fxp) for a in accounts]
        out = [{"id": a["id"], "deposit": a["deposit"] - amount} for a in accounts]
        return kinds, await job.reveal(out)

    got = mpc.simulate(main, parties=parties, protocol=protocol, **opts)
    want = [{"id": a["id"], "deposit": a["deposit"] - 100.0} for a in ACCOUNTS]
    for party in parties:
        kinds, out = got[party]
        assert kinds == [((), False, (), True)] * 3
        assert [int(a["id"]) for a in out] == [a["id"] for a in want]
        np.testing.assert_allclose([a["deposit"] for a in out], [a["deposit"] for a in want], atol=1e-4)


def test_nested_arrays_tuples_and_none_keep_their_structure_and_dtypes():
    tree = {"w": np.arange(6.0).reshape(2, 3) / 7, "pair": (np.array([1, -2, 3]), np.array([True, False])), "none": None}

    async def main(job):
        t = await job.input("bob", lambda: tree)
        assert t["w"].shape == (2, 3) and t["pair"][0].shape == (3,) and t["none"] is None
        doubled = {"w": t["w"] * 2, "pair": (t["pair"][0] * 2, t["pair"][1]), "none": None, "public": 7}
        return await job.reveal(doubled, to="alice")

    got = mpc.simulate(main)
    out = got["alice"]
    np.testing.assert_allclose(out["w"], tree["w"] * 2, atol=1e-4)
    assert out["pair"][0].dtype == np.int64 and out["pair"][0].tolist() == [2, -4, 6]
    assert out["pair"][1].tolist() == [1, 0] and out["none"] is None and out["public"] == 7
    assert got["bob"] == {"w": None, "pair": (None, None), "none": None, "public": 7}


def test_a_bare_array_input_still_works_without_await_and_awaits_to_itself():
    async def main(job):
        x = job.input("alice", lambda: np.array([1.5, -2.0]))
        y = x * 2  # usable at once, as before
        same = await x
        return same is x, x.shape, await job.reveal(y)

    for ok, shape, y in mpc.simulate(main).values():
        assert ok and shape == (2,)
        np.testing.assert_allclose(y, [3.0, -4.0], atol=1e-4)


def test_dtype_int_applies_to_every_leaf_and_refuses_floats():
    async def main(job):
        t = await job.input("alice", lambda: {"a": np.array([1, 2]), "b": 3}, dtype=int)
        return t["a"].fxp, t["b"].fxp

    assert set(mpc.simulate(main).values()) == {(False, False)}

    async def floats(job):
        await job.input("alice", lambda: {"a": [1.5]}, dtype=int)

    with pytest.raises(mpc.JobAborted, match=r'leaf \["a"\]\[0\], declared int'):
        mpc.simulate(floats)


def test_binary_inputs_are_flagged_per_leaf_and_checked_at_the_owner():
    async def main(job):
        bare = job.input("alice", lambda: np.array([0.0, 1.0, 1.0]), binary=True)
        tree = await job.input("alice", lambda: {"y": np.array([1, 0]), "m": [np.array([True, False])]}, binary=True)
        plain = job.input("alice", lambda: np.ones(2))
        values = await job.reveal({"bare": bare, "tree": tree})
        return bare.binary, tree["y"].binary, tree["m"][0].binary, plain.binary, (bare * 2).binary, values

    for got in mpc.simulate(main).values():
        assert got[:5] == (True, True, True, False, False)
        np.testing.assert_array_equal(got[5]["bare"], [0.0, 1.0, 1.0])
        np.testing.assert_array_equal(got[5]["tree"]["m"][0], [1, 0])

    async def soft(job):
        await job.input("alice", lambda: {"labels": np.array([[0.0, 1.0], [0.5, 1.0]])}, binary=True)

    with pytest.raises(mpc.JobAborted, match=r'leaf \["labels"\], was declared binary=True but holds 0.5 at index \[1, 0\] \(1 of its 4 values'):
        mpc.simulate(soft)


def test_a_non_numeric_leaf_names_its_path():
    async def main(job):
        await job.input("alice", lambda: [{"id": 1, "deposit": 5.0}, {"id": 2, "name": "Bob"}])

    with pytest.raises(mpc.JobAborted, match=r'leaf \[1\]\["name"\], is str \'Bob\''):
        mpc.simulate(main)


def test_using_a_pytree_input_as_one_tensor_says_to_await_it():
    async def main(job):
        t = job.input("alice", lambda: {"a": np.ones(2)})
        return await job.reveal(t * 2)

    with pytest.raises(mpc.JobAborted, match="is a pytree of 1 leaves.*await job.input"):
        mpc.simulate(main)


def test_reveal_opens_a_pytree_input_that_was_not_awaited():
    async def main(job):
        return await job.reveal(job.input("carol", lambda: {"a": [1.25, 2.5], "b": (np.int32(4),)}))

    for out in mpc.simulate(main).values():
        np.testing.assert_allclose(out["a"], [1.25, 2.5])
        assert out["b"][0] == 4


def test_a_secret_anywhere_in_a_result_is_refused():
    async def main(job):
        x = await job.input("alice", lambda: {"a": [np.ones(1)]})
        return {"ok": 1, "deep": [Point(1, x["a"][0])]}

    with pytest.raises(mpc.JobAborted, match="returned a secret tensor"):
        mpc.simulate(main)


def test_secure_sum_takes_a_pytree_and_the_server_gets_the_clients_structure():
    def update(party):
        k = {"bob": 1.0, "carol": 2.0, "dave": 3.0}[party]
        return {"w": np.full((2, 3), k), "b": [np.float64(-k), np.array([k, 2 * k])]}

    async def main(job):
        if job.party == "alice":
            return await job.secure_sum(None, server="alice")
        return await job.secure_sum(update(job.party), server="alice")

    got = mpc.simulate(main, parties=["alice", "bob", "carol", "dave"], protocol="semi2k", dealer="trusted-first-party")
    assert got["bob"] is None and got["carol"] is None
    total = got["alice"]
    np.testing.assert_allclose(total["w"], np.full((2, 3), 6.0), atol=1e-4)
    assert np.shape(total["b"][0]) == () and abs(total["b"][0] + 6.0) < 1e-4
    np.testing.assert_allclose(total["b"][1], [6.0, 12.0], atol=1e-4)


def test_secure_sum_names_a_non_numeric_leaf():
    async def main(job):
        vec = None if job.party == "alice" else {"w": np.ones(2), "note": "hi"}
        return await job.secure_sum(vec, server="alice")

    with pytest.raises(mpc.JobAborted, match=r'leaf \["note"\] is str'):
        mpc.simulate(main, parties=["alice", "bob", "carol"], protocol="semi2k", dealer="trusted-first-party")
