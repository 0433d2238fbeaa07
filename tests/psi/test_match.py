"""Matching double-blinded values and expanding duplicate keys into aligned join rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcactors.psi._csvjoin import expand_inner, expand_outer
from mpcactors.psi._match import _REC, match_arrays
from mpcactors.psi._prepare import PreparedFiles, prepare
from mpcactors.psi._source import IdsSpec


def recs(values: list[tuple[int, int]], pos: list[int]) -> np.ndarray:
    r = np.empty(len(values), dtype=_REC)
    r["hi"] = [v[0] for v in values]
    r["lo"] = [v[1] for v in values]
    r["pos"] = pos
    return r


@settings(max_examples=80, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 5), st.integers(0, 5))), st.sets(st.tuples(st.integers(0, 5), st.integers(0, 5))))
def test_match_arrays_equals_set_intersection(a: set, b: set) -> None:
    # tiny value ranges force many equal 8-byte prefixes with different low halves
    a_l, b_l = sorted(a, key=lambda _: os.urandom(2)), sorted(b, key=lambda _: os.urandom(2))
    own_pos, peer_pos = match_arrays(recs(a_l, list(range(len(a_l)))), recs(b_l, list(range(100, 100 + len(b_l)))))
    pairs = {(a_l[i], b_l[j - 100]) for i, j in zip(own_pos, peer_pos)}
    assert {x for x, _ in pairs} == a & b
    assert all(x == y for x, y in pairs)
    assert len(own_pos) == len(a & b)
    matched = [a_l[i] for i in own_pos]
    assert matched == sorted(matched)  # pairs come out in value order (the agreed order)


def test_match_arrays_random_large() -> None:
    rng = np.random.default_rng(1)
    common = rng.integers(0, 2**63, size=(500, 2), dtype=np.uint64)
    a = np.concatenate([common, rng.integers(0, 2**63, size=(3000, 2), dtype=np.uint64)])
    b = np.concatenate([rng.integers(0, 2**63, size=(2000, 2), dtype=np.uint64), common])
    ra, rb = np.empty(len(a), _REC), np.empty(len(b), _REC)
    ra["hi"], ra["lo"], ra["pos"] = a[:, 0], a[:, 1], np.arange(len(a))
    rb["hi"], rb["lo"], rb["pos"] = b[:, 0], b[:, 1], np.arange(len(b))
    own, peer = match_arrays(ra, rb)
    assert sorted(own.tolist()) == list(range(500))
    assert sorted(peer.tolist()) == list(range(2000, 2500))
    empty = match_arrays(ra[:0], rb)
    assert len(empty[0]) == 0


def test_expansion_aligns_every_pair_once(tmp_path: Path) -> None:
    """Matcher rows r (a per key) and other rows s (b per key) zip to all a*b pairs per key."""
    left = ["k1", "k2", "k1", "k3", "k1", "k4"]  # k1 x3, k2 x1, k3 x1
    right = ["k2", "k1", "k2", "k1", "k3", "k5"]  # k1 x2, k2 x2, k3 x1
    fl = PreparedFiles(tmp_path / "l", prepare(IdsSpec(left), str(tmp_path / "l"), os.urandom(32)))
    fr = PreparedFiles(tmp_path / "r", prepare(IdsSpec(right), str(tmp_path / "r"), os.urandom(32)))
    keys = ["k1", "k2", "k3"]
    pos_l = np.array([int(fl.row_pos[left.index(k)]) for k in keys])
    pos_r = np.array([int(fr.row_pos[right.index(k)]) for k in keys])
    rows_l = expand_outer(fl, pos_l, fr.counts(pos_r))
    rows_r = expand_inner(fr, pos_r, fl.counts(pos_l))
    pairs = list(zip(rows_l.tolist(), rows_r.tolist()))
    expected = sorted((i, j) for i, x in enumerate(left) for j, y in enumerate(right) if x == y)
    assert sorted(pairs) == expected
    assert all(left[i] == right[j] for i, j in pairs)
    # rows of one key are consecutive, in the agreed key order
    assert [left[i] for i, _ in pairs] == ["k1"] * 6 + ["k2"] * 2 + ["k3"]
