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

from .._config import ClusterConfig
from .._errors import AuthenticationError, ConfigError

__all__ = ["certificate_party", "check_peer_certificate", "client_context", "server_context"]


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
