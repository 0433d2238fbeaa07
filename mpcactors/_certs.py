"""Cluster certificates: one CA, one certificate and key per party (``mpcactors certs``).

Keys are EC P-256 (fast, and what TLS 1.3 in Python's ssl takes everywhere). Each party
certificate names the party as subject CN and as its only DNS subjectAltName -- that is the
identity the link layer checks -- and may serve as TLS server and client. Private keys are
written with mode 0600 (created so, never widened, never through a symlink).

:class:`PartyCredentials` lets protocols sign application messages with the same certified key
(ECDSA P-256 / SHA-256) and check a peer's signature against the cluster CA and the party name,
so a relay (e.g. a secure-aggregation server) cannot substitute what a party said.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._config import ClusterConfig
from ._errors import ConfigError

__all__ = [
    "CertificateAuthority",
    "PartyCredentials",
    "check_own_certificate",
    "generate_certs",
    "issue_party_cert",
    "make_ca",
    "write_key",
]

DEFAULT_VALID_DAYS = 3650


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """A CA's key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(name: str, *, valid_days: int = DEFAULT_VALID_DAYS) -> CertificateAuthority:
    """A new self-signed cluster CA named ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mpcactors CA {name}")])
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert)


def issue_party_cert(
    ca: CertificateAuthority, party: str, *, valid_days: int = DEFAULT_VALID_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate for ``party`` signed by ``ca`` (CN and DNS SAN = party)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return key, cert


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS#8 PEM with mode 0600, never through a symlink.

    The key goes to a fresh file created beside ``path`` with ``O_CREAT | O_EXCL | O_NOFOLLOW``
    and mode 0600 (so it is never readable by others, not even for a moment, and nothing planted
    under that name is followed or reused), then is renamed over ``path``: a rename replaces a
    directory entry and never writes through a symlink. A ``path`` that already is a symlink is
    refused, since somebody may expect the key to land where it points.

    Raises:
        ConfigError: ``path`` is a symbolic link, or the key cannot be written (names the path).
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(
            f"refusing to write a private key to {str(path)!r}: it is a symbolic link "
            f"(to {os.readlink(path)!r}); remove it first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the private key file {str(path)!r}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
            f.write(pem)
            f.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_cert(path: Path, cert: x509.Certificate) -> None:
    """Write a certificate as PEM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def generate_certs(config: ClusterConfig, out_dir: Path | None = None) -> list[Path]:
    """Make a cluster CA and a certificate and key per party.

    Args:
        config: the cluster (party names; TLS paths when ``out_dir`` is None).
        out_dir: write ``ca.pem``, ``ca.key``, ``PARTY.pem``, ``PARTY.key`` there. Without it,
            write exactly where the config's TLS paths point (folders are created).

    Returns:
        Every file written, CA first.

    Raises:
        ConfigError: no ``out_dir`` and the config has no TLS paths.
    """
    ca = make_ca(config.cluster_id)
    if out_dir is not None:
        out = Path(out_dir)
        ca_cert, ca_key = out / "ca.pem", out / "ca.key"
        targets = {p.name: (out / f"{p.name}.pem", out / f"{p.name}.key") for p in config.parties}
    else:
        where = str(config.path) if config.path else None
        if config.tls is None:
            raise ConfigError("no [tls] section: nowhere to write certificates", file=where, key="tls")
        ca_cert = config.tls.ca_cert
        ca_key = config.tls.ca_key or ca_cert.with_suffix(".key")
        targets = {}
        for p in config.parties:
            if p.cert is None or p.key is None:
                raise ConfigError("missing cert/key path", file=where, key=f"parties.{p.name}")
            targets[p.name] = (p.cert, p.key)
    written = [ca_cert, ca_key]
    write_cert(ca_cert, ca.cert)
    write_key(ca_key, ca.key)
    for party, (cert_path, key_path) in targets.items():
        key, cert = issue_party_cert(ca, party)
        write_cert(cert_path, cert)
        write_key(key_path, key)
        written += [cert_path, key_path]
    return written


