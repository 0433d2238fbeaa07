"""Shared vocabulary of the secure-aggregation state machines: stages, parameters, the SecAgg+
neighbour graph and the wire-message checks.

Theory of operation
-------------------
One aggregation runs the five stages of Bonawitz et al. 2017 (Fig. 4), star-shaped through the
server; each stage is "clients send, server collects until everyone alive answered or the stage
timed out, server sends the next stage's message to the clients that answered":

    ADVERTISE_KEYS     u -> S: c_u^PK (encryption), s_u^PK (masking)          -> U1
    SHARE_KEYS         S -> u: the roster;  u -> S: Enc_{u,v}(shares of s_u^SK, b_u)  -> U2
    MASKED_INPUT       S -> u: ciphertexts for u;  u -> S: y_u (masked vector)  -> U3
    CONSISTENCY_CHECK  S -> u: U3;  u -> S: Sig_u(U3)   (optional)            -> U4
    UNMASKING          S -> u: U3 (+ signatures);  u -> S: b-shares of U3 members,
                       s^SK-shares of U2 \\ U3 members                        -> U5

Every stage needs at least ``threshold`` clients; below it the server aborts with
:class:`~mpcactors.AggregationError` and reveals nothing. SecAgg+ (Bell et al. 2020, section 3)
replaces the complete graph by a random k-regular graph: the server shuffles U1 into a ring and
each client masks with, and shares its secrets among, its k nearest ring neighbours
(``neighbours=k``, k even; ``None`` keeps the complete graph of the original protocol). A
client's secrets are ``threshold``-of-(k+1) shared among its neighbourhood and itself.

The state machines are sans-IO (h11 style): :class:`~mpcactors.secagg._client.SecAggClient`
and :class:`~mpcactors.secagg._server.SecAggServer` take decoded messages and return the
messages to send; the async runner does the waiting. Messages are msgpack-able dicts with
string keys; ``"stage"`` names the stage (or ``"abort"``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import AggregationError, ConfigError
from ._masking import Quantizer

__all__ = ["ABORT", "SecAggParams", "Stage", "check_names", "field", "ring_neighbours"]

ABORT = "abort"  # the "stage" of the server's abort message


class Stage(enum.Enum):
    """The protocol's stages, in order (values are the wire names)."""

    ADVERTISE_KEYS = "advertise_keys"  # clients send their two X25519 public keys
    SHARE_KEYS = "share_keys"  # clients send shares of s_u^SK and b_u, sealed per receiver
    MASKED_INPUT = "masked_input"  # clients send y_u = q(x_u) + masks
    CONSISTENCY_CHECK = "consistency_check"  # clients sign the survivor list U3 (optional)
    UNMASKING = "unmasking"  # clients send the shares that remove the masks

    @classmethod
    def parse(cls, value: object) -> Stage:
        """The stage named ``value`` on the wire.

        Raises:
            AggregationError: not a stage name.
        """
        try:
            return cls(value)
        except ValueError:
            raise AggregationError(f"unknown secure-aggregation stage {value!r}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class SecAggParams:
    """Everything the parties of one aggregation must agree on.

    Attributes:
        job: the job id (binds keys, masks and ciphertexts to this job).
        tag: the aggregation's name inside the job (several aggregations per job differ here).
        threshold: t, the fewest clients every stage needs and the shares that rebuild a secret.
        quantizer: clip range, fractional bits and ring size.
        neighbours: SecAgg+ graph degree k (even); None for the complete graph (SecAgg).
        consistency_check: run the signed CONSISTENCY_CHECK stage (needs threshold > n/2).
        signed_keys: every client signs its advertised public keys with its certified party
            key, and every client checks the keys the server relays against the cluster CA
            (on whenever the cluster has a PKI, i.e. a ``[tls]`` section).
    """

    job: str
    tag: str
    threshold: int
    quantizer: Quantizer
    neighbours: int | None = None
    consistency_check: bool = False
    signed_keys: bool = False

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or t < 2:
            raise ConfigError(
                f"must be an integer >= 2 (one survivor's sum is its input), not {t!r}",
                key="threshold",
            )
        k = self.neighbours
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2:
                raise ConfigError(
                    f"must be None or an even integer >= 2, not {k!r}", key="neighbours"
                )
            if t > k + 1:
                raise ConfigError(
                    f"threshold {t} exceeds the neighbourhood size {k + 1} (k neighbours + self)",
                    key="threshold",
                )
        if not isinstance(self.job, str) or not isinstance(self.tag, str):
            raise ConfigError(f"job and tag must be strings, not {self.job!r}, {self.tag!r}")

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages this aggregation runs, in order."""
        if self.consistency_check:
            return tuple(Stage)
        return tuple(s for s in Stage if s is not Stage.CONSISTENCY_CHECK)

    def wire(self) -> dict[str, Any]:
        """The agreed values as a msgpack-able dict (the server compares clients' copies)."""
        q = self.quantizer
        return {
            "threshold": self.threshold,
            "clip": float(q.clip),
            "frac_bits": q.frac_bits,
            "ring_bits": q.ring_bits,
            "neighbours": self.neighbours,
            "consistency_check": self.consistency_check,
            "signed_keys": self.signed_keys,
        }

    def check_clients(self, clients: Sequence[str]) -> None:
        """Validate the client list against the threshold.

        Raises:
            ConfigError: repeated names, fewer clients than the threshold, or (with the
                consistency check) a threshold of at most half the clients.
        """
        if len(set(clients)) != len(clients):
            raise ConfigError(f"client names repeat: {list(clients)!r}", key="clients")
        n, t = len(clients), self.threshold
        if n < t:
            raise ConfigError(f"threshold {t} exceeds the number of clients {n}", key="threshold")
        if self.consistency_check and 2 * t <= n:
            raise ConfigError(
                f"threshold {t} with {n} clients: the consistency check needs threshold > n/2 "
                f"(at least {n // 2 + 1}), else a server could run two disjoint halves of the "
                "clients as two aggregations with different survivor sets",
                key="threshold",
            )


def ring_neighbours(order: Sequence[str], k: int | None) -> dict[str, frozenset[str]]:
    """The SecAgg+ graph: each client's k nearest neighbours on the ring ``order``.

    ``u = order[i]`` is adjacent to ``order[i +- 1], ..., order[i +- k/2]`` (indices mod m), a
    symmetric k-regular (Harary) graph; with ``k is None`` or ``k >= m - 1`` it is complete.
    """
    m = len(order)
    if k is None or k >= m - 1:
        everyone = frozenset(order)
        return {u: everyone - {u} for u in order}
    half = k // 2
    return {
        u: frozenset(order[(i + d) % m] for d in range(-half, half + 1) if d != 0)
        for i, u in enumerate(order)
    }


def field(msg: Mapping[str, Any], name: str, kind: type | tuple[type, ...], sender: str) -> Any:
    """``msg[name]`` checked to be of ``kind``.

    Raises:
        AggregationError: missing or of the wrong type (names the sender and the field).
    """
    if not isinstance(msg, Mapping):
        raise AggregationError(f"message from {sender!r} is not a map: {type(msg).__name__}")
    value = msg.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise AggregationError(
            f"message from {sender!r}: field {name!r} is {type(value).__name__}, "
            f"expected {getattr(kind, '__name__', kind)}"
        )
    return value


def check_names(value: Any, sender: str, what: str, *, within: frozenset[str]) -> frozenset[str]:
    """A list of distinct party names, all in ``within``.

    Raises:
        AggregationError: not a list of strings, repeats, or names outside ``within``.
    """
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AggregationError(f"{what} from {sender!r} is not a list of names")
    names = frozenset(value)
    if len(names) != len(value):
        raise AggregationError(f"{what} from {sender!r} repeats names")
    unknown = names - within
    if unknown:
        raise AggregationError(f"{what} from {sender!r} names unknown parties {sorted(unknown)}")
    return names
