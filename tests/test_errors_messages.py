"""Error messages say what happened, not bookkeeping (issue 13 point 4: the accepting side
said 'unavailable after 0 connect attempt(s)')."""

from __future__ import annotations

from mpcactors import PeerUnavailable


def test_an_accepting_side_does_not_count_zero_attempts():
    err = PeerUnavailable("alice", "127.0.0.1:7000", 0, "it did not connect within 60 s")
    assert str(err) == "peer 'alice' at 127.0.0.1:7000 unavailable: it did not connect within 60 s"
    assert "after 3 connect attempt(s)" in str(PeerUnavailable("bob", "127.0.0.1:7001", 3, "refused"))
