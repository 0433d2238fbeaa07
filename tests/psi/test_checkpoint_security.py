"""The checkpoint folder keeps the job's secrets: private folders and files, no plain hashes of
ids, and a folder others could tamper with is refused with a PsiError naming it."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mpcactors._errors import JobAborted, PsiError
from mpcactors.psi import PsiProgress, PsiResult
from mpcactors.psi._checkpoint import Workspace
from mpcactors.psi._ecdh import encode_key, hash_encoded

from ._ref import run_pair
from .conftest import memory_nodes


class Crash(Exception):
    pass


def crash_at(fraction: float) -> Any:
    def callback(ev: PsiProgress) -> None:
        if ev.phase == "exchange" and ev.done >= fraction * ev.total:
            raise Crash(f"simulated crash at {ev.done}/{ev.total}")

    return callback


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.mark.trio
async def test_a_kept_checkpoint_is_private_and_holds_no_plain_hash(tmp_path: Path) -> None:
    ids_a = [f"user{i}@example.com" for i in range(600)]
    ids_b = [f"user{i}@example.com" for i in range(300, 900)]
    ck_a, ck_b = tmp_path / "new" / "ck_a", tmp_path / "ck_b"
    kw_a: dict[str, Any] = {"ids": ids_a, "checkpoint_dir": ck_a, "chunk_size": 50, "workers": 0}
    kw_b: dict[str, Any] = {"ids": ids_b, "checkpoint_dir": ck_b, "chunk_size": 50, "workers": 0}
    async with memory_nodes("alice", "bob") as nodes:
        first = await run_pair(nodes, "private", {**kw_a, "progress": crash_at(0.5)}, kw_b)
    assert isinstance(first["alice"], Crash) and isinstance(first["bob"], JobAborted), first
    assert mode(ck_a) == 0o700  # created by the job
    for ck in (ck_a, ck_b):
        (job_dir,) = ck.iterdir()
        assert mode(job_dir) == 0o700
        files = [p for p in job_dir.rglob("*") if p.is_file()]
        assert any(p.name == "own_h.bin" for p in files) and any(p.suffix == ".bin" for p in files)
        for p in job_dir.rglob("*"):
            assert mode(p) == (0o700 if p.is_dir() else 0o600), p
        blob = b"".join(p.read_bytes() for p in files)
        ids = ids_a if ck is ck_a else ids_b
        for x in ids[:200]:
            enc = encode_key([x])
            assert hash_encoded([enc]) not in blob  # the digest the protocol uses
            assert hashlib.sha256(enc).digest() not in blob
            assert hashlib.sha256(b"mpcactors/psi/ecdh-x25519/v1\x00" + enc).digest()[:31] not in blob
    # and the private checkpoint still resumes
    async with memory_nodes("alice", "bob") as nodes:
        second = await run_pair(nodes, "private", kw_a, kw_b)
    ra, rb = second["alice"], second["bob"]
    assert isinstance(ra, PsiResult) and isinstance(rb, PsiResult), second
    assert ra.resumed and rb.resumed and ra.intersection == 300


def test_a_group_or_world_writable_checkpoint_folder_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PsiError, match=r"'.*shared'.*writable by group or others \(mode 0777\)"):
        Workspace(shared, "job", "alice")
    shared.chmod(0o770)
    with pytest.raises(PsiError, match="writable by group or others"):
        Workspace(shared, "job", "alice")
    assert list(shared.iterdir()) == []  # nothing written there


def test_a_planted_job_folder_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ws = Workspace(ck, "job", "alice")
    name = ws.root.name
    ws.remove()
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (ck / name).symlink_to(elsewhere)
    with pytest.raises(PsiError, match=rf"{name}'.*symbolic link"):
        Workspace(ck, "job", "alice")
    (ck / name).unlink()
    (ck / name).mkdir(mode=0o777)
    (ck / name).chmod(0o777)
    with pytest.raises(PsiError, match=rf"{name}'.*writable by group or others"):
        Workspace(ck, "job", "alice")


def test_a_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck = tmp_path / "ck"
    ck.mkdir(mode=0o700)
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)  # as seen by another user
    with pytest.raises(PsiError, match=rf"'.*ck' is owned by uid {real}, not by this user"):
        Workspace(ck, "job", "alice")


def test_an_own_readable_job_folder_is_closed(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ws = Workspace(ck, "job", "alice")
    ws.root.chmod(0o755)
    assert mode(Workspace(ck, "job", "alice").root) == 0o700
