"""Link-layer benchmark: bulk throughput vs raw TCP, small messages, latency, WAN rounds.

Usage::

    python bench/link_bench.py            # full run, prints a table
    python bench/link_bench.py --quick    # smaller sizes (CI smoke)
    python bench/link_bench.py --append   # also append the table to bench/RESULTS.md

Bulk throughput runs sender and receiver in two processes (one core each), for the link over
TCP + TLS 1.3 loopback and for a raw trio TCP socket moving the same bytes, in the same run.
The other measurements run both nodes in this process (one event loop).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anyio.lowlevel

from mpcactors import load_config
from mpcactors._certs import generate_certs
from mpcactors._config import ClusterConfig, LinkOptions, WanProfile
from mpcactors._log import configure_logging
from mpcactors.link import MemoryNetwork, open_node


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_cluster(tmp: Path) -> Path:
    lines = ['cluster = "bench"', 'protocol = "semi2k"', "[tls]", 'ca_cert = "ca.pem"',
             'ca_key = "ca.key"', "[link]", "peer_timeout_s = 60", "heartbeat_interval_s = 1"]  # fmt: skip
    for party in ("alice", "bob"):
        lines += [f"[parties.{party}]", f'address = "127.0.0.1:{free_port()}"',
                  f'cert = "{party}.pem"', f'key = "{party}.key"']  # fmt: skip
    path = tmp / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    generate_certs(load_config(path))
    return path


def fresh_cluster(tmp: Path, name: str) -> ClusterConfig:
    folder = tmp / name
    folder.mkdir()
    return load_config(write_cluster(folder))


# ---- receivers (child processes) ------------------------------------------------------------


async def link_receiver(cfg_path: str, count: int) -> None:
    config = load_config(cfg_path)
    async with open_node(config, "bob") as bob:
        ch = bob.channel("alice", "bulk", "c")
        for _ in range(count):
            await ch.receive()
        await ch.send("done")


async def raw_receiver(port: int, total: int) -> None:
    listener = trio.socket.socket()
    listener.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", port))
    listener.listen(1)
    sock, _ = await listener.accept()
    buf = bytearray(1 << 22)
    got = 0
    while got < total:
        n = await sock.recv_into(buf)
        if not n:
            break
        got += n
    await sock.send(b"!")
    sock.close()


def tls_receiver(cfg_path: str, port: int, total: int) -> None:
    """Plain blocking TLS 1.3 (stdlib ssl): the ceiling any TLS link can reach here."""
    import socket

    from mpcactors.link._tls import server_context

    ctx = server_context(load_config(cfg_path), "bob")
    with socket.create_server(("127.0.0.1", port)) as listener:
        raw, _ = listener.accept()
        with ctx.wrap_socket(raw, server_side=True) as sock:
            buf = memoryview(bytearray(1 << 20))
            got = 0
            while got < total:
                got += sock.recv_into(buf, len(buf))
            sock.sendall(b"!")


def tls_sender(cfg_path: Path, port: int, array: np.ndarray, count: int) -> float:
    import socket

    from mpcactors.link._tls import client_context

    ctx = client_context(load_config(cfg_path), "alice")
    for _ in range(100):
        try:
            raw = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.05)
    with ctx.wrap_socket(raw, server_hostname="bob") as sock:
        view = memoryview(array.reshape(-1)).cast("B")
        t0 = time.perf_counter()
        for _ in range(count):
            sock.sendall(view)
        assert sock.recv(1) == b"!"
        return time.perf_counter() - t0


async def bulk_tls(cfg_path: Path, array: np.ndarray, count: int) -> float:
    port = free_port()
    proc = spawn("--child", "tls", str(cfg_path), str(port), str(array.nbytes * count))
    try:
        return await trio.to_thread.run_sync(tls_sender, cfg_path, port, array, count)
    finally:
        proc.wait(timeout=60)


# ---- measurements ----------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)


async def bulk_link(cfg_path: Path, array: np.ndarray, count: int) -> float:
    proc = spawn("--child", "link", str(cfg_path), str(count))
    try:
        config = load_config(cfg_path)
        async with open_node(config, "alice") as alice:
            ch = alice.channel("bob", "bulk", "c")
            t0 = time.perf_counter()
            for _ in range(count):
                await ch.send(array)
            assert await ch.receive() == "done"
            return time.perf_counter() - t0
    finally:
        proc.wait(timeout=60)


async def bulk_raw(array: np.ndarray, count: int) -> float:
    port = free_port()
    total = array.nbytes * count
    proc = spawn("--child", "raw", str(port), str(total))
    try:
        for _ in range(100):
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                break
            except OSError:
                await trio.sleep(0.05)
        view = memoryview(array.reshape(-1)).cast("B")
        t0 = time.perf_counter()
        for _ in range(count):
            await stream.send_all(view)
        assert await stream.receive_some(1) == b"!"
        elapsed = time.perf_counter() - t0
        await stream.aclose()
        return elapsed
    finally:
        proc.wait(timeout=60)


async def small_messages(config: ClusterConfig, channels: int, per_channel: int) -> float:
    async with anyio.create_task_group() as tg:
        ready = anyio.Event()
        finished = anyio.Event()

        async def bob_side() -> None:
            async with open_node(config, "bob") as bob:
                ready.set()
                async with anyio.create_task_group() as inner:
                    for c in range(channels):

                        async def recv(c: int = c) -> None:
                            ch = bob.channel("alice", f"job{c % 10}", f"c{c}")
                            for _ in range(per_channel):
                                await ch.receive()

                        inner.start_soon(recv)
                finished.set()

        tg.start_soon(bob_side)
        async with open_node(config, "alice") as alice:
            await ready.wait()
            chans = [alice.channel("bob", f"job{c % 10}", f"c{c}") for c in range(channels)]
            t0 = time.perf_counter()
            for i in range(per_channel):
                for ch in chans:
                    ch.send_nowait(i)
                await anyio.lowlevel.checkpoint()
            await finished.wait()
            return time.perf_counter() - t0


async def round_trips(config: ClusterConfig, n: int, *, network: MemoryNetwork | None = None,
                      wan: WanProfile | None = None) -> list[float]:  # fmt: skip
    async with anyio.create_task_group() as tg:

        async def server() -> None:
            async with open_node(config, "bob", network=network, wan=wan) as bob:
                ch = bob.channel("alice", "rpc", "c")
                for _ in range(n):
                    await ch.send(await ch.receive())

        tg.start_soon(server)
        async with open_node(config, "alice", network=network, wan=wan) as alice:
            ch = alice.channel("bob", "rpc", "c")
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                await ch.send(i)
                await ch.receive()
                times.append(time.perf_counter() - t0)
            return times


async def run(quick: bool) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="link-bench-"))
    cfg_path = write_cluster(tmp)

    mb = 8 if quick else 80
    count = 2 if quick else 5
    array = np.random.default_rng(0).integers(0, 2**63, size=mb * 2**20 // 8, dtype=np.uint64)
    total = array.nbytes * count
    raw_s = tls_s = link_s = float("inf")
    for _ in range(1 if quick else 3):  # best of 3, alternating, in the same run
        raw_s = min(raw_s, await bulk_raw(array, count))
        tls_s = min(tls_s, await bulk_tls(cfg_path, array, count))
        link_s = min(link_s, await bulk_link(cfg_path, array, count))
    raw_mbs, tls_mbs, link_mbs = (total / s / 1e6 for s in (raw_s, tls_s, link_s))
    what = f"bulk {count} x {mb} MiB uint64"
    rows.append((f"{what}, raw trio TCP", f"{raw_mbs:,.0f} MB/s", "2 processes, best of 3"))
    rows.append((f"{what}, plain blocking TLS 1.3 sockets", f"{tls_mbs:,.0f} MB/s",
                 f"{100 * tls_mbs / raw_mbs:.0f}% of raw: the TLS ceiling"))  # fmt: skip
    rows.append((f"{what}, link TCP+TLS", f"{link_mbs:,.0f} MB/s",
                 f"{100 * link_mbs / raw_mbs:.0f}% of raw, {100 * link_mbs / tls_mbs:.0f}% of TLS"))  # fmt: skip

    channels, per = (200, 50) if quick else (1000, 100)
    fresh = fresh_cluster(tmp, "small")
    small_s = await small_messages(fresh, channels, per)
    rows.append((f"small messages, {channels} channels x {per}, TCP+TLS",
                 f"{channels * per / small_s:,.0f} msg/s", "1 process, send_nowait"))  # fmt: skip

    fresh = fresh_cluster(tmp, "rtt")
    times = await round_trips(fresh, 200 if quick else 1000)
    rows.append(("small-message round trip, TCP+TLS",
                 f"{1e6 * statistics.median(times):,.0f} us median",
                 f"p99 {1e6 * sorted(times)[int(len(times) * 0.99)]:,.0f} us"))  # fmt: skip

    mem = ClusterConfig.local(["alice", "bob"], link=LinkOptions(heartbeat_interval_s=5))
    wan = WanProfile(latency_ms=10.0)
    n = 100
    times = await round_trips(mem, n, network=MemoryNetwork(), wan=wan)
    total_s = sum(times)
    rows.append((f"{n} sequential request/responses, WAN 20 ms RTT",
                 f"{total_s:.2f} s = {total_s / 0.020:.1f} RTT", "in-memory + WAN emulator"))  # fmt: skip
    return rows


def table(rows: list[tuple[str, str, str]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"| {'measurement':<{w0}} | {'result':>{w1}} | note |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|------|"]
    lines += [f"| {a:<{w0}} | {b:>{w1}} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("warning")
    if args.child:
        kind, *rest = args.child
        if kind == "link":
            trio.run(link_receiver, rest[0], int(rest[1]))
        elif kind == "tls":
            tls_receiver(rest[0], int(rest[1]), int(rest[2]))
        else:
            trio.run(raw_receiver, int(rest[0]), int(rest[1]))
        return
    rows = trio.run(run, args.quick)
    out = table(rows)
    print(out)
    if args.append:
        results = ROOT / "bench" / "RESULTS.md"
        text = results.read_text() if results.exists() else "# Benchmark results\n"
        load = os.getloadavg()[0]
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} from other"
            f" work, Python {platform.python_version()}, OpenSSL {ssl.OPENSSL_VERSION.split()[1]}"
        )
        entry = f"\n### link_bench {dt.date.today()} ({machine}){' --quick' if args.quick else ''}\n\n{out}\n"
        if "## Link" not in text:
            text += "\n## Link\n"
        head, _, tail = text.partition("## Link\n")
        nxt = tail.find("\n## ")
        section, rest = (tail, "") if nxt < 0 else (tail[:nxt + 1], tail[nxt + 1:])
        results.write_text(head + "## Link\n" + section + entry + rest)


if __name__ == "__main__":
    main()
