"""Cluster configuration: TOML files validated into frozen dataclasses.

A cluster file names the cluster, its parties with their addresses and TLS files, the default
secure protocol and the link options. Every problem raises :class:`ConfigError` naming the file
and the key, e.g. ``configs/local3.toml: [link.peer_timeout_s] must be a positive number, not -1``.
Relative TLS paths resolve against the folder of the config file, so ``mpcactors certs`` then
``mpcactors run`` works with no editing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import ConfigError

__all__ = [
    "ClusterConfig",
    "LinkOptions",
    "PartyConfig",
    "RuntimeOptions",
    "TlsConfig",
    "WanProfile",
    "load_config",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")
PROTOCOLS = ("rep3", "semi2k")
# semi2k without a dealer: matrix triples chosen by modelled cost, always by OT, always by HE
MATRIX_TRIPLES = ("auto", "ot", "he")
SOFTSPOKEN_KS = (1, 2, 4, 8)  # ot/_softspoken.KS (this module imports no protocol code; a test pins them equal)


@dataclasses.dataclass(frozen=True, slots=True)
class LinkOptions:
    """Knobs of every link between two parties (DESIGN.md section 3)."""

    connect_retry_times: int = 20  # dial attempts before PeerUnavailable
    connect_retry_interval_ms: int = 200  # first backoff delay; doubles with jitter, capped
    connect_timeout_s: float = 60.0  # overall deadline for connecting to one peer
    peer_timeout_s: float = 30.0  # silence (or absence after a drop) before PeerLost
    job_window_bytes: int = 16 * 1024 * 1024  # per (peer, job) credit window
    max_frame_bytes: int = 64 * 1024 * 1024  # largest frame accepted on read
    heartbeat_interval_s: float = 1.0  # PING period; liveness and RTT
    chunk_bytes: int = 256 * 1024  # large payloads are cut into chunks of this size
    unopened_job_timeout_s: float = 30.0  # how long messages for an unopened job may wait
    max_message_bytes: int = 1 << 30  # largest single message (encoded payload) on a link
    max_channels_per_job: int = 64  # channels a peer may use in one job
    max_jobs_per_peer: int = 4096  # live jobs with one peer (opened or not) at a time
    max_unopened_bytes: int = 128 * 1024 * 1024  # bytes held per peer for jobs not opened yet
    io_thread: bool = True  # TCP+TLS socket I/O and keepalives on a thread of its own (section 9)


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Knobs of a party's runtime node (the ``[runtime]`` table)."""

    compute_threads: int = 0  # worker threads for big op steps, node-wide; 0: the CPU count
    # MiB that worker-thread op steps may use at once, node-wide (each holds its estimated
    # working memory while it computes); 0: half the physical memory
    memory_budget_mb: int = 0
    # numpy's transparent huge pages for arrays of 4 MiB and more (process-wide, set when a node
    # opens). Off by default: where the kernel's THP defrag is "madvise" (a common default), a
    # huge page's first touch stalls for memory compaction; measured on a 2-core VM, two rep3
    # jobs at once took 1.05-1.08x the time of one after another with them, 0.86x without.
    # "auto" leaves numpy as it is (its own default, or NUMPY_MADVISE_HUGEPAGE) for embedders
    # that manage it themselves.
    numpy_huge_pages: bool | str = False


@dataclasses.dataclass(frozen=True, slots=True)
class WanProfile:
    """In-process WAN emulation between every pair of parties (0 means off)."""

    latency_ms: float = 0.0  # one-way
    bandwidth_mbps: float = 0.0  # per direction; 0 is unlimited
    jitter_ms: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.latency_ms > 0 or self.bandwidth_mbps > 0 or self.jitter_ms > 0


