"""The server's view of one FL client in a round is a masked vector uniform over the ring and
independent of the client's update: the uniformity checks of tests/secagg on a real FLModel
round contribution, at the quantisation SecureAggregator picks. The same checks reject the
client's unmasked (quantised) update, so the test can fail."""

from __future__ import annotations

import numpy as np
import structlog

from mpcactors.fl import SecureAggregator, linear_regression
from mpcactors.fl._adapter import flatten
from mpcactors.fl._client import update_vector
from mpcactors.secagg import Quantizer, SecAggParams, Stage

from ..secagg._sim import simulate
from ..secagg.test_privacy import N, failed_checks


def fl_update() -> np.ndarray:
    """Client round vector [n d, n, n loss] of a linear model with N - 3 features (length N)."""
    rng = np.random.default_rng(11)
    d = N - 3
    x, y = rng.normal(size=(40, d)), rng.normal(size=40)
    model = linear_regression(d, learning_rate=1e-3)
    w = flatten(model.get_weights())
    vec = update_vector(model, (x, y), w, epochs=2, batch_size=None, seed=1, proximal_mu=0.0,
                        clip_norm=100.0, max_samples=1 << 20, log=structlog.get_logger())  # fmt: skip
    assert len(vec) == N and np.count_nonzero(vec) > N // 2
    return vec


def test_the_server_sees_a_uniform_vector_independent_of_the_update() -> None:
    agg = SecureAggregator()
    clip, frac = agg.quantisation(3)
    q = Quantizer(clip, frac, agg.ring_bits)
    params = SecAggParams(job="j", tag="fl/fit1/round-0", threshold=2, quantizer=q)
    rng = np.random.default_rng(5)
    update = fl_update()
    others = {"bob": 100 * rng.normal(size=N), "carol": 100 * rng.normal(size=N)}

    def seen(x: np.ndarray) -> np.ndarray:
        server, _, log = simulate(params, {"alice": x, **others})
        total = q.quantise(x)[0] + sum(q.quantise(v)[0] for v in others.values())
        assert np.array_equal(server.result, q.dequantise(total))  # the server gets the sum
        return np.asarray(log[("alice", Stage.MASKED_INPUT.value)]["y"])

    y0, y1 = seen(np.zeros(N)), seen(update)
    assert failed_checks(y0, y1, update, agg.ring_bits) == set()
    plain0, plain1 = q.quantise(np.zeros(N))[0], q.quantise(update)[0]
    assert failed_checks(plain0, plain1, update, agg.ring_bits) >= {"bit balance", "same distribution"}
