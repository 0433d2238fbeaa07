"""Protocol set-ups every scheduler test runs over: (protocol, parties, options)."""

from __future__ import annotations

import pytest

SETUPS = {
    "rep3": ("rep3", ["alice", "bob", "carol"], {}),
    "semi2k-2+dealer": ("semi2k", ["alice", "bob", "carol"], {"dealer": "carol"}),
    "semi2k-2-tfp": ("semi2k", ["alice", "bob"], {"dealer": "trusted-first-party"}),
    "semi2k-3+dealer": ("semi2k", ["alice", "bob", "carol", "dave"], {"dealer": "dave"}),
    "semi2k-4+dealer": ("semi2k", ["alice", "bob", "carol", "dave", "erin"], {"dealer": "erin"}),
}


@pytest.fixture(params=list(SETUPS), ids=list(SETUPS))
def setup(request: pytest.FixtureRequest) -> tuple[str, list[str], dict]:
    return SETUPS[request.param]


@pytest.fixture(params=["rep3", "semi2k-2+dealer"])
def small_setup(request: pytest.FixtureRequest) -> tuple[str, list[str], dict]:
    return SETUPS[request.param]
