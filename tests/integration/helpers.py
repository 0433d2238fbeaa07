"""Helpers for tests that start real party processes over TLS on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mpcactors._demo import write_cluster

ROOT = Path(__file__).resolve().parents[2]


def make_cluster(tmp: Path, parties=("alice", "bob", "carol"), protocol="rep3", **kw) -> Path:
    cfg = write_cluster(tmp, tuple(parties), protocol, **kw)
    out = subprocess.run([sys.executable, "-m", "mpcactors", "certs", "--config", str(cfg)], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return cfg


def start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mpcactors", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)


def finish(procs: dict[str, subprocess.Popen], timeout: float = 120) -> dict[str, tuple[int, str, str]]:
    """Wait for every process (absolute timeout); kill leftovers; returns (rc, stdout, stderr)."""
    out = {}
    try:
        for name, p in procs.items():
            o, e = p.communicate(timeout=timeout)
            out[name] = (p.returncode, o, e)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out
