"""TLS 1.3 with mutual authentication: contexts from the cluster files, and the identity check.

Both sides present a certificate issued by the cluster CA; verification is OpenSSL's (chain to
the CA file only, no system roots). On top of that a party checks that the certificate names the
party it expects: the subject CN and every DNS subjectAltName must equal the party name (what
:func:`mpcactors._certs.generate_certs` issues). Hostname checking is off because parties are
named by party name, not by host.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream

from .._config import ClusterConfig
from .._errors import AuthenticationError, ConfigError

__all__ = [
    "TlsStream",
    "certificate_party",     "check_peer_certificate",
    "client_context",
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


class TlsStream(ByteStream):
    """TLS over any byte stream, via ``ssl.SSLObject`` and memory BIOs.

    Like ``anyio.streams.tls.TLSStream`` with two differences that matter here: a failed
    handshake still sends OpenSSL's alert (so a dialer whose certificate is refused learns why,
    instead of seeing a bare EOF), and ``receive`` returns every already-decrypted record up
    to ``max_bytes`` in one call instead of one 16 KiB record. EOF without close_notify is
    treated as EOF (peers close abruptly; frames carry their own lengths).
    """

    def __init__(self, transport: ByteStream, ssl_object: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
        self.transport = transport
        self._ssl = ssl_object
        self._in = incoming
        self._out = outgoing

    @classmethod
    async def handshake(
        cls, transport: ByteStream, context: ssl.SSLContext, *, server_side: bool,
        hostname: str | None = None,
    ) -> TlsStream:  # fmt: skip
        """Run the TLS handshake over ``transport``.

        Raises:
            ssl.SSLError: the handshake failed (the alert has been sent to the peer).
        """
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=server_side, server_hostname=hostname)
        stream = cls(transport, obj, incoming, outgoing)
        try:
            await stream._call(obj.do_handshake)
        except ssl.SSLError:
            if outgoing.pending:
                with anyio.move_on_after(1.0):
                    try:
                        await transport.send(outgoing.read())
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass
            raise
        return stream

    async def _flush(self) -> None:
        if self._out.pending:
            await self.transport.send(self._out.read())

    async def _call(self, fn: Any, *args: Any) -> Any:
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                await self._flush()
                try:
                    data = await self.transport.receive(1 << 18)
                except anyio.EndOfStream:
                    self._in.write_eof()
                else:
                    self._in.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise anyio.EndOfStream from None
            else:
                await self._flush()
                return result

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._call(self._ssl.read, max_bytes)
        if not data:
            raise anyio.EndOfStream
        if len(data) < max_bytes and (self._ssl.pending() or self._in.pending):
            parts, n = [data], len(data)
            while n < max_bytes:
                try:
                    more = self._ssl.read(max_bytes - n)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not more:
                    break
                parts.append(more)
                n += len(more)
            data = b"".join(parts)
        return data

    async def send(self, item: bytes) -> None:
        await self._call(self._ssl.write, item)

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS streams do not support half-close")

    async def aclose(self) -> None:
        await self.transport.aclose()

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._ssl.getpeercert()  # type: ignore[return-value]

    @property
    def extra_attributes(self) -> Any:
        return self.transport.extra_attributes
