"""The server's sans-IO state machine of secure aggregation (Bonawitz et al. 2017, Fig. 4).

Theory of operation
-------------------
The server is told each client's message with :meth:`SecAggServer.receive` and decides when a
stage ends (everyone in :attr:`SecAggServer.expected` answered, or the runner's stage timer ran
out) by calling :meth:`SecAggServer.close_stage`, which checks the threshold and returns the next
stage's messages, one per client still in. A malformed message excludes its sender (recorded in
:attr:`SecAggServer.excluded`); a stale one (an earlier stage, arrived late) is ignored.

At the end of UNMASKING (U5 = the clients that answered) the server rebuilds, each from
``threshold`` shares, b_u for every u in U3 and s_v^SK for every v in U2 \\ U3 with a neighbour in
U3 (checking s_v^SK against the advertised s_v^PK), and only when *every* one of them can be
rebuilt computes

    z = sum_{u in U3} y_u - sum_{u in U3} PRG(b_u)
        - sum_{v in U2 \\ U3} sum_{u in N(v) & U3} sign(u, v) * PRG(s_{u,v})     (mod 2^k)

so that z = sum_{u in U3} q(x_u) (plus the server's own quantised vector). Any shortfall raises
:class:`~mpcactors.AggregationError` before a single mask is removed: no partial sum exists.
"""

from __future__ import annotations

import enum
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .._errors import AggregationError
from ._client import consistency_message
from ._masking import check_public_key, expand_mask, pair_seed, self_mask_key
from ._protocol import ABORT, SecAggParams, Stage, field, ring_neighbours
from ._shamir import reconstruct_many, share_from_bytes

__all__ = ["SecAggServer", "ServerState"]


class ServerState(enum.Enum):
    COLLECTING = "collecting"  # inside a stage: receive() records, close_stage() ends it
    DONE = "done"  # the sum is in .result
    FAILED = "failed"  # aborted (below threshold or inconsistent); nothing was revealed


