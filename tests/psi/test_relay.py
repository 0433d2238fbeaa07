"""Shared-memory lanes of the shard relay: exact round trips, fallbacks, clean-up."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mpcactors.ops._comm import Exchange
from mpcactors.psi._relay import ShardLanes, _Ref


def test_lane_round_trip_moves_big_arrays_and_keeps_the_rest() -> None:
    lanes = ShardLanes.create(size=1 << 20, min_bytes=1024)
    if lanes is None:
        pytest.skip("no shared memory on this machine")  # (the relay then pickles)
    child = ShardLanes.attach(lanes.names)
    try:
        rng = np.random.default_rng(3)
        big = rng.integers(0, 256, (4096, 64), dtype=np.uint8)
        words = rng.integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64)
        small = np.arange(5, dtype=np.int32)
        too_big = rng.integers(0, 256, 2 << 20, dtype=np.uint8)  # does not fit: pickled
        msg = ("round", Exchange(send={"bob": {"u": big, "w": words, "s": small, "n": 7, "b": b"x"},
                                      "carol": too_big}, recv=frozenset({"bob"})))
        packed = lanes.to_child.pack(msg)
        ex = packed[1]
        assert isinstance(ex.send["bob"]["u"], _Ref) and isinstance(ex.send["bob"]["w"], _Ref)
        assert ex.send["bob"]["s"] is small and ex.send["carol"] is too_big
        got = child.to_child.unpack(packed)
        assert got[0] == "round" and got[1].recv == frozenset({"bob"})
        out = got[1].send["bob"]
        assert np.array_equal(out["u"], big) and out["u"].shape == big.shape
        assert out["w"].dtype == np.uint64 and np.array_equal(out["w"], words)
        assert out["n"] == 7 and out["b"] == b"x" and np.array_equal(got[1].send["carol"], too_big)
        # the reader's arrays are copies: the writer may reuse the lane for the next message
        lanes.to_child.pack({"x": np.zeros_like(big)})
        assert np.array_equal(out["u"], big)
    finally:
        child.close()
        lanes.close()
    assert not os.path.exists(f"/dev/shm/{lanes.names.to_child}")
    assert not os.path.exists(f"/dev/shm/{lanes.names.to_parent}")


def test_no_lanes_without_room(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcactors.psi import _relay

    monkeypatch.setattr(_relay, "_SHM_DIR", "/nonexistent/shm")
    assert ShardLanes.create(size=1 << 20) is None
