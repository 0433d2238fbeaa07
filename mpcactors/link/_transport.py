"""Transports: TCP with TLS 1.3, connect with retry (gRPC-style backoff), error translation.

Theory of operation
-------------------
A transport gives the node byte streams (``anyio.abc.ByteStream``) to and from peers, each
tagged with the party it has authenticated (the TLS certificate's party; the in-memory network
simply knows). It does not know frames. The node dials with :func:`connect_with_retry` and
serves with ``transport.serve(handler)``.

Backoff follows gRPC's connection-backoff spec: the first retry waits
``connect_retry_interval_ms``, every next one 1.6 times longer, each with +-20 % jitter, capped at
:data:`BACKOFF_CAP_S`; every attempt has at least ``MIN_ATTEMPT_S`` and the whole dial shares the
``connect_timeout_s`` deadline. After the last attempt the dialer raises
:class:`~mpcactors.PeerUnavailable` from an ExceptionGroup of every attempt's error (like trio's
``open_tcp_stream``). An authentication failure is not retried: another try would present the
same certificate.

:func:`is_disconnect` is the one place transport exceptions are classified: a dropped connection
(EOF, reset, broken, closed, timeouts) versus everything else.
"""

from __future__ import annotations

import dataclasses
import errno
import random
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream, TaskStatus

from .._config import ClusterConfig
from .._errors import AuthenticationError, LinkError, PeerUnavailable, describe_attempts
from .._log import get_logger
from ._tls import (
    TlsSocketStream,
    accept_tcp_socket,
    certificate_party,
    check_peer_certificate,
    client_context,
    connect_tcp_socket,
    listen_tcp_socket,
    server_context,
)

__all__ = [
    "BACKOFF_CAP_S",
    "Connection",
    "TcpTlsTransport",
    "Transport",
    "backoff_delays",
    "connect_with_retry",
    "is_disconnect",
]

BACKOFF_MULTIPLIER = 1.6
BACKOFF_JITTER = 0.2
BACKOFF_CAP_S = 5.0
MIN_ATTEMPT_S = 2.0
HANDSHAKE_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """A fresh byte stream to or from a peer."""

    stream: ByteStream
    party: str | None  # the party the transport authenticated (None: accepted, unknown yet)
    address: str


Handler = Callable[[Connection], Awaitable[None]]


class Transport(Protocol):
    """What the node needs from a transport."""

    def address(self, peer: str) -> str:
        """A printable address of a peer (for errors)."""
        ...

    async def connect(self, peer: str) -> Connection:
        """Dial a peer once; raise OSError (retryable) or AuthenticationError."""
        ...

    async def serve(self, handler: Handler, *, task_status: TaskStatus[Any]) -> None:
        """Accept connections forever, calling ``handler`` in a task per connection."""
        ...


def backoff_delays(initial_s: float, rng: random.Random, cap_s: float = BACKOFF_CAP_S) -> Any:
    """Yield the waits between attempts: initial, x1.6 each time, +-20 % jitter, capped."""
    delay = initial_s
    while True:
        yield min(cap_s, delay) * (1 + rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
        delay = min(cap_s, delay * BACKOFF_MULTIPLIER)


async def connect_with_retry(
    connect: Callable[[], Awaitable[Connection]],
    *,
    peer: str,
    address: str,
    attempts: int | None,
    interval_s: float,
    timeout_s: float,
    rng: random.Random,
) -> Connection:
    """Dial until one attempt succeeds, the attempts run out or the deadline passes.

    Args:
        connect: one attempt.
        peer, address: for the error message.
        attempts: how many attempts at most (None: unlimited, until the deadline).
        interval_s: the first backoff delay.
        timeout_s: overall deadline for all attempts (``math.inf`` for none).
        rng: source of jitter.

    Raises:
        PeerUnavailable: every attempt failed; ``__cause__`` is an ExceptionGroup of their errors.
        AuthenticationError: the peer was reached but failed authentication (not retried).
    """
    errors: list[Exception] = []
    deadline = anyio.current_time() + timeout_s
    delays = backoff_delays(interval_s, rng)
    n = 0
    while attempts is None or n < attempts:
        n += 1
        left = deadline - anyio.current_time()
        try:
            with anyio.fail_after(max(MIN_ATTEMPT_S, min(left, HANDSHAKE_TIMEOUT_S))):
                return await connect()
        except AuthenticationError:
            raise
        except (
            OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError,
            anyio.EndOfStream,
        ) as exc:  # fmt: skip
            errors.append(exc)
            del errors[:-32]  # unlimited redials keep only the latest errors
        if attempts is not None and n >= attempts:
            break
        wait = next(delays)
        if anyio.current_time() + wait >= deadline:
            break
        await anyio.sleep(wait)
    raise PeerUnavailable(peer, address, n, describe_attempts(errors)) from ExceptionGroup(
        f"connect attempts to {peer!r} at {address}", errors
    )


def is_disconnect(exc: BaseException) -> bool:
    """True if ``exc`` means the connection is gone (not a bug, not a refusal of identity)."""
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, ssl.SSLEOFError) or "EOF" in str(exc)
    return isinstance(
        exc,
        (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
            OSError,
            TimeoutError,
        ),
    )


