"""TLS 1.3 with mutual authentication: contexts from the cluster files, and the identity check.

Both sides present a certificate issued by the cluster CA; verification is OpenSSL's (chain to
the CA file only, no system roots). On top of that a party checks that the certificate names the
party it expects: the subject CN and every DNS subjectAltName must equal the party name (what
:func:`mpcactors._certs.generate_certs` issues). Hostname checking is off because parties are
named by party name, not by host.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream

from .._config import ClusterConfig
from .._errors import AuthenticationError, ConfigError

__all__ = [
    "TlsSocketStream",
    "accept_tcp_socket",
    "certificate_party",
    "check_peer_certificate",
    "client_context",
    "connect_tcp_socket",
    "listen_tcp_socket",
    "server_context",
]


def _context(purpose: int, config: ClusterConfig, party: str) -> ssl.SSLContext:
    if config.tls is None:
        raise ConfigError(
            "the config has no [tls] section; TCP links need TLS files (mpcactors certs)",
            file=str(config.path) if config.path else None,
            key="tls",
        )
    pc = config.party(party)
    if pc.cert is None or pc.key is None:
        raise ConfigError(
            "missing cert/key path", file=str(config.path) if config.path else None,
            key=f"parties.{party}",
        )  # fmt: skip
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=str(config.tls.ca_cert))
        ctx.load_cert_chain(str(pc.cert), str(pc.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS files ({_paths(config.tls.ca_cert, pc.cert, pc.key)}): {exc}",
            file=str(config.path) if config.path else None,
            key="tls",
        ) from exc
    return ctx


def _paths(*paths: Path) -> str:
    return ", ".join(str(p) for p in paths)


def server_context(config: ClusterConfig, party: str) -> ssl.SSLContext:
    """The accepting side's context: our certificate, client certificates required."""
    return _context(ssl.PROTOCOL_TLS_SERVER, config, party)


