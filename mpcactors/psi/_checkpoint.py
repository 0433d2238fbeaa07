"""Where a PSI job keeps its files, and how an interrupted job resumes from them.

Theory of operation
-------------------
Every job works in a folder (spilled buckets, the prepared stream, received chunks). Without a
``checkpoint_dir`` the folder is temporary and removed when the job ends. With one, it is
``<checkpoint_dir>/<job>-<hash>.<party>/`` and survives a crash:

- ``manifest.json`` (written atomically: temp file + ``os.replace``) holds the job's settings, a
  fingerprint of the input, this party's secret scalar and seed (so a resumed run blinds and
  orders its stream exactly as before; the folder is created mode 0700 and the file 0600, and both are
  deleted when the job succeeds), the *session* both parties agreed on, and the preparation
  summary once preparation finished.
- ``chunks/<kind>/<index>.bin``: every received or computed ciphertext chunk, written to a temp
  name and renamed, so a chunk file exists only when complete. The set of files *is* the
  progress; there is no second record to get out of step with it.

Who may read it: the folder holds the job's secrets (scalar, seed, the key sealing the
digests), so ``<checkpoint_dir>`` must be owned by this user and not writable by group or
others (created 0700 when missing), the job folder is created 0700 (a planted symlink or a
folder of another owner is refused, with a :class:`~mpcactors.PsiError` naming the path and the
problem), and every file in it is created 0600 (:func:`private_open`). The prepared stream holds
digests sealed under a key derived from the job's seed (a keyed hash, :mod:`._prepare`), never
plain hashes of the ids.

Resume rule (decided in the hello exchange, :func:`resume_agreed`): both parties offer the
session of their checkpoint (or none); they resume only when both offer the same session, i.e.
both still hold the state of the same earlier run. Otherwise both discard what they have and
start afresh -- the result is the same either way, a resume only saves work. A resumed party
reuses its secret, so double-blinded values computed before and after the crash agree.

Durability: files are not fsync'ed, so a checkpoint survives a process crash (SIGKILL), not a
power cut of the machine (a power cut loses at most the chunks in the page cache, which the
rename rule turns into missing chunks, never corrupt ones).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes

from .._errors import PsiError

__all__ = ["FORMAT", "Workspace", "check_private_dir", "private_open", "resume_agreed"]

FORMAT = 2  # 2: sealed digests, PSI v2 (a format-1 checkpoint starts afresh)
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def private_open(path: str | os.PathLike[str], buffering: int = -1) -> Any:
    """Open ``path`` for writing (truncated) as a file only this user can read: mode 0600.

    ``O_NOFOLLOW``: a symlink planted under that name is refused, not written through.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC: narrow it
        return os.fdopen(fd, "wb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def check_private_dir(path: Path, *, what: str, follow: bool) -> os.stat_result:
    """Refuse a folder that others could tamper with: not ours, or writable by group/others.

    Args:
        path: the folder.
        what: how the error names it ("checkpoint folder", "job folder").
        follow: whether ``path`` may be a symlink (the user's own ``checkpoint_dir`` may be;
            the job folder inside it may not).

    Raises:
        PsiError: names the path and the problem.
    """
    try:
        st = path.stat() if follow else path.lstat()
    except OSError as exc:
        raise PsiError(f"{what} {str(path)!r} cannot be used: {exc}") from exc
    if not follow and stat.S_ISLNK(st.st_mode):
        raise PsiError(f"{what} {str(path)!r} is a symbolic link: refusing to keep secrets there")
    if not stat.S_ISDIR(st.st_mode):
        raise PsiError(f"{what} {str(path)!r} is not a folder")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise PsiError(
            f"{what} {str(path)!r} is owned by uid {st.st_uid}, not by this user (uid {uid}): "
            "refusing to keep secrets there"
        )
    if st.st_mode & 0o022:
        raise PsiError(
            f"{what} {str(path)!r} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): refusing to keep secrets there (chmod go-w, or "
            "use a private folder)"
        )
    return st


def resume_agreed(mine: str | None, theirs: str | None) -> bool:
    """Resume only when both parties hold a checkpoint of the same session."""
    return mine is not None and mine == theirs


class Workspace:
    """A job's folder: manifest, prepared input, chunk files.

    Args:
        checkpoint_dir: parent folder for persistent checkpoints, or None for a temp folder.
        job: the job id.
        party: this party's name.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike[str] | None, job: str, party: str) -> None:
        self.persistent = checkpoint_dir is not None
        if checkpoint_dir is None:
            self.root = Path(tempfile.mkdtemp(prefix="mpcactors-psi-"))
        else:
            # readable, and unique: two job ids that sanitise alike still get two folders
            h = hashes.Hash(hashes.SHA256())
            h.update(f"{job}\0{party}".encode())
            digest = h.finalize().hex()[:10]
            name = f"{_SAFE.sub('_', job)[:80]}-{digest}.{_SAFE.sub('_', party)}"
            parent = Path(checkpoint_dir)
            try:
                parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise PsiError(f"checkpoint folder {str(parent)!r} cannot be created: {exc}") from exc
            check_private_dir(parent, what="checkpoint folder", follow=True)
            self.root = parent / name
            with contextlib.suppress(FileExistsError):
                self.root.mkdir(mode=0o700)
            st = check_private_dir(self.root, what="PSI job folder", follow=False)
            if st.st_mode & 0o077:  # ours but readable by others: close it before use
                os.chmod(self.root, 0o700)

    @property
    def prep_dir(self) -> Path:
        return self.root / "prep"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest of an earlier run, or None when absent or unreadable."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        return data

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest atomically (mode 0600)."""
        if not self.persistent:
            return
        data = dict(manifest, format=FORMAT)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".manifest-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.manifest_path)

    def reset(self) -> None:
        """Forget every earlier state (fresh start): empty the folder."""
        for child in self.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()

    def chunk_dir(self, kind: str) -> Path:
        d = self.root / "chunks" / kind
        d.parent.mkdir(exist_ok=True, mode=0o700)  # (parents=True would make it 0755)
        d.mkdir(exist_ok=True, mode=0o700)
        return d

    def chunk_path(self, kind: str, index: int) -> Path:
        return self.chunk_dir(kind) / f"{index:08d}.bin"

    def write_chunk(self, kind: str, index: int, data: bytes) -> None:
        """Store a chunk so that it exists only when complete (temp name, then rename)."""
        path = self.chunk_path(kind, index)
        tmp = path.with_suffix(".part")
        with private_open(tmp) as f:
            f.write(data)
        os.replace(tmp, path)

    def read_chunk(self, kind: str, index: int) -> np.ndarray:
        return np.fromfile(self.chunk_path(kind, index), dtype=np.uint8)

    def chunks_present(self, kind: str) -> set[int]:
        """Indices of the complete chunk files of ``kind``."""
        out = set()
        for p in self.chunk_dir(kind).iterdir():
            if p.suffix == ".bin" and p.stem.isdigit():
                out.add(int(p.stem))
        return out

    def remove(self) -> None:
        """Delete the folder (at the end of a successful job, or of any temp job)."""
        shutil.rmtree(self.root, ignore_errors=True)
