"""Private keys are written 0600 and never through a planted symlink (mpcactors/_certs.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpcactors import ConfigError
from mpcactors._certs import write_key


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_write_key_refuses_a_planted_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "world-readable.txt"
    target.write_text("attacker's file\n")
    target.chmod(0o644)
    link = tmp_path / "party.key"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=r"party\.key.*symbolic link"):
        write_key(link, _key())
    assert target.read_text() == "attacker's file\n"  # no key material went through the link
    assert sorted(p.name for p in tmp_path.iterdir()) == ["party.key", "world-readable.txt"]


def test_write_key_is_0600_and_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "party.key"
    first, second = _key(), _key()
    write_key(path, first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # a key file someone widened is replaced by a fresh 0600 file
    write_key(path, second)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert loaded.private_numbers() == second.private_numbers()  # type: ignore[union-attr]
    assert [p.name for p in path.parent.iterdir()] == ["party.key"]  # no temp file left