@dataclasses.dataclass(frozen=True, slots=True)
class PartyConfig:
    name: str
    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_cert: Path
    ca_key: Path | None = None  # only `mpcactors certs` needs it; parties never read it


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A validated cluster file. Parties keep the file's order."""

    cluster_id: str
    parties: tuple[PartyConfig, ...]
    tls: TlsConfig | None = None
    link: LinkOptions = LinkOptions()
    wan: WanProfile = WanProfile()
    runtime: RuntimeOptions = RuntimeOptions()
    protocol: str = "rep3"
    fxp_bits: int = 18
    dealer: str | None = None
    softspoken_k: int = 2  # semi2k without a dealer: bits per small VOLE of the OT extension
    # semi2k without a dealer: how matrix triples are made ("auto", "ot" or "he")
    matrix_triples: str = "auto"
    # semi2k without a dealer: how elementwise (mul) triples are made ("auto", "ot" or "he")
    mul_triples: str = "auto"
    path: Path | None = None

    @property
    def party_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parties)

    def party(self, name: str) -> PartyConfig:
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError(
            f"unknown party {name!r}; the cluster has {list(self.party_names)}",
            file=str(self.path) if self.path else None,
            key="parties",
        )

    def replace(self, **changes: Any) -> ClusterConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def local(cls, parties: list[str], *, cluster_id: str = "local", **options: Any) -> ClusterConfig:
        """A config for in-memory simulation: no addresses, no TLS."""
        link = options.pop("link", LinkOptions())
        return cls(
            cluster_id=cluster_id,
            parties=tuple(PartyConfig(n, "127.0.0.1", 0) for n in parties),
            link=link,
            **options,
        )


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster TOML file.

    Args:
        path: the TOML file.

    Returns:
        The validated :class:`ClusterConfig`.

    Raises:
        ConfigError: the file is missing, not TOML, or any key is missing or wrong (the message
            names the file and the key).
    """
    path = Path(path)
    fname = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", file=fname) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc}", file=fname) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=fname) from None
    return parse_config(raw, path=path)


def parse_config(raw: Mapping[str, Any], *, path: Path | None = None) -> ClusterConfig:
    """Validate an already-parsed TOML mapping (see :func:`load_config`)."""
    fname = str(path) if path else "<config>"
    base = path.parent if path else Path.cwd()

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(msg, file=fname, key=key)

    known = {"cluster", "protocol", "fxp_bits", "dealer", "softspoken_k", "matrix_triples", "mul_triples", "tls", "link", "wan", "runtime", "parties"}
    for k in raw:
        if k not in known:
            raise err(k, f"unknown key; expected one of {sorted(known)}")

    cluster_id = raw.get("cluster")
    if not isinstance(cluster_id, str) or not cluster_id:
        raise err("cluster", f"must be a non-empty string (the cluster id), not {cluster_id!r}")

    protocol = raw.get("protocol", "rep3")
    if protocol not in PROTOCOLS:
        raise err("protocol", f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    fxp_bits = raw.get("fxp_bits", 18)
    if not isinstance(fxp_bits, int) or isinstance(fxp_bits, bool) or not 0 <= fxp_bits <= 40:
        raise err("fxp_bits", f"must be an integer in [0, 40], not {fxp_bits!r}")

    parties_raw = raw.get("parties")
    if not isinstance(parties_raw, Mapping) or not parties_raw:
        raise err("parties", "must be a table of [parties.NAME] entries with an address")
    has_tls = "tls" in raw
    parties: list[PartyConfig] = []
    seen_addr: dict[tuple[str, int], str] = {}
    for name, entry in parties_raw.items():
        key = f"parties.{name}"
        if not _NAME.match(name):
            raise err(key, f"party name {name!r} must start with a letter and use [A-Za-z0-9_-]")
        if not isinstance(entry, Mapping):
            raise err(key, f"must be a table, not {entry!r}")
        for k in entry:
            if k not in ("address", "cert", "key"):
                raise err(f"{key}.{k}", "unknown key; expected address, cert, key")
        host, port = _parse_address(entry.get("address"), err, f"{key}.address")
        if (host, port) in seen_addr and port != 0:
            raise err(f"{key}.address", f"{host}:{port} is also {seen_addr[(host, port)]!r}'s address")
        seen_addr[(host, port)] = name
        cert = _path(entry.get("cert"), base, err, f"{key}.cert", required=has_tls)
        keyp = _path(entry.get("key"), base, err, f"{key}.key", required=has_tls)
        parties.append(PartyConfig(name, host, port, cert, keyp))
    if len(parties) < 2:
        raise err("parties", f"a cluster needs at least 2 parties, got {len(parties)}")

    tls = None
    if has_tls:
        t = raw["tls"]
        if not isinstance(t, Mapping):
            raise err("tls", "must be a table")
        for k in t:
            if k not in ("ca_cert", "ca_key"):
                raise err(f"tls.{k}", "unknown key; expected ca_cert, ca_key")
        ca_cert = _path(t.get("ca_cert"), base, err, "tls.ca_cert", required=True)
        assert ca_cert is not None  # required=True guarantees it; narrows the type only
        tls = TlsConfig(ca_cert, _path(t.get("ca_key"), base, err, "tls.ca_key", required=False))

    link = _dataclass_from(LinkOptions, raw.get("link", {}), "link", err)
    wan = _dataclass_from(WanProfile, raw.get("wan", {}), "wan", err)
    runtime = _dataclass_from(RuntimeOptions, raw.get("runtime", {}), "runtime", err)

    dealer = raw.get("dealer")
    names = [p.name for p in parties]
    # semi2k: a party that deals, "none" (two holders make correlations by OT; also the default
    # with two parties), or "trusted-first-party" (insecure, warns)
    if dealer is not None and dealer not in names and dealer not in ("none", "trusted-first-party"):
        raise err(
            "dealer",
            f"dealer {dealer!r} is not a party, 'none' or 'trusted-first-party'; parties are {names}",
        )
    if protocol == "rep3" and len(parties) != 3:
        raise err("protocol", f"rep3 needs exactly 3 parties, the file has {len(parties)}")
    # semi2k without a dealer: SoftSpoken's bits per small VOLE (U is 16 / k bytes per OT)
    softspoken_k = raw.get("softspoken_k", 2)
    if not isinstance(softspoken_k, int) or isinstance(softspoken_k, bool) or softspoken_k not in SOFTSPOKEN_KS:
        raise err("softspoken_k", f"must be 1, 2, 4 or 8 (bits per small VOLE; 4 sends less on slow links), not {softspoken_k!r}")
    # semi2k without a dealer: matrix triples by OT, by lattice HE (TenSEAL), or chosen by cost
    matrix_triples = raw.get("matrix_triples", "auto")
    if matrix_triples not in MATRIX_TRIPLES:
        raise err("matrix_triples", f"must be one of {', '.join(map(repr, MATRIX_TRIPLES))}, not {matrix_triples!r}")
    # ... and elementwise triples (mul), the same choices
    mul_triples = raw.get("mul_triples", "auto")
    if mul_triples not in MATRIX_TRIPLES:
        raise err("mul_triples", f"must be one of {', '.join(map(repr, MATRIX_TRIPLES))}, not {mul_triples!r}")

    return ClusterConfig(
        cluster_id=cluster_id,
        parties=tuple(parties),
        tls=tls,
        link=link,
        wan=wan,
        runtime=runtime,
        protocol=protocol,
        fxp_bits=fxp_bits,
        dealer=dealer,
        softspoken_k=softspoken_k,
        matrix_triples=matrix_triples,
        mul_triples=mul_triples,
        path=path,
    )


def _parse_address(value: Any, err: Any, key: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise err(key, f"must be 'host:port', not {value!r}")
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_s)
    except ValueError:
        raise err(key, f"port must be an integer, not {port_s!r}") from None
    if not host or not 0 <= port <= 65535:
        raise err(key, f"must be 'host:port' with a port in [1, 65535], not {value!r}")
    if port == 0:
        raise err(key, f"port 0 in {value!r}: the peers must know where to dial, so give a fixed free port")
    _check_host(host, value, err, key)
    return host, port


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _check_host(host: str, value: str, err: Any, key: str) -> None:
    """An IP address, or a syntactically valid host name (resolution happens at bind/dial)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if ":" in host or re.fullmatch(r"[0-9.]+", host):
        raise err(key, f"{host!r} in {value!r} is not a valid IP address")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise err(key, f"{host!r} in {value!r} is not a valid host name or IP address")


