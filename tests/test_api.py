"""The public API is small on purpose: this pins it (add names deliberately, never rename)."""

from __future__ import annotations

import numpy as np

import mpcactors
import mpcactors.scheduler
from mpcactors.scheduler._numpy import _UFUNCS
from mpcactors.scheduler._opset import BUILDERS

TOP_LEVEL = {
    "AggregationError", "AuthenticationError", "ClusterConfig", "ConfigError", "Job", "JobAborted",
    "JobError", "JobStatistics", "JobTimeout", "LinkError", "LinkOptions", "MpcError", "Node",
    "PeerLost", "PeerUnavailable", "ProtocolError", "PsiError", "SecretTensor", "ShapeError",
    "WanProfile", "absolute", "argmax", "concatenate", "equal", "exp", "greater", "greater_equal",
    "jit", "less", "less_equal", "load_config", "log", "max", "maximum", "mean", "min", "minimum", "ones",
    "open_node", "reciprocal", "relu", "rsqrt", "sigmoid", "sign", "simulate", "simulate_async",
    "sqrt", "stack", "sum", "tanh", "where", "zeros",
}


def test_top_level_names_are_pinned():
    assert set(mpcactors.__all__) == TOP_LEVEL
    for name in TOP_LEVEL:
        assert hasattr(mpcactors, name), name


def test_top_level_names_load_on_first_use():
    """``import mpcactors`` loads no runtime (an offload child imports one op module), and every
    public name resolves to its defining module's object; unknown names are AttributeErrors."""
    import subprocess
    import sys

    code = "import sys, mpcactors; print(sorted(m for m in ('mpcactors._runtime', 'mpcactors.scheduler') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    assert set(mpcactors._EXPORTS) == TOP_LEVEL
    from mpcactors._simulate import simulate

    assert mpcactors.simulate is simulate and "simulate" in dir(mpcactors)
    try:
        mpcactors.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name resolved")


def test_scheduler_names_are_pinned():
    assert set(mpcactors.scheduler.__all__) == {
        "Executor", "Job", "JobSettings", "JobStatistics", "PeerJobStatistics", "SecretTensor",
    }


def test_every_numpy_ufunc_we_claim_has_a_secure_builder():
    for ufunc, name in _UFUNCS.items():
        assert name == "positive" or name in BUILDERS, ufunc


def test_the_same_functions_work_on_plain_arrays():
    x = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(mpcactors.sigmoid(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(mpcactors.maximum(x, 0.0), np.maximum(x, 0.0))
    np.testing.assert_array_equal(mpcactors.where(x > 0, x, 0.0), np.where(x > 0, x, 0.0))
