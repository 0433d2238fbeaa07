"""A dial that connects to itself is refused and retried (issue 13 point 5).

On Linux a connect to a loopback port of the ephemeral range where nobody listens succeeds
when the kernel happens to pick that same port as the source (TCP simultaneous open): the
dialer then talked TLS with itself and failed with AuthenticationError UNEXPECTED_MESSAGE,
without retrying. Binding the source port to the destination port makes it happen every time.
"""

from __future__ import annotations

import random
import socket

import anyio
import pytest

from mpcactors import PeerUnavailable
from mpcactors.link._tls import accept_tcp_socket, connect_tcp_socket, listen_tcp_socket
from mpcactors.link._transport import connect_with_retry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_a_socket_connected_to_itself_is_refused() -> None:
    port = _free_port()
    with anyio.fail_after(10), pytest.raises(ConnectionRefusedError, match="connected to itself"):
        await connect_tcp_socket("127.0.0.1", port, source=("127.0.0.1", port))


@pytest.mark.anyio
async def test_a_self_connect_is_retried() -> None:
    """The first attempt connects to itself; the dialer retries and the next one reaches the
    listener (a second port stands for the peer that now listens)."""
    port = _free_port()
    listener = listen_tcp_socket("127.0.0.1", 0)
    attempts: list[str] = []

    async def dial() -> socket.socket:
        if not attempts:
            attempts.append("self")
            return await connect_tcp_socket("127.0.0.1", port, source=("127.0.0.1", port))
        attempts.append("peer")
        return await connect_tcp_socket("127.0.0.1", listener.getsockname()[1])

    try:
        with anyio.fail_after(20):
            try:
                sock = await connect_with_retry(
                    dial, peer="bob", address=f"127.0.0.1:{port}", attempts=5, interval_s=0.01, timeout_s=10,
                    rng=random.Random(1),
                )  # fmt: skip
            except PeerUnavailable as exc:
                pytest.fail(f"a self-connect was not retried: {exc}")
            accepted, _ = await accept_tcp_socket(listener)
            assert sock.getpeername() == accepted.getsockname()
            sock.close()
            accepted.close()
    finally:
        listener.close()
    assert attempts == ["self", "peer"]
