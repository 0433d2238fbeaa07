"""Steps run in a child process (mpcactors/_offload.py): same results, typed errors, no orphans.

The HE triples (matrix and elementwise) are the offloaded steps; their children are real ``python -m
mpcactors._offload`` processes talking our wire codec over pipes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import mpcactors as mpc
from mpcactors._offload import OffloadError, Spares, run_in_process
from mpcactors.ops import _he_triples as he
from mpcactors.ops._comm import run_local
from mpcactors.ops._he_seal import HeError

pytestmark = [
    pytest.mark.skipif(not he.available(), reason="TenSEAL (the he extra) does not import"),
    pytest.mark.timeout(120),
]
U64 = np.uint64


def _children() -> list[int]:
    """PIDs of this process's offload children (Linux /proc)."""
    me = str(os.getpid())
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"mpcactors._offload" in cmd:
            found.append(int(d.name))
    return found


def _args(peer: str, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {"peer": peer, "a": rng.integers(0, 1 << 64, (9, 20), dtype=U64),
            "b": rng.integers(0, 1 << 64, (20, 7), dtype=U64), "key": bytes([seed]) * 32}


def test_an_offloaded_triple_matches_numpy_and_leaves_no_child() -> None:
    args = {"alice": _args("bob", 1), "bob": _args("alice", 2)}
    res, rounds = run_local({p: run_in_process("he_cross_terms", a) for p, a in args.items()})
    mm = lambda x, y: np.array((x.astype(object) @ y.astype(object)) % (1 << 64), dtype=U64)
    want = mm(args["alice"]["a"], args["bob"]["b"]) + mm(args["bob"]["a"], args["alice"]["b"])
    with np.errstate(over="ignore"):
        assert np.array_equal(res["alice"] + res["bob"], want)
    assert rounds == he.he_rounds(9, 20, 7)
    assert _children() == []


def test_the_childs_error_is_raised_typed_and_the_child_ends() -> None:
    step = run_in_process("he_cross_terms", _args("bob", 3))
    first = next(step)
    assert set(first.send) == {"bob"} and first.recv == frozenset({"bob"})
    assert len(_children()) == 1
    with pytest.raises(HeError, match="round 0 message from 'bob' is list"):
        step.send({"bob": [1, 2]})  # a malformed peer message, checked in the child
    assert _children() == []


def test_a_child_that_dies_fails_the_step_with_its_exit_code() -> None:
    step = run_in_process("he_cross_terms", _args("bob", 4))
    first = next(step)
    (child,) = _children()
    os.kill(child, 9)
    with pytest.raises(OffloadError, match=r"died \(exit code -9\)"):
        step.send({"bob": first.send["bob"]})
    assert _children() == []


def test_closing_the_step_kills_the_child() -> None:
    """A cancelled job closes its steps: the child does not outlive it."""
    step = run_in_process("he_cross_terms", _args("bob", 5))
    next(step)
    assert len(_children()) == 1
    step.close()
    assert _children() == []


def test_without_a_python_to_start_the_step_computes_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from structlog.testing import capture_logs

    import mpcactors._offload as offload

    monkeypatch.setattr(offload.sys, "executable", "/nonexistent/python")
    args = {"alice": _args("bob", 7), "bob": _args("alice", 8)}
    with capture_logs() as logs:
        res, _ = run_local({p: run_in_process("he_cross_terms", a) for p, a in args.items()})
    assert [e["event"] for e in logs].count("offload_unavailable") == 2
    direct, _ = run_local({p: he.offloaded_cross_terms(**a) for p, a in args.items()})  # type: ignore[arg-type]
    assert all(np.array_equal(res[p], direct[p]) for p in args)


def test_only_named_steps_run() -> None:
    with pytest.raises(KeyError, match="no offloadable step 'os.system'"):
        next(run_in_process("os.system", {}))


def test_simulate_offloads_big_he_triples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the runtime: a triple over the threshold runs in children, same result."""
    import mpcactors._runtime as runtime

    monkeypatch.setattr(he, "_OFFLOAD_MS", 0.0)
    used: list[str] = []

    def counted(name, kwargs, spares=None):  # type: ignore[no-untyped-def]
        used.append(name)
        return run_in_process(name, kwargs, spares)

    monkeypatch.setattr(runtime, "run_in_process", counted)
    rng = np.random.default_rng(6)
    a, b = rng.uniform(-2, 2, (12, 30)), rng.uniform(-2, 2, (30, 5))

    async def program(job):  # type: ignore[no-untyped-def]
        return await job.reveal(job.input("alice", a) @ job.input("bob", b))

    out = mpc.simulate(program, protocol="semi2k", dealer="none", matrix_triples="he")
    for got in out.values():
        np.testing.assert_allclose(got, a @ b, atol=1e-3)
    assert used == ["he_cross_terms", "he_cross_terms"] and _children() == []


def test_spares_start_one_child_ahead_and_close_kills_it() -> None:
    spares = Spares()
    spares.warm()
    spares.warm()  # one waits already: no second
    assert len(_children()) == 1
    spares.close()
    assert _children() == []
    spares.warm()  # closed: starts none
    assert _children() == []


def test_a_step_takes_the_spare_and_skips_a_dead_one() -> None:
    spares = Spares()
    spares.warm()
    (pid,) = _children()
    step = run_in_process("he_cross_terms", _args("bob", 3), spares)
    next(step)
    assert _children() == [pid]  # the spare computes; none started for the next step
    step.close()
    assert _children() == []
    spares.warm()
    (dead,) = _children()
    os.kill(dead, 9)
    os.waitid(os.P_PID, dead, os.WEXITED | os.WNOWAIT)  # dead (not yet reaped): take() skips it
    args = {"alice": _args("bob", 1), "bob": _args("alice", 2)}
    res, _ = run_local({"alice": run_in_process("he_cross_terms", args["alice"], spares),
                        "bob": run_in_process("he_cross_terms", args["bob"])})
    direct, _ = run_local({p: he.offloaded_cross_terms(**a) for p, a in args.items()})  # type: ignore[arg-type]
    assert all(np.array_equal(res[p], direct[p]) for p in args)
    assert _children() == []
    spares.close()


def test_simulate_offloads_big_elementwise_triples(monkeypatch: pytest.MonkeyPatch) -> None:
    """mul_triples = "he": a triple over the threshold runs in children, the node's spare taken."""
    import mpcactors._runtime as runtime
    from mpcactors.ops import _he_simd as hs

    monkeypatch.setattr(hs, "_OFFLOAD_MS", 0.0)
    used: list[tuple[str, bool]] = []

    def counted(name, kwargs, spares=None):  # type: ignore[no-untyped-def]
        used.append((name, spares is not None))
        return run_in_process(name, kwargs, spares)

    monkeypatch.setattr(runtime, "run_in_process", counted)
    x, y = np.linspace(-3, 3, 50), np.linspace(2, -2, 50)

    async def program(job):  # type: ignore[no-untyped-def]
        return await job.reveal(job.input("alice", x) * job.input("bob", y))

    out = mpc.simulate(program, protocol="semi2k", dealer="none", mul_triples="he")
    for got in out.values():
        np.testing.assert_allclose(got, x * y, atol=1e-4)
    assert used == [("he_simd_cross", True)] * 2 and _children() == []
