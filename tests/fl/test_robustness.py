"""Dropouts, thresholds, checkpoint/resume and clear errors for bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpcactors import AggregationError, ConfigError, JobAborted, MpcError, ShapeError
from mpcactors.fl import (
    FedAdam,
    FLModel,
    SecureAggregator,
    latest_checkpoint,
    load_checkpoint,
    logistic_regression,
)

from ._data import CLIENTS, SERVER, blobs, run
from .test_training import close, reference

pytestmark = pytest.mark.timeout(120)
SHARDS, _ = blobs()
X = {c: SHARDS[c][0] for c in CLIENTS}
Y = {c: SHARDS[c][1] for c in CLIENTS}


def program(model: Any = None, x: Any = X, y: Any = Y, device_list: Any = CLIENTS, server: str = SERVER,
            aggregator: Any = None, strategy: Any = None, **kw: Any) -> Any:
    async def main(job: Any) -> Any:
        fl = FLModel(job, server=server, device_list=device_list, aggregator=aggregator, strategy=strategy,
                     model=model or (lambda: logistic_regression(5, 3)))
        return await fl.fit(x=x, y=y, **kw)

    return main


def test_dropouts_mid_round_leave_the_survivors_sum_and_training_goes_on() -> None:
    """c2 goes silent after SHARE_KEYS in round 1 (its masks are rebuilt from the others'
    shares), c4 after its masked input in round 3 (its update counts); every round completes,
    and the result is FedAvg over exactly the survivors."""
    drops = {1: {"c2": "share_keys"}, 3: {"c4": "masked_input"}}
    out = run(program(epochs=5, aggregator=SecureAggregator(threshold=3, stage_timeout_s=3),
                      dropout_after=drops))
    h = out[SERVER]
    assert [r.survivors for r in h.rounds] == [
        tuple(CLIENTS), ("c1", "c3", "c4"), tuple(CLIENTS), tuple(CLIENTS), tuple(CLIENTS)]
    assert close(h.weights, reference(5, 1, drop={1: {"c2"}}), 1e-7)
    assert not close(h.weights, reference(5, 1), 1e-4)
    for c in CLIENTS:  # the dropped clients came back for the next rounds and got the model
        assert close(out[c].weights, h.weights, 1e-15)


def test_below_threshold_the_round_fails_with_aggregation_error_and_reveals_nothing() -> None:
    drops = {1: {"c2": "share_keys", "c3": "share_keys"}}
    with pytest.raises(MpcError) as info:
        run(program(epochs=3, aggregator=SecureAggregator(threshold=3, stage_timeout_s=3), dropout_after=drops))
    err = info.value
    assert isinstance(err, (AggregationError, JobAborted)), repr(err)
    assert "only 2 client(s) answered masked_input, below the threshold 3" in str(err)
    assert "no sum is revealed" in str(err)


def test_resume_from_a_round_checkpoint_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    """FedAdam (server state), client sampling and minibatches: 3 rounds, stop, resume to 6."""
    kw = {"local_epochs": 2, "batch_size": 16, "fraction_fit": 0.75, "min_fit_clients": 3, "seed": 7}
    agg = SecureAggregator(threshold=2)

    def go(epochs: int, folder: Path, resume: bool = False) -> Any:
        return run(program(epochs=epochs, aggregator=agg, strategy=FedAdam(learning_rate=0.05),
                           checkpoint_dir=folder, resume=resume, **kw))

    whole = go(6, tmp_path / "a")[SERVER]
    first = go(3, tmp_path / "b")[SERVER]
    assert latest_checkpoint(tmp_path / "b").name == "round-00002.npz"
    ck = load_checkpoint(tmp_path / "b" / "round-00002.npz")
    assert ck.round == 2 and close(ck.weights, first.weights, 0.0 + 1e-300) and set(ck.strategy_state) == {"m", "v"}
    out = go(6, tmp_path / "b", resume=True)
    resumed = out[SERVER]
    assert resumed.resumed_from == 3 and [r.round for r in resumed.rounds] == list(range(6))
    assert all(np.array_equal(a, b) for a, b in zip(resumed.weights, whole.weights, strict=True))
    assert [r.sampled for r in resumed.rounds] == [r.sampled for r in whole.rounds]
    assert all(np.array_equal(a, b) for a, b in zip(out["c1"].weights, whole.weights, strict=True))
    assert not close(first.weights, whole.weights, 1e-3)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "b" / "round-00005.npz").stat().st_mode & 0o777 == 0o600


def test_bad_inputs_raise_errors_naming_the_party_and_cause() -> None:
    with pytest.raises(MpcError, match=r"\['mallory'\] are not parties"):
        run(program(epochs=1, device_list=["c1", "mallory"]))
    with pytest.raises(MpcError, match="cannot also be a client"):
        run(program(epochs=1, device_list=[SERVER, "c1"]))
    with pytest.raises(MpcError, match="x has 2 entries for 4 clients"):
        run(program(epochs=1, x=[X["c1"], X["c2"]], y=[Y["c1"], Y["c2"]]))
    with pytest.raises(MpcError, match=r"\['zed'\], which are not clients"):
        run(program(epochs=1, x={**X, "zed": X["c1"]}))
    bad_y = {**Y, "c3": Y["c3"][:-5]}
    with pytest.raises(MpcError, match=r"'c3'.*x has 240 rows but y has 235") as info:
        run(program(epochs=1, y=bad_y))
    assert isinstance(info.value, (ShapeError, JobAborted))

    def mismatched() -> Any:  # c2 built a model with 6 features: its weights differ in shape
        return logistic_regression(5, 3)

    async def main(job: Any) -> Any:
        model = (lambda: logistic_regression(6, 3)) if job.party == "c2" else mismatched
        fl = FLModel(job, server=SERVER, device_list=CLIENTS, model=model)
        return await fl.fit(x=X, y=Y, epochs=1)

    with pytest.raises(MpcError, match=r"client 'c2': the server 'srv' sent 18 weights, this party's model has 21"):
        run(main)
    for kw, key in (({"epochs": 0}, "epochs"), ({"epochs": 1, "fraction_fit": 0.0}, "fraction_fit"),
                    ({"epochs": 1, "batch_size": 0}, "batch_size"), ({"epochs": 1, "resume": True}, "resume")):
        with pytest.raises(MpcError, match=rf"\[{key}\]"):
            run(program(**kw))
    for kw in ({"threshold": 1}, {"clip_norm": -1.0}, {"threshold": 1.5}):
        with pytest.raises(ConfigError):
            SecureAggregator(**kw)
    with pytest.raises(ConfigError, match="fractional bits"):
        SecureAggregator(ring_bits=32).quantisation(4)


def test_early_stopping_state_survives_resume(tmp_path: Path) -> None:
    """Best round 0 (min_delta so large nothing later counts), patience 3: the uninterrupted run
    stops after record 3 with round 0's weights; so does a run interrupted after 2 rounds and
    resumed, because the checkpoint carries the callback's state (a fresh one would stop later,
    with another best)."""
    from mpcactors.fl import EarlyStopping

    def go(epochs: int, folder: Path, resume: bool = False) -> Any:
        stop = EarlyStopping("val_loss", patience=3, min_delta=10.0)
        out = run(program(epochs=epochs, validation_data=(X, Y), callbacks=[stop],
                          checkpoint_dir=folder, resume=resume))[SERVER]  # fmt: skip
        return out, stop

    whole, stop_whole = go(8, tmp_path / "a")
    go(2, tmp_path / "b")
    resumed, stop_resumed = go(8, tmp_path / "b", resume=True)
    assert whole.stopped_early and resumed.stopped_early and resumed.resumed_from == 2
    assert stop_whole.best_round == stop_resumed.best_round == 0
    assert [r.round for r in resumed.rounds] == [r.round for r in whole.rounds] == [0, 1, 2, 3]
    assert all(np.array_equal(a, b) for a, b in zip(resumed.weights, whole.weights, strict=True))
    assert close(whole.weights, reference(1, 1), 1e-7)


def test_plain_aggregation_records_who_arrived() -> None:
    from mpcactors.fl import PlainAggregator

    out = run(program(epochs=3, aggregator=PlainAggregator(stage_timeout_s=2),
                      dropout_after={1: {"c2": "start"}}))  # fmt: skip
    h = out[SERVER]
    assert [r.survivors for r in h.rounds] == [tuple(CLIENTS), ("c1", "c3", "c4"), tuple(CLIENTS)]
    assert close(h.weights, reference(3, 1, drop={1: {"c2"}}), 1e-12)
