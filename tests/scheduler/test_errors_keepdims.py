"""numpy's keepdims on every reduction (issue 13 point 11): `mpc.max(z, axis=1, keepdims=True)`
raised TypeError."""

from __future__ import annotations

import numpy as np
import pytest

import mpcactors as mpc

Z = np.array([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]])


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_keepdims_on_every_reduction_matches_numpy(axis):
    async def program(job):
        z = await job.input("alice", Z)  # awaited: its shape is known at every party
        outs = {
            "mpc.max": mpc.max(z, axis=axis, keepdims=True),
            "mpc.min": mpc.min(z, axis=axis, keepdims=True),
            "mpc.argmax": mpc.argmax(z, axis=axis, keepdims=True),
            "mpc.sum": mpc.sum(z, axis=axis, keepdims=True),
            "mpc.mean": mpc.mean(z, axis=axis, keepdims=True),
            "z.max": z.max(axis=axis, keepdims=True),
            "z.min": z.min(axis=axis, keepdims=True),
            "z.argmax": z.argmax(axis=axis, keepdims=True),
            "np.max": np.max(z, axis=axis, keepdims=True),
            "np.min": np.min(z, axis=axis, keepdims=True),
            "np.argmax": np.argmax(z, axis=axis, keepdims=True),
        }
        shapes = {k: v.shape for k, v in outs.items()}
        return shapes, await job.reveal(outs)

    shapes, got = mpc.simulate(program, parties=["alice", "bob", "carol"], protocol="rep3", timeout=60)["alice"]
    for name, value in got.items():
        fn = name.split(".")[1]
        want = getattr(np, fn)(Z, axis=axis, keepdims=True)
        assert shapes[name] == want.shape, (name, shapes[name], want.shape)
        np.testing.assert_allclose(value, want, atol=1e-3, err_msg=name)


def test_keepdims_of_a_whole_reduction_needs_the_shape():
    async def program(job):
        z = job.input("alice", lambda: Z)  # not awaited: its shape is not known yet anywhere
        return mpc.max(z, keepdims=True).shape

    with pytest.raises(mpc.JobAborted, match=r"ShapeError: max\(axis=None, keepdims=True\) needs the shape .* await the tensor"):
        mpc.simulate(program, parties=["alice", "bob", "carol"], protocol="rep3", timeout=60)