def _path(value: Any, base: Path, err: Any, key: str, *, required: bool) -> Path | None:
    if value is None:
        if required:
            raise err(key, "missing (a TLS file path, relative to the config file's folder)")
        return None
    if not isinstance(value, str) or not value:
        raise err(key, f"must be a path string, not {value!r}")
    p = Path(value)
    return p if p.is_absolute() else (base / p)


def _dataclass_from(cls: Any, table: Any, section: str, err: Any) -> Any:
    if not isinstance(table, Mapping):
        raise err(section, f"must be a table, not {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{section}.{k}"
        if k not in fields:
            raise err(key, f"unknown key; expected one of {sorted(fields)}")
        default = fields[k].default
        if section == "runtime" and k == "numpy_huge_pages":
            if not (isinstance(v, bool) or v == "auto"):
                raise err(key, f'must be true, false or "auto", not {v!r}')
            values[k] = v
            continue
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise err(key, f"must be true or false, not {v!r}")
            values[k] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise err(key, f"must be a number, not {v!r}")
        if isinstance(default, int) and not isinstance(v, int):
            raise err(key, f"must be an integer, not {v!r}")
        if section == "wan":
            if v < 0:
                raise err(key, f"must be >= 0, not {v!r}")
        elif k == "connect_retry_times":
            if v < 1:
                raise err(key, f"must be >= 1, not {v!r}")
        elif v <= 0:
            raise err(key, f"must be a positive number, not {v!r}")
        values[k] = float(v) if isinstance(default, float) else v
    opts = cls(**values)
    if section == "link" and opts.chunk_bytes > opts.job_window_bytes:
        raise err("link.chunk_bytes", "must not exceed link.job_window_bytes")
    if section == "link" and opts.chunk_bytes * 2 > opts.max_frame_bytes:
        raise err("link.max_frame_bytes", "must be at least twice link.chunk_bytes")
    if section == "link" and opts.max_unopened_bytes < opts.job_window_bytes:
        raise err(
            "link.max_unopened_bytes",
            f"must be at least link.job_window_bytes={opts.job_window_bytes} (a peer may fill "
            f"one job's window before it is opened here), not {opts.max_unopened_bytes}",
        )
    return opts