class SecAggServer:
    """The server's side of one aggregation.

    Args:
        params: the agreed parameters.
        clients: the clients invited to this aggregation.
        own_vector: the server's own input (added as a plain quantised summand), or None.

    Attributes:
        stage: the stage being collected.
        state: COLLECTING, DONE or FAILED.
        members: for each closed stage, the clients that completed it (U1, U2, ...).
        excluded: client -> why its message was refused.
        result: after the last stage, the dequantised float64 sum.
    """

    def __init__(
        self, params: SecAggParams, clients: Sequence[str], own_vector: Any = None
    ) -> None:
        params.check_clients(clients)
        self.params = params
        self.clients = frozenset(clients)
        self.state = ServerState.COLLECTING
        self.stage = Stage.ADVERTISE_KEYS
        self.members: dict[Stage, frozenset[str]] = {}
        self.excluded: dict[str, str] = {}
        self.result: np.ndarray | None = None
        self._own: np.ndarray | None = None
        if own_vector is not None:
            own = np.asarray(own_vector)
            if own.ndim != 1:
                raise AggregationError(f"the server's vector must be 1-D, not shape {own.shape}")
            self._own = params.quantizer.quantise(own)[0]
        params.quantizer.check_capacity(len(clients) + (own_vector is not None))
        self._current = self.clients  # who may answer the stage being collected
        self._got: dict[str, Mapping[str, Any]] = {}
        self._keys: dict[str, Mapping[str, Any]] = {}
        self._order: tuple[str, ...] = ()
        self._graph: dict[str, frozenset[str]] = {}
        self._sealed: dict[str, dict[str, bytes]] = {}
        self._masked: dict[str, np.ndarray] = {}
        self._signatures: dict[str, bytes] = {}
        self._length = -1

    @property
    def expected(self) -> frozenset[str]:
        """Clients whose message for the current stage has not arrived yet."""
        if self.state is not ServerState.COLLECTING:
            return frozenset()
        return self._current - self._got.keys() - self.excluded.keys()

    def receive(self, client: str, message: Mapping[str, Any]) -> bool:
        """Record ``client``'s message for the current stage.

        Returns:
            True if recorded; False if stale (another stage), a duplicate, or malformed (the
            client is then excluded, see :attr:`excluded`).
        """
        if client not in self.expected:
            return False
        if not isinstance(message, Mapping) or message.get("stage") != self.stage.value:
            return False
        check: Callable[[str, Mapping[str, Any]], None] = getattr(self, _CHECKS[self.stage])
        try:
            check(client, message)
        except AggregationError as exc:
            self.excluded[client] = str(exc)
            return False
        self._got[client] = message
        return True

    def close_stage(self) -> dict[str, dict[str, Any]]:
        """End the current stage with whoever answered; return the next stage's messages.

        Returns:
            ``{client: message}`` for the clients still in (empty after the last stage, when
            :attr:`result` holds the sum).

        Raises:
            AggregationError: fewer than ``threshold`` clients answered, or the unmasking shares
                cannot rebuild every needed secret. The server is then FAILED.
        """
        if self.state is not ServerState.COLLECTING:
            raise AggregationError(f"close_stage() in state {self.state.value}")
        answered = frozenset(self._got)
        try:
            self._need(len(answered), f"answered {self.stage.value}")
            self.members[self.stage] = answered
            out: dict[str, dict[str, Any]] = getattr(self, _CLOSERS[self.stage])(answered)
        except AggregationError:
            self.state = ServerState.FAILED
            raise
        stages = self.params.stages
        if self.stage is stages[-1]:
            self.state = ServerState.DONE
        else:
            self.stage = stages[stages.index(self.stage) + 1]
            self._current = answered
            self._got = {}
        return out

    def abort_messages(self, reason: str) -> dict[str, dict[str, Any]]:
        """Abort messages for every client still in the aggregation (FAILED afterwards)."""
        self.state = ServerState.FAILED
        return {c: {"stage": ABORT, "reason": reason} for c in sorted(self._current)}

    # -- per-stage message checks -----------------------------------------------------------------

    def _check_keys(self, client: str, msg: Mapping[str, Any]) -> None:
        for name in ("c_pk", "s_pk"):
            if len(field(msg, name, bytes, client)) != 32:
                raise AggregationError(f"{name} from {client!r} is not a 32-byte X25519 key")
            check_public_key(msg[name], name, client)
        if self.params.consistency_check and len(field(msg, "sig_pk", bytes, client)) != 32:
            raise AggregationError(f"sig_pk from {client!r} is not a 32-byte Ed25519 key")
        if self.params.signed_keys:  # (the clients check the signature; the server relays it)
            field(msg, "cert", bytes, client)
            field(msg, "key_sig", bytes, client)
        if field(msg, "length", int, client) < 0:
            raise AggregationError(f"length from {client!r} is negative")
        if msg.get("params") != self.params.wire():
            raise AggregationError(
                f"client {client!r} runs with parameters {msg.get('params')!r}, the server with "
                f"{self.params.wire()!r}"
            )

    def _check_sealed(self, client: str, msg: Mapping[str, Any]) -> None:
        cts = field(msg, "ciphertexts", dict, client)
        if set(cts) != self._graph[client] or not all(isinstance(c, bytes) for c in cts.values()):
            raise AggregationError(f"{client!r} did not seal shares for exactly its neighbours")

    def _check_masked(self, client: str, msg: Mapping[str, Any]) -> None:
        y = field(msg, "y", np.ndarray, client)
        dtype = self.params.quantizer.dtype
        if y.dtype != dtype or y.shape != (self._length,):
            raise AggregationError(
                f"masked input from {client!r} is {y.dtype}{list(y.shape)}, expected {dtype}[{self._length}]"
            )

    def _check_signature(self, client: str, msg: Mapping[str, Any]) -> None:
        sig = field(msg, "signature", bytes, client)
        text = consistency_message(self.params, self.members[Stage.MASKED_INPUT])
        try:
            Ed25519PublicKey.from_public_bytes(self._keys[client]["sig_pk"]).verify(sig, text)
        except (InvalidSignature, ValueError):
            raise AggregationError(f"the signature of U3 by {client!r} does not verify") from None

    def _check_unmask(self, client: str, msg: Mapping[str, Any]) -> None:
        u2, u3 = self.members[Stage.SHARE_KEYS], self.members[Stage.MASKED_INPUT]
        holders = (self._graph[client] & u2) | {client}
        b = field(msg, "b_shares", dict, client)
        sk = field(msg, "sk_shares", dict, client)
        if set(b) != holders & u3 or set(sk) != holders - u3:
            raise AggregationError(f"{client!r} revealed shares of the wrong parties")
        for share in (*b.values(), *sk.values()):
            if not isinstance(share, bytes):
                raise AggregationError(f"a share from {client!r} is not bytes")
            try:
                share_from_bytes(share)
            except ValueError as exc:
                raise AggregationError(f"a share from {client!r} is malformed: {exc}") from None

    # -- stage ends -------------------------------------------------------------------------------

    def _close_keys(self, u1: frozenset[str]) -> dict[str, dict[str, Any]]:
        self._keys = dict(self._got)
        lengths = {c: m["length"] for c, m in self._keys.items()}
        if self._own is not None:
            lengths["(server)"] = self._own.shape[0]
        if len(set(lengths.values())) > 1:
            common = Counter(lengths.values()).most_common()
            raise AggregationError(f"the vectors differ in length: {lengths} ({common})")
        self._length = next(iter(lengths.values()))
        order = sorted(u1)
        secrets.SystemRandom().shuffle(order)  # SecAgg+: the server draws the random ring
        self._order = tuple(order)
        self._graph = ring_neighbours(self._order, self.params.neighbours)
        out = {}
        signed, check = self.params.signed_keys, self.params.consistency_check
        for u in order:
            # with signed keys and the check, a client verifies every signer's keys: send all
            shown = order if signed and check else sorted(self._graph[u] | {u})
            msg: dict[str, Any] = {
                "stage": Stage.SHARE_KEYS.value,
                "order": list(order),
                "keys": {v: [self._keys[v]["c_pk"], self._keys[v]["s_pk"]] for v in shown},
            }
            if check:
                msg["sig_keys"] = {v: self._keys[v]["sig_pk"] for v in order}
            if signed:
                msg["attest"] = {v: [self._keys[v]["cert"], self._keys[v]["key_sig"]] for v in shown}
            out[u] = msg
        return out

    def _close_sealed(self, u2: frozenset[str]) -> dict[str, dict[str, Any]]:
        self._sealed = {u: self._got[u]["ciphertexts"] for u in u2}
        members = sorted(u2)
        return {
            v: {
                "stage": Stage.MASKED_INPUT.value,
                "members": members,
                "ciphertexts": {u: self._sealed[u][v] for u in members if v in self._sealed[u]},
            }
            for v in members
        }

    def _close_masked(self, u3: frozenset[str]) -> dict[str, dict[str, Any]]:
        self._masked = {u: self._got[u]["y"] for u in u3}
        nxt = Stage.CONSISTENCY_CHECK if self.params.consistency_check else Stage.UNMASKING
        return {u: {"stage": nxt.value, "members": sorted(u3)} for u in u3}

    def _close_signatures(self, u4: frozenset[str]) -> dict[str, dict[str, Any]]:
        sigs = {u: self._got[u]["signature"] for u in sorted(u4)}
        u3 = sorted(self.members[Stage.MASKED_INPUT])
        return {u: {"stage": Stage.UNMASKING.value, "members": u3, "signatures": sigs} for u in u4}

    def _close_unmask(self, u5: frozenset[str]) -> dict[str, dict[str, Any]]:
        """Rebuild every needed secret (or fail before using any), then remove the masks."""
        p, t = self.params, self.params.threshold
        u2, u3 = self.members[Stage.SHARE_KEYS], self.members[Stage.MASKED_INPUT]
        dropped = sorted(v for v in u2 - u3 if self._graph[v] & u3)
        b_shares: dict[str, dict[int, list[int]]] = {u: {} for u in u3}
        sk_shares: dict[str, dict[int, list[int]]] = {v: {} for v in dropped}
        for w in u5:
            x = self._order.index(w) + 1
            for u, share in self._got[w]["b_shares"].items():
                b_shares[u][x] = [share_from_bytes(share)]
            for v, share in self._got[w]["sk_shares"].items():
                if v in sk_shares:
                    sk_shares[v][x] = [share_from_bytes(share)]
        short = {u: len(s) for u, s in (*b_shares.items(), *sk_shares.items()) if len(s) < t}
        if short:
            raise AggregationError(
                f"unmasking: too few shares to remove the masks of {sorted(short)} "
                f"(got {short}, need {t} each); nothing is revealed"
            )
        b_seeds = {u: reconstruct_many(b_shares[u], t)[0].to_bytes(32, "big") for u in sorted(u3)}
        sk_keys = {
            v: _rebuild_key(reconstruct_many(sk_shares[v], t)[0], self._keys[v]["s_pk"], v)
            for v in dropped
        }
        q, n = p.quantizer, self._length
        total = np.zeros(n, dtype=q.dtype) if self._own is None else self._own.copy()
        for u, b in b_seeds.items():
            np.add(total, self._masked[u], out=total)
            np.subtract(total, expand_mask(self_mask_key(b, p.job, p.tag), n, q.dtype), out=total)
        for v, sk in sk_keys.items():
            for u in sorted(self._graph[v] & u3):
                seed = pair_seed(
                    sk, self._keys[u]["s_pk"], "mask", p.job, p.tag, *sorted((u, v)), peer=u
                )
                # y_u carried sign(u, v) * PRG(s_uv): take it back out.
                op: Callable[..., Any] = np.subtract if u < v else np.add
                op(total, expand_mask(seed, n, q.dtype), out=total)
        self.result = q.dequantise(q.reduce(total))
        return {}

    def _need(self, count: int, what: str) -> None:
        if count < self.params.threshold:
            raise AggregationError(
                f"secure aggregation {self.params.tag!r} of job {self.params.job!r}: only {count} "
                f"client(s) {what}, below the threshold {self.params.threshold}; aborted, no sum "
                "is revealed"
            )


def _rebuild_key(value: int, public: bytes, owner: str) -> X25519PrivateKey:
    key = X25519PrivateKey.from_private_bytes(value.to_bytes(32, "big"))
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != public:
        raise AggregationError(f"the rebuilt mask key of {owner!r} does not match its public key")
    return key


_CHECKS = {
    Stage.ADVERTISE_KEYS: "_check_keys",
    Stage.SHARE_KEYS: "_check_sealed",
    Stage.MASKED_INPUT: "_check_masked",
    Stage.CONSISTENCY_CHECK: "_check_signature",
    Stage.UNMASKING: "_check_unmask",
}
_CLOSERS = {
    Stage.ADVERTISE_KEYS: "_close_keys",
    Stage.SHARE_KEYS: "_close_sealed",
    Stage.MASKED_INPUT: "_close_masked",
    Stage.CONSISTENCY_CHECK: "_close_signatures",
    Stage.UNMASKING: "_close_unmask",
}