def bind_problem(exc: OSError) -> str:
    """What a failed bind means, for a person."""
    if isinstance(exc, socket.gaierror):
        return f"the host does not resolve ({exc.strerror or exc})"
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use (another process, or another cluster on this host: pick a free port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no network interface of this host has that address"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


# TLS alerts that mean "your certificate is not acceptable to me"
_CERT_ALERTS = frozenset({
    "bad certificate", "unsupported certificate", "certificate revoked", "certificate expired",
    "certificate unknown", "unknown ca", "certificate required", "access denied", "decrypt error",
})  # fmt: skip


def tls_problem(exc: ssl.SSLError) -> str:
    """What a TLS failure means, from our side: "refused our certificate: unknown ca" when the
    peer sent an alert about our certificate, "presented a certificate we refuse: ..." when we
    refused theirs."""
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"presented a certificate we refuse: {verify} (is it issued by this cluster's CA?)"
    reason = getattr(exc, "reason", None) or ""
    m = re.fullmatch(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_(\w+)", reason)
    if m:
        alert = m.group(1).replace("_", " ").lower()
        if alert in _CERT_ALERTS:
            return f"refused our certificate: {alert}"
        return f"refused the TLS handshake: {alert}"
    return f"TLS failed: {reason or exc}"


def auth_error_from_ssl(exc: ssl.SSLError, peer: str, address: str) -> AuthenticationError:
    """Translate a TLS failure (bad certificate, alert from the peer) into AuthenticationError
    ("'bob' at 10.0.0.2:7001 refused our certificate: unknown ca")."""
    return AuthenticationError(f"{peer!r} at {address} {tls_problem(exc)}", peer=peer)


class TcpTlsTransport:
    """TCP + TLS 1.3 with mutual certificate authentication, from a cluster config.

    Args:
        config: the cluster (TLS paths and addresses).
        party: this party.
    """

    def __init__(self, config: ClusterConfig, party: str) -> None:
        self.config = config
        self.party = party
        self._client_ctx = client_context(config, party)
        self._server_ctx = server_context(config, party)
        self.listen_port: int | None = None
        self.rejected = 0
        self._log = get_logger(party=party)

    def address(self, peer: str) -> str:
        return self.config.party(peer).address

    async def connect(self, peer: str) -> Connection:
        pc = self.config.party(peer)
        sock = await connect_tcp_socket(pc.host, pc.port)
        try:
            tls = await TlsSocketStream.handshake(
                sock, self._client_ctx, server_side=False, hostname=peer
            )
        except ssl.SSLError as exc:
            if is_disconnect(exc):
                raise ConnectionResetError(f"TLS handshake with {pc.address}: {exc}") from exc
            raise auth_error_from_ssl(exc, peer, pc.address) from exc
        try:
            check_peer_certificate(tls.peer_certificate, peer, pc.address)
        except BaseException:
            await tls.aclose()
            raise
        return Connection(tls, peer, pc.address)

    async def serve(self, handler: Handler, *, task_status: TaskStatus[Any]) -> None:
        pc = self.config.party(self.party)
        try:
            listener = listen_tcp_socket(pc.host, pc.port)
        except OSError as exc:
            raise LinkError(
                f"party {self.party!r} cannot listen on {pc.address} ([parties.{self.party}] address in "
                f"{self.config.path or 'the config'}): {bind_problem(exc)}"
            ) from exc
        try:
            self.listen_port = int(listener.getsockname()[1])
            task_status.started(self.listen_port)
            async with anyio.create_task_group() as tg:
                while True:
                    sock, address = await accept_tcp_socket(listener)
                    tg.start_soon(self._accept, sock, address, handler)
        finally:
            listener.close()

    async def _accept(self, sock: socket.socket, address: str, handler: Handler) -> None:
        try:
            with anyio.fail_after(HANDSHAKE_TIMEOUT_S):
                tls = await TlsSocketStream.handshake(sock, self._server_ctx, server_side=True)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.rejected += 1
            error = f"the dialer {tls_problem(exc)}" if isinstance(exc, ssl.SSLError) and not is_disconnect(exc) else str(exc)
            self._log.warning("rejected connection", address=address, error=error)
            sock.close()
            return
        try:
            party = certificate_party(tls.peer_certificate)
        except AuthenticationError as exc:
            self.rejected += 1
            self._log.warning("rejected connection", address=address, error=str(exc))
            await tls.aclose()
            return
        await handler(Connection(tls, party, address))
