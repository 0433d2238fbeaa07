"""A peer process killed mid-job: PeerLost within peer_timeout; other peers are unaffected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mpcactors import PeerLost, load_config
from mpcactors._certs import generate_certs
from mpcactors.link import Node, open_node

from .._waiting import until
from ._helpers import free_ports

PEER_TIMEOUT = 2.0


def write_cluster(tmp: Path) -> Path:
    ports = dict(zip(("alice", "bob", "carol"), free_ports(3)))
    lines = [
        'cluster = "kill-test"',
        'protocol = "rep3"',
        "[tls]",
        'ca_cert = "ca.pem"',
        'ca_key = "ca.key"',
        "[link]",
        "connect_retry_times = 50",
        "connect_retry_interval_ms = 100",
        "connect_timeout_s = 30",
        f"peer_timeout_s = {PEER_TIMEOUT}",
        "heartbeat_interval_s = 0.25",
    ]
    for party, port in ports.items():
        lines += [f"[parties.{party}]", f'address = "127.0.0.1:{port}"',
                  f'cert = "{party}.pem"', f'key = "{party}.key"']  # fmt: skip
    path = tmp / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    generate_certs(load_config(path))
    return path


@pytest.mark.trio
async def test_killed_peer_process_gives_peer_lost_and_others_continue(tmp_path: Path) -> None:
    path = write_cluster(tmp_path)
    config = load_config(path)
    script = Path(__file__).with_name("_echo_node.py")
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before any await)
        [sys.executable, str(script), str(path), "bob"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                carol_box: list[Node] = []
                done = anyio.Event()

                async def run_carol() -> None:
                    async with open_node(config, "carol", linger_s=0.2) as carol:
                        carol_box.append(carol)
                        ch = carol.channel("alice", "work", "c")
                        with pytest.raises(PeerLost, match="alice"):  # when alice closes
                            while True:
                                await ch.send(await ch.receive())

                tg.start_soon(run_carol)
                async with open_node(config, "alice", linger_s=0.2) as alice:
                    to_bob = alice.channel("bob", "echo", "c")
                    to_carol = alice.channel("carol", "work", "c")
                    await to_bob.send("ping")
                    assert await to_bob.receive() == "ping"

                    proc.kill()
                    killed = anyio.current_time()

                    answered = [0]  # carol's echoes so far

                    async def keep_talking_to_carol() -> None:
                        i = 0
                        while not done.is_set():
                            await to_carol.send(i)
                            assert await to_carol.receive() == i
                            i += 1
                            answered[0] = i
                            await anyio.sleep(0.02)

                    tg.start_soon(keep_talking_to_carol)
                    with pytest.raises(PeerLost, match="bob"):
                        await to_bob.receive()
                    lost_after = anyio.current_time() - killed
                    # the design's bound: peer_timeout after the last sign of life, plus a few
                    # seconds of slack for a loaded machine (never a hang)
                    assert lost_after <= PEER_TIMEOUT + 5.0
                    with pytest.raises(PeerLost):
                        await to_bob.send("anyone?")
                    # carol keeps answering after bob is declared lost: 5 more echoes
                    at_loss = answered[0]
                    await until(lambda: answered[0] >= at_loss + 5, what="carol answers on")
                    done.set()
                    stats = alice.statistics()
                    assert stats.peers["carol"].connected and not stats.peers["bob"].connected
    finally:
        proc.kill()
        proc.wait(timeout=10)
