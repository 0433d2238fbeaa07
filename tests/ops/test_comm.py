"""Sans-IO tests of declared communication: Ahead work, gather's merging, run_local."""

from __future__ import annotations

from mpcactors.ops._comm import Ahead, Exchange, gather, run_local


def test_ahead_computes_once_whoever_asks_first() -> None:
    calls: list[int] = []
    work = Ahead(lambda: calls.append(1) or len(calls))
    work()  # the driver, while messages travel
    work()
    assert work.result() == 1 and calls == [1]
    lazy = Ahead(lambda: calls.append(2) or "late")
    assert lazy.result() == "late" and calls == [1, 2]  # no driver ran it: the step does


def _pinger(me: str, peer: str, log: list[str], tag: str = "") -> object:
    """Two rounds; round 1's meanwhile prepares round 2's payload."""
    me += tag
    nxt = Ahead(lambda: log.append(f"{me} ahead") or f"{me}-2")
    got = yield Exchange(send={peer: f"{me}-1"}, recv=frozenset({peer}), meanwhile=nxt)
    log.append(f"{me} resumed")
    got2 = yield Exchange(send={peer: nxt.result()}, recv=frozenset({peer}))
    return got[peer], got2[peer]


def test_run_local_runs_meanwhile_before_resuming() -> None:
    log: list[str] = []
    res, rounds = run_local({"a": _pinger("a", "b", log), "b": _pinger("b", "a", log)})
    assert res == {"a": ("b-1", "b-2"), "b": ("a-1", "a-2")} and rounds == 2
    assert log.index("a ahead") < log.index("a resumed") and log.index("b ahead") < log.index("b resumed")


def test_gather_merges_the_sub_steps_meanwhile() -> None:
    log: list[str] = []

    def two(me: str, peer: str) -> object:
        return (yield from gather([_pinger(me, peer, log, "0"), _pinger(me, peer, log, "1")]))

    def relay(me: str, peer: str) -> object:
        # the outer driver sees one merged Exchange per round and runs its meanwhile only
        gen = two(me, peer)
        ex = next(gen)
        assert ex.meanwhile is not None
        ex.meanwhile()
        assert {f"{me}0 ahead", f"{me}1 ahead"} <= set(log)
        reply = yield Exchange(send=ex.send, recv=ex.recv)
        try:
            while True:
                ex = gen.send(reply)
                reply = yield ex
        except StopIteration as stop:
            return stop.value

    res, _ = run_local({"a": relay("a", "b"), "b": relay("b", "a")})
    assert res["a"] == [("b0-1", "b0-2"), ("b1-1", "b1-2")]
    for name in ("a0", "a1", "b0", "b1"):
        assert log.index(f"{name} ahead") < log.index(f"{name} resumed")


def test_an_exchange_without_meanwhile_merges_to_none() -> None:
    def plain(peer: str) -> object:
        got = yield Exchange(send={peer: 1}, recv=frozenset({peer}))
        return got[peer]

    gen = gather([plain("b"), plain("b")])
    assert next(gen).meanwhile is None
