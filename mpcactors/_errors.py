"""The one tree of exceptions mpcactors raises.

Every error a user can see is an :class:`MpcError`. Messages carry what a person needs to act:
the party, the peer, the address, the job, the config key, the offending value with ``!r``.

    MpcError
    ├── ConfigError            bad cluster file, bad option
    ├── LinkError              anything between two parties
    │   ├── PeerUnavailable    could not connect after every attempt
    │   ├── PeerLost           connected once, then gone for longer than peer_timeout
    │   ├── AuthenticationError TLS / handshake identity check failed
    │   └── ProtocolError      malformed, oversized or unexpected bytes or frames
    ├── JobError               one job failed; the node and other jobs keep running
    │   ├── JobAborted         a party aborted the job (names that party and the cause)
    │   └── JobTimeout         the job ran past its deadline
    ├── ShapeError             operands whose shapes do not fit (also a ValueError)
    └── PsiError / AggregationError  input or protocol failures of those jobs
        └── PsiInputError      this party's PSI input is bad (its peer learns the kind only)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AggregationError",
    "AuthenticationError",
    "ConfigError",
    "JobAborted",
    "JobError",
    "JobTimeout",
    "LinkError",
    "MpcError",
    "PeerLost",
    "PeerUnavailable",
    "ProtocolError",
    "PsiError",
    "PsiInputError",
    "ShapeError",
]


class MpcError(Exception):
    """Base class of every exception mpcactors raises on purpose."""


class ConfigError(MpcError, ValueError):
    """Raised by config loading and option checks; names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ""
        if file is not None:
            where = f"{file}: "
        if key is not None:
            where += f"[{key}] "
        super().__init__(where + message)
        self.file = file
        self.key = key


class LinkError(MpcError):
    """Base of every failure of the connection between two parties."""

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class PeerUnavailable(LinkError):
    """Raised by the dialer when every connect attempt to a peer failed.

    ``__cause__`` is an ExceptionGroup of the attempts' errors (like trio's open_tcp_stream).
    """

    def __init__(self, peer: str, address: str, attempts: int, detail: str = "") -> None:
        msg = f"peer {peer!r} at {address} unavailable" + (
            f" after {attempts} connect attempt(s)" if attempts else ""  # 0: we accept, it dials
        )
        if detail:
            msg += f": {detail}"
        super().__init__(msg, peer=peer)
        self.address = address
        self.attempts = attempts


class PeerLost(LinkError):
    """Raised to every job with a peer that dropped and did not come back within peer_timeout,
    or that closed the link."""


class AuthenticationError(LinkError):
    """Raised when a peer's certificate or handshake does not prove the expected identity
    (wrong CA, wrong party name, wrong cluster id, wrong protocol version)."""


class ProtocolError(LinkError):
    """Raised on malformed, oversized, truncated or unexpected frames and payloads.

    On the receive path it poisons the session: the connection is dropped, never limped on.
    """


class JobError(MpcError):
    """Base of failures of one job; the node and the other jobs keep running."""

    def __init__(self, message: str, *, job: str | None = None) -> None:
        super().__init__(message)
        self.job = job


class JobAborted(JobError):
    """Raised at every party of a job when one party aborted it.

    Attributes name the party where the failure happened and its cause (text).
    """

    def __init__(self, job: str, party: str, cause: str) -> None:
        super().__init__(f"job {job!r} aborted by party {party!r}: {cause}", job=job)
        self.party = party
        self.cause = cause


class JobTimeout(JobError):
    """Raised when a job runs past its timeout, or when its ops wait for peers with no progress
    for its idle timeout (``detail`` then says which ops wait for whom)."""

    def __init__(self, job: str, timeout: float, party: str | None = None, detail: str = "") -> None:
        at = f" at party {party!r}" if party else ""
        msg = f"job {job!r} timed out after {timeout:g} s{at}"
        super().__init__(msg + (f": {detail}" if detail else ""), job=job)
        self.timeout = timeout
        self.party = party


class ShapeError(MpcError, ValueError):
    """Raised when operand shapes do not fit (broadcasting, matmul, reshape, inputs)."""


class UnsupportedOperation(MpcError, NotImplementedError):
    """Raised by ``mpcactors.jit`` for a JAX primitive (or a form of one) with no secure rule;
    names the primitive and the line of user code it came from."""


class PsiError(MpcError):
    """Raised by PSI jobs for bad input (missing key column, unreadable file, mismatched key
    counts between parties) and protocol failures."""


class PsiInputError(PsiError):
    """Raised by a PSI job for this party's own input (file, header, key columns, ids). The
    message names files and columns, so only the kind of error reaches the peer."""


class AggregationError(MpcError):
    """Raised by secure aggregation: too few survivors, a stage timeout, bad vectors."""


def describe_attempts(errors: Sequence[BaseException]) -> str:
    """One line summarising connect attempt errors, for PeerUnavailable messages."""
    if not errors:
        return ""
    last = errors[-1]
    return f"last error: {type(last).__name__}: {last}"
