"""An authenticated peer cannot exhaust a node's memory (issue 10, point 2), over real TCP+TLS.

The victim (bob) runs in its own process so its resident memory can be read from
/proc/PID/status. The hostile peer (alice, holding a valid certificate from the cluster CA) is
written with the project's own Session and frame codec and sends raw DATA frames; when the
victim fails the link (ProtocolError) it reconnects and goes on until it has sent what it meant
to. Meanwhile carol, an honest third party, runs an echo job with the victim over another link.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from mpcactors import load_config
from mpcactors._certs import generate_certs
from mpcactors._config import ClusterConfig
from mpcactors.link import open_node
from mpcactors.link._frames import NEED_DATA, Chunk, Data, frame_bytes
from mpcactors.link._session import Established, Session
from mpcactors.link._transport import TcpTlsTransport, is_disconnect

from ._helpers import free_ports

MiB = 1 << 20
SAFETY_KILL_BYTES = 1536 * MiB  # a regression must not take the shared machine down


def write_cluster(tmp: Path) -> Path:
    ports = dict(zip(("alice", "bob", "carol"), free_ports(3)))
    lines = [
        'cluster = "attack-test"',
        'protocol = "rep3"',
        "[tls]",
        'ca_cert = "ca.pem"',
        'ca_key = "ca.key"',
        "[link]",
        "connect_retry_times = 50",
        "connect_retry_interval_ms = 100",
        "connect_timeout_s = 60",
        "peer_timeout_s = 20",
        "heartbeat_interval_s = 0.5",
    ]
    for party, port in ports.items():
        lines += [f"[parties.{party}]", f'address = "127.0.0.1:{port}"',
                  f'cert = "{party}.pem"', f'key = "{party}.key"']  # fmt: skip
    path = tmp / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    generate_certs(load_config(path))
    return path


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM (Linux >= 4.0); False if this kernel or sandbox does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


async def hostile_connection(config: ClusterConfig, n: int) -> anyio.abc.ByteStream:
    """A TLS connection to bob as alice with a completed HELLO exchange (a fresh session)."""
    conn = await TcpTlsTransport(config, "alice").connect("bob")
    s = Session(party="alice", peer="bob", cluster=config.cluster_id, session_id=f"evil-{n}",
                job_window=1 << 20, max_frame_bytes=1 << 26)  # fmt: skip
    s.connect()
    await conn.stream.send(b"".join(s.data_to_send()))
    while not isinstance(event := s.next_event(), Established):
        assert event is NEED_DATA, event  # test-side check on the victim's answer
        s.receive_data(await conn.stream.receive())
    return conn.stream


async def attack(config: ClusterConfig, target: int, frame_of: Callable[[int, int], bytes]) -> int:
    """Send ``target`` bytes of frames made by ``frame_of(seq, i)``; returns connections used."""
    sent = i = connections = 0
    while sent < target:
        connections += 1
        stream = await hostile_connection(config, connections)
        seq = 0
        try:
            while sent < target:
                batch = []
                size = 0
                while size < MiB:
                    seq += 1
                    i += 1
                    batch.append(frame_of(seq, i))
                    size += len(batch[-1])
                await stream.send(b"".join(batch))
                sent += size
        except Exception as exc:
            if not is_disconnect(exc):
                raise
        finally:
            await anyio.aclose_forcefully(stream)
    return connections


async def run_attack(
    tmp_path: Path, target: int, frame_of: Callable[[int, int], bytes]
) -> tuple[int, int, str]:
    """Victim process + honest carol + hostile alice; returns (RSS growth, connections, log)."""
    path = write_cluster(tmp_path)
    config = load_config(path)
    script = Path(__file__).with_name("_victim_node.py")
    log_path = tmp_path / "victim.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 (once, before any await)
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before any await)
            [sys.executable, str(script), str(path), "bob"], stdout=subprocess.DEVNULL, stderr=log
        )
    growth = connections = 0
    try:
        with anyio.fail_after(240):
            async with open_node(config, "carol", wait_connected=False, linger_s=0.2) as carol:
                echo = carol.channel("bob", "echo", "c")
                payload = bytes(range(256)) * 16
                for i in range(50):  # warm-up: connected, allocator and TLS buffers in use
                    await echo.send((i, payload))
                    assert await echo.receive() == (i, payload)
                baseline = rss_bytes(proc.pid)
                peak_reset = reset_peak(proc.pid)
                peak = baseline
                attack_done = anyio.Event()
                honest_round_trips = 0

                async def watch() -> None:
                    nonlocal peak
                    while not attack_done.is_set():
                        peak = max(peak, rss_bytes(proc.pid))
                        if peak - baseline > SAFETY_KILL_BYTES:
                            proc.kill()
                            raise AssertionError(f"victim RSS grew by {peak - baseline} bytes")
                        with anyio.move_on_after(0.02):
                            await attack_done.wait()

                async def honest() -> None:
                    nonlocal honest_round_trips
                    while not attack_done.is_set() or honest_round_trips < 20:
                        await echo.send((honest_round_trips, payload))
                        assert await echo.receive() == (honest_round_trips, payload)
                        honest_round_trips += 1

                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch)
                    tg.start_soon(honest)
                    try:
                        connections = await attack(config, target, frame_of)
                    finally:
                        attack_done.set()
                peak = max(peak, rss_bytes(proc.pid))
                if peak_reset:
                    peak = max(peak, rss_bytes(proc.pid, "VmHWM"))
                growth = peak - baseline
                assert proc.poll() is None, "the victim died"
                assert honest_round_trips >= 20
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return growth, connections, log_path.read_text(errors="replace")


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")


@pytest.mark.trio
async def test_empty_chunks_that_start_messages_do_not_exhaust_the_victim(tmp_path: Path) -> None:
    def frame_of(seq: int, i: int) -> bytes:
        # 2048 empty chunks per frame, each the start of a 65,535-byte message of a new job:
        # before the fix every one made bob allocate and zero 64 KiB.
        chunks = tuple(Chunk(f"j{i}-{k}", "c", 0, 0, 65535, b"") for k in range(2048))
        return frame_bytes(Data(seq, 0, chunks))

    growth, connections, log = await run_attack(tmp_path, 16 * MiB, frame_of)
    print(f"empty-chunk attack: 16 MiB sent over {connections} connection(s), victim RSS +{growth / MiB:.1f} MiB")
    assert growth < 256 * MiB
    assert "empty chunk" in log and "link failed" in log


@pytest.mark.trio
async def test_complete_messages_on_unopened_jobs_do_not_exhaust_the_victim(tmp_path: Path) -> None:
    message = os.urandom(60 * 1024)

    def frame_of(seq: int, i: int) -> bytes:
        # 16 complete ~60 KiB messages per frame, each on a job bob never opens.
        chunks = tuple(
            Chunk(f"ghost{i}-{k}", "c", 0, 0, len(message), message) for k in range(16)
        )
        return frame_bytes(Data(seq, 0, chunks))

    growth, connections, log = await run_attack(tmp_path, 512 * MiB, frame_of)
    print(f"unopened-jobs attack: 512 MiB sent over {connections} connection(s), victim RSS +{growth / MiB:.1f} MiB")
    assert growth < 512 * MiB
    assert "exceeded link.max_unopened_bytes" in log