@dataclasses.dataclass(frozen=True)
class PartyCredentials:
    """A party's certified key (to sign) and the cluster CA (to check other parties' signatures).

    Attributes:
        party: this party's name (its certificate's CN and DNS subjectAltName).
        key: the party's private key (EC P-256).
        cert: the party's certificate, issued by ``ca``.
        ca: the cluster CA certificate.
    """

    party: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ca: x509.Certificate

    @classmethod
    def load(cls, config: ClusterConfig, party: str) -> PartyCredentials | None:
        """The credentials the config's TLS paths name for ``party``; None without ``[tls]``.

        Raises:
            ConfigError: the files are missing or unreadable, or not an EC key and certificates.
        """
        if config.tls is None:
            return None
        where = str(config.path) if config.path else None
        entry = next((p for p in config.parties if p.name == party), None)
        if entry is None or entry.cert is None or entry.key is None:
            raise ConfigError("missing cert/key path", file=where, key=f"parties.{party}")
        try:
            key = serialization.load_pem_private_key(entry.key.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(entry.cert.read_bytes())
            ca = x509.load_pem_x509_certificate(config.tls.ca_cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the TLS files of {party!r}: {exc}", file=where,
                              key=f"parties.{party}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"the key of {party!r} is not an EC key", file=where,
                              key=f"parties.{party}.key")
        return cls(party, key, cert, ca)

    def sign(self, data: bytes) -> tuple[bytes, bytes]:
        """``(certificate DER, ECDSA-SHA256 signature of data)``: what a receiver checks."""
        return (
            self.cert.public_bytes(serialization.Encoding.DER),
            self.key.sign(data, ec.ECDSA(hashes.SHA256())),
        )

    def verify(self, party: str, cert_der: bytes, signature: bytes, data: bytes) -> None:
        """Check that ``party`` signed ``data``: its certificate is issued by the cluster CA,
        valid now, names exactly ``party``, and its key made ``signature``.

        Raises:
            ValueError: any check fails (the message says which).
        """
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise ValueError(f"not a certificate: {exc}") from None
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError(
                f"the certificate is not issued by the cluster CA ({self.ca.subject.rfc4514_string()})"
            ) from None
        now = _now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ValueError(
                f"the certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d})"
            )
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = ext.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
        if cns != [party] or sans != [party]:
            raise ValueError(f"the certificate names CN={cns!r} SAN={sans!r}, not {party!r}")
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError("the certificate's key is not an EC key")  # noqa: TRY004 - one error type for callers
        try:
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, TypeError):
            raise ValueError("the signature does not verify with the certificate's key") from None


def check_own_certificate(config: ClusterConfig, party: str) -> None:
    """Check ``party``'s own certificate before any peer sees it: issued by the cluster CA (a
    certificate of the ``ca_cert`` file), naming ``party`` (CN and DNS SAN), valid now, and its
    key file holds the certificate's key. A party whose certificate is wrong fails at start-up
    saying what is wrong, instead of its peers refusing it for a minute.

    Raises:
        ConfigError: naming the file, the key of the config and the problem.
    """
    if config.tls is None:
        return
    where = str(config.path) if config.path else None
    entry = next((p for p in config.parties if p.name == party), None)
    if entry is None or entry.cert is None or entry.key is None:
        raise ConfigError("missing cert/key path", file=where, key=f"parties.{party}")
    fix = f" (make new ones with `mpcactors certs --config {where or 'FILE'}`)"
    try:
        cert = x509.load_pem_x509_certificate(entry.cert.read_bytes())
        cas = x509.load_pem_x509_certificates(config.tls.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(entry.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the TLS files of {party!r}: {exc}", file=where, key=f"parties.{party}") from exc
    cert_key = f"parties.{party}.cert"
    if not any(_issued_by(cert, ca) for ca in cas):
        raise ConfigError(
            f"the certificate of {party!r} ({entry.cert}) is issued by {cert.issuer.rfc4514_string()!r}, not by the "
            f"cluster CA in {config.tls.ca_cert} ({', '.join(ca.subject.rfc4514_string() for ca in cas)}){fix}",
            file=where, key=cert_key,
        )  # fmt: skip
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    if cns != [party] or sans != [party]:
        raise ConfigError(
            f"the certificate of {party!r} ({entry.cert}) names CN={cns!r} SAN={sans!r}, not {party!r}{fix}",
            file=where, key=cert_key,
        )  # fmt: skip
    now = _now()
    if now < cert.not_valid_before_utc:
        raise ConfigError(
            f"the certificate of {party!r} ({entry.cert}) is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            f"(is this host's clock right?)", file=where, key=cert_key,
        )  # fmt: skip
    if now > cert.not_valid_after_utc:
        raise ConfigError(
            f"the certificate of {party!r} ({entry.cert}) expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC{fix}",
            file=where, key=cert_key,
        )  # fmt: skip
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != (
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ):
        raise ConfigError(
            f"the key of {party!r} ({entry.key}) is not the key of its certificate ({entry.cert}){fix}",
            file=where, key=f"parties.{party}.key",
        )  # fmt: skip


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
