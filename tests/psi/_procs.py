"""Real party processes for PSI integration tests: a TLS cluster on 127.0.0.1 and a runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mpcactors._certs import generate_certs
from mpcactors._config import load_config
from mpcactors._demo import free_ports

ROOT = Path(__file__).resolve().parents[2]
PARTY = Path(__file__).with_name("_party.py")


def make_cluster(folder: Path, *, peer_timeout_s: float = 10, retries: int = 40, connect_timeout_s: float = 30) -> Path:
    """A two-party (alice, bob) TLS cluster file with free ports, certificates generated."""
    pa, pb = free_ports(2)
    text = f"""cluster = "psi-test-{os.getpid()}"
protocol = "semi2k"

[tls]
ca_cert = "certs/ca.pem"
ca_key = "certs/ca.key"

[link]
connect_retry_times = {retries}
connect_retry_interval_ms = 50
connect_timeout_s = {connect_timeout_s}
peer_timeout_s = {peer_timeout_s}
heartbeat_interval_s = 0.5

[parties.alice]
address = "127.0.0.1:{pa}"
cert = "certs/alice.pem"
key = "certs/alice.key"

[parties.bob]
address = "127.0.0.1:{pb}"
cert = "certs/bob.pem"
key = "certs/bob.key"
"""
    path = folder / "cluster.toml"
    path.write_text(text)
    generate_certs(load_config(path))
    return path


def start(args: list[str], **kw: Any) -> subprocess.Popen:
    """Start ``tests/psi/_party.py ARGS`` (a guarded main: safe for worker processes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(PARTY), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, **kw)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
