"""A closing node keeps reconnecting and resuming while it lingers (memory network, autojump clock).

The closer sends over an emulated WAN (50 ms one way), so its DATA frames are still in flight
when it leaves ``open_node``; the connection is then cut (by either side, just before the exit
or during the linger). Whichever side dials must redial, whichever side accepts must accept,
both resume from the last acknowledged seq, and the other party receives every message in
order, then the orderly CLOSE (not a PeerLost from ``peer_timeout_s``).
"""

from __future__ import annotations

import pytest
import trio

from mpcactors import PeerLost
from mpcactors._config import WanProfile
from mpcactors.link import MemoryNetwork, Node, open_node

from ._helpers import memory_cluster

N_MESSAGES = 40


async def _close_across_a_cut(closer: str, cutter: str, cut_before_exit: bool) -> list[int]:
    other = "bob" if closer == "alice" else "alice"
    # peer_timeout far beyond the linger: a PeerLost from the timeout cannot pass for the close.
    cfg = memory_cluster(peer_timeout_s=60.0, heartbeat_interval_s=0.5)
    net = MemoryNetwork()
    nodes: dict[str, Node] = {}
    received: list[int] = []
    errors: list[PeerLost] = []
    other_ready = trio.Event()

    async def receiver() -> None:
        async with open_node(cfg, other, network=net, linger_s=0.1, seed=2) as node:
            nodes[other] = node
            ch = node.channel(closer, "j", "c")
            other_ready.set()
            try:
                while True:
                    received.append(await ch.receive())
            except PeerLost as exc:
                errors.append(exc)

    def cut() -> None:
        peer = other if cutter == closer else closer
        assert nodes[cutter].drop_connection(peer)

    async def cut_later() -> None:
        await trio.sleep(0.02)  # mid-flight: nothing has reached the receiver yet
        cut()

    with trio.fail_after(100):  # beyond peer_timeout: the bug shows as lost messages, not a hang
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            async with open_node(
                cfg, closer, network=net, wan=WanProfile(latency_ms=50.0), linger_s=5.0, seed=1
            ) as node:
                nodes[closer] = node
                await other_ready.wait()
                ch = node.channel(other, "j", "c")
                for i in range(N_MESSAGES):
                    await ch.send(i)
                    if i % 8 == 7:
                        await trio.sleep(0.001)  # several DATA frames in flight
                if cut_before_exit:
                    await trio.sleep(0.02)
                    cut()
                else:
                    nursery.start_soon(cut_later)
                t_exit = trio.current_time()
            lingered = trio.current_time() - t_exit
    assert received == list(range(N_MESSAGES))
    assert len(errors) == 1 and "closed the link" in str(errors[0])
    stats = nodes[closer].statistics().peers[other]
    assert stats.reconnects >= 1 and stats.retransmitted_frames >= 1
    assert lingered < 5.0  # it left as soon as everything was acknowledged
    return received


@pytest.mark.trio
@pytest.mark.parametrize("cutter", ["alice", "bob"])
@pytest.mark.parametrize("cut_before_exit", [False, True], ids=["during_linger", "before_exit"])
async def test_closing_dialer_redials_and_delivers_everything(
    autojump_clock: trio.abc.Clock, cutter: str, cut_before_exit: bool
) -> None:
    assert await _close_across_a_cut("alice", cutter, cut_before_exit) == list(range(N_MESSAGES))


@pytest.mark.trio
@pytest.mark.parametrize("cutter", ["alice", "bob"])
@pytest.mark.parametrize("cut_before_exit", [False, True], ids=["during_linger", "before_exit"])
async def test_closing_acceptor_accepts_the_redial_and_delivers_everything(
    autojump_clock: trio.abc.Clock, cutter: str, cut_before_exit: bool
) -> None:
    assert await _close_across_a_cut("bob", cutter, cut_before_exit) == list(range(N_MESSAGES))


@pytest.mark.trio
async def test_linger_gives_up_when_the_peer_stays_away(autojump_clock: trio.abc.Clock) -> None:
    """A partitioned peer: the closer lingers at most linger_s, then leaves without hanging."""
    cfg = memory_cluster(peer_timeout_s=60.0, heartbeat_interval_s=0.5)
    net = MemoryNetwork()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            bob_up = trio.Event()

            async def bob() -> None:
                async with open_node(cfg, "bob", network=net, linger_s=0.1) as node:
                    bob_up.set()
                    with pytest.raises(PeerLost):
                        await node.channel("alice", "j", "c").receive()

            nursery.start_soon(bob)
            async with open_node(
                cfg, "alice", network=net, wan=WanProfile(latency_ms=50.0), linger_s=2.0
            ) as alice:
                await bob_up.wait()
                await alice.channel("bob", "j", "c").send("never")
                await trio.sleep(0.01)
                net.partition("bob")
                t_exit = trio.current_time()
            lingered = trio.current_time() - t_exit
            assert 2.0 - 1e-6 <= lingered < 3.5
            nursery.cancel_scope.cancel()
