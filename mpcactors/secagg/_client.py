"""The client's sans-IO state machine of secure aggregation (Bonawitz et al. 2017, Fig. 4).

Theory of operation
-------------------
:meth:`SecAggClient.start` returns the ADVERTISE_KEYS message; every later server message goes to
:meth:`SecAggClient.receive`, which checks it, advances the state along :data:`_TRANSITIONS` and
returns the reply. Anything else (a message of another stage, a second UNMASKING request, an
abort) moves the client to FAILED and raises :class:`~mpcactors.AggregationError` naming the
event and the state. The client never trusts the server's lists beyond what it can check:

* every list the server sends must have at least ``threshold`` members and shrink stage by stage
  (U3 within U2 within U1), and must contain this client;
* at UNMASKING the client itself splits its neighbourhood into survivors (U3: reveal the share of
  b_v) and dropouts (U2 minus U3: reveal the share of s_v^SK). The two sets are disjoint and the
  client answers UNMASKING once, so no client ever reveals both shares of the same party
  (Bonawitz et al., section 4, the reason U3 must be consistent; with ``consistency_check`` the
  client also requires ``threshold`` valid signatures of everyone's U3 before answering).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .._certs import PartyCredentials
from .._errors import AggregationError
from ._masking import expand_mask, label, pair_seed, seal, self_mask_key, unseal
from ._protocol import ABORT, SecAggParams, Stage, check_names, field, ring_neighbours
from ._shamir import SHARE_BYTES, share_from_bytes, share_many, share_to_bytes

__all__ = ["ClientState", "SecAggClient"]


class ClientState(enum.Enum):
    IDLE = "idle"  # nothing sent yet
    ADVERTISED = "advertised"  # public keys sent; awaiting the roster
    SHARED = "shared"  # sealed shares sent; awaiting the ciphertexts addressed to us
    MASKED = "masked"  # masked input sent; awaiting the survivor list U3
    SIGNED = "signed"  # signature of U3 sent; awaiting everyone's signatures
    DONE = "done"  # unmasking shares sent; this client's part is over
    FAILED = "failed"  # aborted or refused a message; every further event is refused


# (state, incoming stage) -> (handler name, next state). The consistency-check rows are used only
# when the aggregation runs that stage (see SecAggClient._table).
_TRANSITIONS: dict[tuple[ClientState, Stage], tuple[str, ClientState]] = {
    (ClientState.ADVERTISED, Stage.SHARE_KEYS): ("_on_roster", ClientState.SHARED),
    (ClientState.SHARED, Stage.MASKED_INPUT): ("_on_ciphertexts", ClientState.MASKED),
    (ClientState.MASKED, Stage.CONSISTENCY_CHECK): ("_on_check", ClientState.SIGNED),
    (ClientState.SIGNED, Stage.UNMASKING): ("_on_unmask", ClientState.DONE),
    (ClientState.MASKED, Stage.UNMASKING): ("_on_unmask", ClientState.DONE),
}


def _raw_public(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def advertised_keys_message(
    params: SecAggParams, party: str, c_pk: bytes, s_pk: bytes, sig_pk: bytes | None
) -> bytes:
    """What a client signs with its certified key at ADVERTISE_KEYS: job, tag, its name and its
    public keys (fixed 32-byte fields, so the encoding is unambiguous)."""
    return label("advertised-keys", params.job, params.tag, party) + c_pk + s_pk + (sig_pk or b"")


def consistency_message(params: SecAggParams, survivors: frozenset[str]) -> bytes:
    """What every client signs in CONSISTENCY_CHECK: the job, the tag and the sorted U3."""
    return label("consistency", params.job, params.tag, *sorted(survivors))


class SecAggClient:
    """One client's side of one aggregation.

    Args:
        params: the agreed parameters.
        party: this client's name.
        vector: this client's 1-D input (quantised at once; the float copy is not kept).
        credentials: this party's certified key and the cluster CA; required when
            ``params.signed_keys`` (sign our keys, check everyone else's).

    Attributes:
        state: the current :class:`ClientState`.
        clipped: how many input elements were clipped to the range.
        revealed: after UNMASKING, ``(b-share owners, s^SK-share owners)``: what this client gave.
    """

    def __init__(
        self,
        params: SecAggParams,
        party: str,
        vector: Any,
        credentials: PartyCredentials | None = None,
    ) -> None:
        if params.signed_keys and (credentials is None or credentials.party != party):
            raise AggregationError(
                f"client {party!r}: signed keys need this party's certified key and the "
                "cluster CA (the config's [tls] paths)"
            )
        self._credentials = credentials if params.signed_keys else None
        arr = np.asarray(vector)
        if arr.ndim != 1:
            raise AggregationError(
                f"client {party!r}: the vector must be 1-D, not shape {arr.shape}"
            )
        self.params = params
        self.party = party
        self.state = ClientState.IDLE
        self._q, self.clipped = params.quantizer.quantise(arr)
        self._c_key = X25519PrivateKey.generate()  # encryption key pair (c_u)
        self._s_key = X25519PrivateKey.generate()  # masking key pair (s_u)
        self._sig_key = Ed25519PrivateKey.generate() if params.consistency_check else None
        self._b_seed = os.urandom(32)  # self-mask seed b_u
        self._order: tuple[str, ...] = ()
        self._neighbours: frozenset[str] = frozenset()
        self._c_pub: dict[str, bytes] = {}
        self._s_pub: dict[str, bytes] = {}
        self._sig_pub: dict[str, bytes] = {}
        self._u2: frozenset[str] = frozenset()
        self._u3: frozenset[str] = frozenset()
        self._held: dict[str, tuple[int, int]] = {}  # owner -> (share of s^SK, share of b)
        self.revealed: tuple[frozenset[str], frozenset[str]] | None = None

    # -- public API -------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """The ADVERTISE_KEYS message (call once, first)."""
        if self.state is not ClientState.IDLE:
            self._refuse("start", "start() may be called once")
        self.state = ClientState.ADVERTISED
        c_pk, s_pk = _raw_public(self._c_key), _raw_public(self._s_key)
        sig_pk = _raw_public(self._sig_key) if self._sig_key else None
        msg: dict[str, Any] = {
            "stage": Stage.ADVERTISE_KEYS.value,
            "c_pk": c_pk,
            "s_pk": s_pk,
            "sig_pk": sig_pk,
            "length": int(self._q.shape[0]),
            "params": self.params.wire(),
        }
        if self._credentials is not None:
            text = advertised_keys_message(self.params, self.party, c_pk, s_pk, sig_pk)
            msg["cert"], msg["key_sig"] = self._credentials.sign(text)
        return msg

    def receive(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Handle one server message; return the reply to send to the server.

        Raises:
            AggregationError: the server aborted, or the message is unexpected in this state or
                fails a check (the client is then FAILED and reveals nothing more).
        """
        stage_name = message.get("stage") if isinstance(message, Mapping) else None
        if stage_name == ABORT:
            self.state = ClientState.FAILED
            reason = message.get("reason")
            raise AggregationError(f"the server aborted the aggregation: {reason}")
        try:
            stage = Stage.parse(stage_name)
            row = self._table().get((self.state, stage))
            if row is None:
                self._refuse(stage.value, "unexpected in this state")
            handler, next_state = row
            reply: dict[str, Any] = getattr(self, handler)(message)
        except AggregationError:
            self.state = ClientState.FAILED
            raise
        self.state = next_state
        return reply

    # -- stages -----------------------------------------------------------------------------------

    def _table(self) -> dict[tuple[ClientState, Stage], tuple[str, ClientState]]:
        if self.params.consistency_check:
            skip = (ClientState.MASKED, Stage.UNMASKING)
        else:
            skip = (ClientState.MASKED, Stage.CONSISTENCY_CHECK)
        return {k: v for k, v in _TRANSITIONS.items() if k != skip}

    def _on_roster(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """SHARE_KEYS: check U1, then seal t-of-(k+1) shares of (s_u^SK, b_u) to each neighbour."""
        p, me = self.params, self.party
        order = field(msg, "order", list, "server")
        u1 = check_names(order, "server", "the roster", within=frozenset(order))
        self._require(me in u1 and len(u1) >= p.threshold, f"the roster has {len(u1)} clients")
        self._order = tuple(order)
        self._neighbours = ring_neighbours(self._order, p.neighbours)[me]
        keys = field(msg, "keys", dict, "server")
        for v in self._neighbours | {me}:
            pair = keys.get(v)
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(k, bytes) for k in pair)
            ):
                raise AggregationError(f"the roster lacks the public keys of {v!r}")
            self._c_pub[v], self._s_pub[v] = pair
        if (self._c_pub[me], self._s_pub[me]) != (
            _raw_public(self._c_key),
            _raw_public(self._s_key),
        ):
            raise AggregationError("the roster does not echo this client's own public keys")
        if p.consistency_check:
            sig_keys = field(msg, "sig_keys", dict, "server")
            if set(sig_keys) != set(u1) or not all(isinstance(k, bytes) for k in sig_keys.values()):
                raise AggregationError("the roster's signature keys do not match its clients")
            self._sig_pub = dict(sig_keys)
        if self._credentials is not None:
            # Every key we will use: our neighbours' (and, with the consistency check, every
            # signer's) must be what that party signed with its certificate.
            self._check_attested(msg, keys, u1 if p.consistency_check else self._neighbours)
        xs = {v: self._x(v) for v in self._neighbours | {me}}
        sk_int = int.from_bytes(_raw_private(self._s_key), "big")
        b_int = int.from_bytes(self._b_seed, "big")
        shares = share_many([sk_int, b_int], list(xs.values()), p.threshold)
        out: dict[str, bytes] = {}
        for v, x in xs.items():
            sk_share, b_share = shares[x]
            if v == me:
                self._held[me] = (sk_share, b_share)
                continue
            key = pair_seed(self._c_key, self._c_pub[v], "enc", p.job, p.tag, *sorted((me, v)), peer=v)
            plain = share_to_bytes(sk_share) + share_to_bytes(b_share)
            out[v] = seal(key, plain, label("shares", p.job, p.tag, me, v))
        return {"stage": Stage.SHARE_KEYS.value, "ciphertexts": out}

    def _on_ciphertexts(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """MASKED_INPUT: open the neighbours' shares, send y_u = q(x_u) + PRG(b_u) + pairwise."""
        p, me = self.params, self.party
        u2 = check_names(
            field(msg, "members", list, "server"), "server", "U2", within=frozenset(self._order)
        )
        self._require(me in u2 and len(u2) >= p.threshold, f"U2 has {len(u2)} clients")
        self._u2 = u2
        cts = field(msg, "ciphertexts", dict, "server")
        if set(cts) != (self._neighbours & u2):
            raise AggregationError(
                "the ciphertexts received do not come from exactly the alive neighbours"
            )
        for v, blob in cts.items():
            key = pair_seed(self._c_key, self._c_pub[v], "enc", p.job, p.tag, *sorted((me, v)), peer=v)
            plain = unseal(key, blob, label("shares", p.job, p.tag, v, me), sender=v)
            if len(plain) != 2 * SHARE_BYTES:
                raise AggregationError(f"the shares from {v!r} have the wrong size")
            self._held[v] = (
                share_from_bytes(plain[:SHARE_BYTES]),
                share_from_bytes(plain[SHARE_BYTES:]),
            )
        q = p.quantizer
        n = self._q.shape[0]
        y = self._q.copy()
        np.add(y, expand_mask(self_mask_key(self._b_seed, p.job, p.tag), n, q.dtype), out=y)
        for v in sorted(cts):
            seed = pair_seed(self._s_key, self._s_pub[v], "mask", p.job, p.tag, *sorted((me, v)), peer=v)
            op: Callable[..., Any] = np.add if me < v else np.subtract
            op(y, expand_mask(seed, n, q.dtype), out=y)
        self._q = np.empty(0, dtype=q.dtype)  # the input is no longer needed
        return {"stage": Stage.MASKED_INPUT.value, "y": q.reduce(y)}

    def _on_check(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """CONSISTENCY_CHECK: accept U3, sign it."""
        self._u3 = self._survivors(msg)
        if self._sig_key is None:
            self._refuse(Stage.CONSISTENCY_CHECK.value, "this aggregation has no consistency check")
        sig = self._sig_key.sign(consistency_message(self.params, self._u3))
        return {"stage": Stage.CONSISTENCY_CHECK.value, "signature": sig}

    def _on_unmask(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """UNMASKING: reveal b-shares of survivors and s^SK-shares of dropouts (never both)."""
        p = self.params
        u3 = self._survivors(msg)
        if p.consistency_check:
            if u3 != self._u3:
                raise AggregationError("U3 changed between the consistency check and unmasking")
            self._check_signatures(msg, u3)
        self._u3 = u3
        holders = (self._neighbours & self._u2) | {self.party}
        alive = frozenset(v for v in holders if v in u3)
        dropped = holders - alive
        self.revealed = (alive, dropped)
        return {
            "stage": Stage.UNMASKING.value,
            "b_shares": {v: share_to_bytes(self._held[v][1]) for v in sorted(alive)},
            "sk_shares": {v: share_to_bytes(self._held[v][0]) for v in sorted(dropped)},
        }

    # -- checks -----------------------------------------------------------------------------------

    def _survivors(self, msg: Mapping[str, Any]) -> frozenset[str]:
        u3 = check_names(field(msg, "members", list, "server"), "server", "U3", within=self._u2)
        self._require(
            self.party in u3 and len(u3) >= self.params.threshold, f"U3 has {len(u3)} clients"
        )
        return u3

    def _check_signatures(self, msg: Mapping[str, Any], u3: frozenset[str]) -> None:
        sigs = field(msg, "signatures", dict, "server")
        signed = check_names(list(sigs), "server", "the signers", within=u3)
        self._require(len(signed) >= self.params.threshold, f"only {len(signed)} clients signed U3")
        text = consistency_message(self.params, u3)
        for v, sig in sigs.items():
            try:
                if not isinstance(sig, bytes):
                    raise InvalidSignature
                Ed25519PublicKey.from_public_bytes(self._sig_pub[v]).verify(sig, text)
            except (InvalidSignature, ValueError, KeyError):
                raise AggregationError(f"the signature of U3 by {v!r} does not verify") from None

    def _check_attested(
        self, msg: Mapping[str, Any], keys: Mapping[str, Any], parties: frozenset[str]
    ) -> None:
        """Each party's relayed keys carry its signature under a cluster-CA certificate.

        Raises:
            AggregationError: names the party whose keys fail (substituted by the server, or
                signed by a certificate that is not that party's from the cluster CA).
        """
        credentials = self._credentials
        if credentials is None:
            return
        attest = field(msg, "attest", dict, "server")
        for v in sorted(parties - {self.party}):
            pair, att = keys.get(v), attest.get(v)
            try:
                if not (isinstance(pair, list) and len(pair) == 2
                        and all(isinstance(k, bytes) for k in pair)):
                    raise ValueError("the roster lacks its public keys")
                if not (isinstance(att, list) and len(att) == 2
                        and all(isinstance(a, bytes) for a in att)):
                    raise ValueError("the roster lacks its certificate and signature")
                sig_pk = self._sig_pub.get(v) if self.params.consistency_check else None
                text = advertised_keys_message(self.params, v, pair[0], pair[1], sig_pk)
                credentials.verify(v, att[0], att[1], text)
            except ValueError as exc:
                raise AggregationError(
                    f"client {self.party!r}: the public keys the server relayed for {v!r} are not "
                    f"signed by {v!r}'s cluster certificate ({exc}): the server may have "
                    "substituted them; refusing to continue"
                ) from None

    def _require(self, ok: bool, what: str) -> None:
        if not ok:
            raise AggregationError(
                f"client {self.party!r} refuses to continue in state {self.state.value}: {what} "
                f"(needs >= {self.params.threshold}, this client included)"
            )

    def _refuse(self, event: str, why: str) -> NoReturn:
        state, self.state = self.state, ClientState.FAILED
        raise AggregationError(
            f"client {self.party!r}: message {event!r} in state {state.value}: {why}"
        )

    def _x(self, party: str) -> int:
        """A client's Shamir x-coordinate: 1 + its position in the roster."""
        return self._order.index(party) + 1
