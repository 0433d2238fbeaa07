"""Waiting for a state instead of for time.

Tests that need "until the link is connected again" or "until the server has counted the
rejection" wait for that state under a deadline: the wait ends as soon as the state holds, and
fails loudly (TimeoutError) only if it never does, however slow the machine is. A sleep of a
fixed length followed by an assert is what this replaces (it fails on a busy machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

__all__ = ["until", "until_sync"]


async def until(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "") -> None:
    """Return as soon as ``predicate()`` is true; raise TimeoutError after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.005)
    except TimeoutError as exc:
        raise TimeoutError(f"not reached within {timeout} s: {what or predicate!r}") from exc


def until_sync(predicate: Callable[[], object], *, timeout: float = 60.0, what: str = "") -> None:
    """The same for plain (process-driving) tests: poll ``predicate`` until true or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout} s: {what or predicate!r}")
        time.sleep(0.01)
