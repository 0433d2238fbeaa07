"""A two-party TLS cluster on free loopback ports for the benchmarks that start real processes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def two_party_cluster(folder: Path, name: str, top: Sequence[str] = (), sections: Sequence[str] = ()) -> Path:
    """Write ``folder/cluster.toml`` for alice and bob (semi2k, generous connect retries) with
    the extra top-level lines ``top`` and extra ``sections``, and generate its certificates."""
    from mpcactors._certs import generate_certs
    from mpcactors._config import load_config
    from mpcactors._demo import free_ports

    pa, pb = free_ports(2)
    lines = [f'cluster = "{name}-{os.getpid()}"', 'protocol = "semi2k"', *top, "",
             "[tls]", 'ca_cert = "certs/ca.pem"', 'ca_key = "certs/ca.key"', "",
             "[link]", "connect_retry_times = 100", "connect_retry_interval_ms = 50",
             "connect_timeout_s = 60", "peer_timeout_s = 120", "", *sections]
    for party, port in (("alice", pa), ("bob", pb)):
        lines += [f"[parties.{party}]", f'address = "127.0.0.1:{port}"',
                  f'cert = "certs/{party}.pem"', f'key = "certs/{party}.key"', ""]
    path = folder / "cluster.toml"
    path.write_text("\n".join(lines))
    generate_certs(load_config(path))
    return path
