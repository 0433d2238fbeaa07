"""Error messages say what happened, not bookkeeping (issue 13 point 4: the accepting side
said 'unavailable after 0 connect attempt(s)')."""

from __future__ import annotations

from mpcactors import PeerUnavailable


def test_an_accepting_side_does_not_count_zero_attempts():
    err = PeerUnavailable("alice", "127.0.0.1:7000", 0, "it did not connect within 60 s")
    assert str(err) == "peer 'alice' at 127.0.0.1:7000 unavailable: it did not connect within 60 s"
    assert "after 3 connect attempt(s)" in str(PeerUnavailable("bob", "127.0.0.1:7001", 3, "refused"))


def test_a_job_failure_is_judged_by_the_one_exception_inside_task_groups() -> None:
    """A program's own task group wraps a peer's abort; the job reports that abort (party and
    cause), not "ExceptionGroup: ... (1 sub-exception)" (a flaky FL error test caught it)."""
    from mpcactors import JobAborted
    from mpcactors._runtime import _sole

    abort = JobAborted("sim", "c1", "ConfigError: [x] x has 2 entries for 4 clients")
    assert _sole(ExceptionGroup("outer", [ExceptionGroup("inner", [abort])])) is abort
    two = ExceptionGroup("two", [ValueError("a"), ValueError("b")])
    assert _sole(two) is two  # several failures stay a group
    plain = ValueError("x")
    assert _sole(plain) is plain