def client_context(config: ClusterConfig, party: str) -> ssl.SSLContext:
    """The dialing side's context: our certificate, the server's verified against the CA."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, config, party)


def certificate_party(cert: dict[str, Any] | None) -> str:
    """The party a verified peer certificate names.

    Args:
        cert: ``SSLObject.getpeercert()`` of a verified connection.

    Raises:
        AuthenticationError: no certificate, no CN, or CN and DNS subjectAltNames disagree.
    """
    if not cert:
        raise AuthenticationError("the peer presented no certificate")
    cns = [v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"]
    sans = [v for (k, v) in cert.get("subjectAltName", ()) if k == "DNS"]
    names = set(cns) | set(sans)
    if len(cns) != 1 or len(names) != 1:
        raise AuthenticationError(
            f"the peer certificate must name exactly one party (CN and DNS SAN), it names "
            f"CN={cns!r} SAN={sans!r}"
        )
    return cns[0]


def check_peer_certificate(cert: dict[str, Any] | None, expected: str, address: str) -> None:
    """Raise AuthenticationError unless the certificate names ``expected``."""
    named = certificate_party(cert)
    if named != expected:
        raise AuthenticationError(
            f"the peer at {address} presented a certificate for party {named!r}, "
            f"expected {expected!r}",
            peer=expected,
        )


# anyio >= 4.7 names these wait_readable / wait_writable / notify_closing.
LINGER_S = 1.0  # how long a refused handshake waits for the dialer to close (see _linger)
_wait_readable: Any = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
_wait_writable: Any = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable
_notify_closing: Any = getattr(anyio, "notify_closing", lambda sock: None)


class TlsSocketStream(ByteStream):
    """TLS 1.3 over a non-blocking TCP socket, on any anyio backend.

    The stdlib ``ssl.SSLSocket`` does the record layer against the kernel directly: sends
    encrypt straight from the caller's buffer (a memoryview of a payload) and
    :meth:`receive_into` decrypts straight into the frame decoder's buffer. Compared with memory
    BIOs (anyio's ``TLSStream``) that saves two copies of every byte, which on a 80 MB payload is
    most of the difference to raw TCP. A failed handshake writes OpenSSL's alert to the socket,
    so a dialer whose certificate is refused learns why. EOF without close_notify is treated as
    EOF (frames carry their own lengths).

    Only one task may receive and one task send at a time (the link's reader and writer).
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._closed = False

    @classmethod
    async def handshake(
        cls, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
        hostname: str | None = None,
    ) -> TlsSocketStream:  # fmt: skip
        """Wrap a connected non-blocking socket and run the TLS handshake.

        Raises:
            ssl.SSLError: the handshake failed (the alert was sent to the peer).
            OSError: the connection failed.
        """
        tls = context.wrap_socket(
            sock, server_side=server_side, server_hostname=hostname, do_handshake_on_connect=False
        )
        stream = cls(tls)
        try:
            while True:
                try:
                    tls.do_handshake()
                    return stream
                except ssl.SSLWantReadError:
                    await _wait_readable(tls)
                except ssl.SSLWantWriteError:
                    await _wait_writable(tls)
        except ssl.SSLError as exc:
            if server_side and not isinstance(exc, ssl.SSLEOFError):
                await stream._linger()
            stream._close_now()
            raise
        except BaseException:
            stream._close_now()
            raise

    async def _linger(self) -> None:
        """After refusing a handshake (OpenSSL has written the alert): send FIN and read what the
        dialer still sends until it closes, for at most :data:`LINGER_S`.

        Closing at once would reset the connection if the dialer's first message (sent as soon
        as its side of TLS 1.3 finished, before we checked its certificate) is unread, and the
        reset can reach the dialer before it reads the alert: its write or read then fails as a
        broken connection, it retries, and the person sees "unavailable after 5 attempts"
        instead of "refused our certificate: unknown ca" (measured: 4 % of rejections under CPU
        load). This is the lingering close of HTTP servers.
        """
        sock = self._sock
        with anyio.move_on_after(LINGER_S):
            try:
                sock.shutdown(socket.SHUT_WR)  # drops the TLS object: recv below is plain TCP
                while True:
                    await _wait_readable(sock)
                    try:
                        if not sock.recv(65536):
                            return
                    except BlockingIOError:
                        continue
            except OSError:
                return

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._sock.getpeercert()  # type: ignore[return-value]

    def _check(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError

    async def receive_into(self, buffer: memoryview) -> int:
        """Receive at least one byte into ``buffer`` (as many as are ready, up to its size).

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            anyio.BrokenResourceError: the connection broke.
            ssl.SSLError: a TLS alert from the peer (e.g. it refused our certificate).
        """
        sock, size, got = self._sock, len(buffer), 0
        while got < size:
            self._check()
            try:
                n = sock.recv_into(buffer[got:], size - got)
            except ssl.SSLWantReadError:
                if got:
                    return got
                await _wait_readable(sock)
                continue
            except ssl.SSLWantWriteError:
                await _wait_writable(sock)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                n = 0
            except OSError as exc:
                if isinstance(exc, ssl.SSLError):
                    raise
                raise anyio.BrokenResourceError from exc
            if n == 0:
                if got:
                    return got
                raise anyio.EndOfStream
            got += n
        return got

    async def receive(self, max_bytes: int = 65536) -> bytes:
        buf = bytearray(max_bytes)
        n = await self.receive_into(memoryview(buf))
        del buf[n:]
        return bytes(buf)

    async def send(self, item: bytes | memoryview) -> None:
        sock = self._sock
        view = memoryview(item).cast("B")
        while view:
            self._check()
            try:
                n = sock.send(view)
            except ssl.SSLWantWriteError:
                await _wait_writable(sock)
                continue
            except ssl.SSLWantReadError:
                await anyio.sleep(0.001)  # rare (key update); the reader owns readability
                continue
            except OSError as exc:
                if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
                    raise
                raise anyio.BrokenResourceError from exc
            view = view[n:]
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS streams do not support half-close")

    def detach(self) -> ssl.SSLSocket:
        """Hand the socket over (to the link's I/O thread); this stream is closed without it."""
        self._closed = True
        return self._sock

    def _close_now(self) -> None:
        if not self._closed:
            self._closed = True
            _notify_closing(self._sock)
            self._sock.close()

    async def aclose(self) -> None:
        self._close_now()
        await anyio.lowlevel.checkpoint()


async def connect_tcp_socket(host: str, port: int, *, source: tuple[str, int] | None = None) -> socket.socket:
    """A connected non-blocking TCP socket (TCP_NODELAY on), from ``source`` if given.

    A dial to a port of the ephemeral range where nobody listens can connect to itself (TCP
    simultaneous open, when the kernel picks that very port as the source): that is refused
    here like a failed connect, so the dialer retries.

    Raises:
        OSError: resolution or connection failed, or the socket connected to itself.
    """
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            sock.bind(source)
        err = sock.connect_ex(addr)
        if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            await _wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {host}:{port}: {os.strerror(err)}")
        if sock.getsockname() == sock.getpeername():
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"connect to {host}:{port}: connected to itself (nobody listens there)"
            )
    except BaseException:
        _notify_closing(sock)
        sock.close()
        raise
    return sock


def listen_tcp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def accept_tcp_socket(listener: socket.socket) -> tuple[socket.socket, str]:
    """Wait for and accept one connection; returns the socket and the peer's address."""
    while True:
        await _wait_readable(listener)
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, f"{addr[0]}:{addr[1]}"
