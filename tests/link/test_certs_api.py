"""Certificates made by generate_certs, and the link package's public API."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mpcactors import ConfigError, link
from mpcactors._certs import generate_certs
from mpcactors._config import ClusterConfig

from ._helpers import tls_cluster


def test_generate_certs_writes_where_the_config_points(tmp_path: Path) -> None:
    cfg = tls_cluster(tmp_path / "nested" / "dir", ("alice", "bob", "carol"), certs=False)
    written = generate_certs(cfg)
    assert written[0] == cfg.tls.ca_cert and all(p.exists() for p in written)  # type: ignore[union-attr]
    ca = x509.load_pem_x509_certificate(cfg.tls.ca_cert.read_bytes())  # type: ignore[union-attr]
    for p in cfg.parties:
        assert stat.S_IMODE(p.key.stat().st_mode) == 0o600  # type: ignore[union-attr]
        cert = x509.load_pem_x509_certificate(p.cert.read_bytes())  # type: ignore[union-attr]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == p.name
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [p.name]
        cert.verify_directly_issued_by(ca)
    assert stat.S_IMODE(cfg.tls.ca_key.stat().st_mode) == 0o600  # type: ignore[union-attr]


def test_generate_certs_to_an_out_dir(tmp_path: Path) -> None:
    cfg = ClusterConfig.local(["alice", "bob"])
    names = sorted(p.name for p in generate_certs(cfg, tmp_path / "out"))
    assert names == ["alice.key", "alice.pem", "bob.key", "bob.pem", "ca.key", "ca.pem"]
    with pytest.raises(ConfigError, match="tls"):
        generate_certs(cfg)


def test_public_api_is_pinned() -> None:
    assert sorted(link.__all__) == sorted([
        "DTYPES", "Channel", "JobLinkStatistics", "LinkStatistics", "MemoryByteStream",
        "MemoryNetwork", "Node", "NodeStatistics", "WanStream", "decode_payload",
        "encode_payload", "memory_stream_pair", "open_node",
    ])  # fmt: skip
    for name in link.__all__:
        assert getattr(link, name) is not None
