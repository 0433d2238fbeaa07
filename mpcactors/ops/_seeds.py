"""Seed agreement: the shared PRG seeds of one job, in one round.

Theory of operation
-------------------
Every party sends every other party, over the authenticated link, an ephemeral X25519 public key
and 32 fresh random bytes (its contribution). Then, without further messages:

* pairwise seed of {p, q}: HKDF-SHA256 over the X25519 shared secret of p and q, with ``info``
  binding the protocol label, the job id and both party names (sorted), so a seed is never reused
  across jobs or pairs (:func:`~mpcactors.ops._prg.derive_seed`);
* all-party seed: HKDF-SHA256 over every party's contribution in party-name order, with the same
  kind of ``info`` (all names). It is random as long as one party's contribution is;
* private seed of {p}: 32 bytes from the OS CSPRNG.

The result has the shape of :attr:`OpContext.seeds`: keys are frozensets of party names. With two
parties the pair *is* the set of all parties; the X25519 seed serves both.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .._errors import ConfigError, ProtocolError
from ._comm import Exchange, Step
from ._prg import derive_seed, new_seed

__all__ = ["agree_seeds"]

_LABEL = b"mpcactors/seeds/v1"


def _info(kind: bytes, job_id: bytes, names: Sequence[str]) -> bytes:
    parts = [_LABEL, kind, struct.pack(">I", len(job_id)), job_id]
    for name in sorted(names):
        raw = name.encode()
        parts += [struct.pack(">I", len(raw)), raw]
    return b"".join(parts)


def agree_seeds(
    party: str, parties: Sequence[str], job_id: bytes
) -> Step[dict[frozenset[str], bytes]]:
    """Agree the job's PRG seeds with every other party in one round.

    Args:
        party: this party's name.
        parties: every party of the job (the same list at every party).
        job_id: the job's agreed id; bound into every derived seed.

    Returns:
        ``{frozenset(names): 32-byte seed}`` for this party alone, each pair containing this
        party, and the set of all parties (the format of :attr:`OpContext.seeds`).

    Raises:
        ConfigError: ``party`` is not in ``parties`` or a name is repeated.
        ProtocolError: a peer's message is malformed.
    """
    parties = tuple(parties)
    if party not in parties:
        raise ConfigError(f"party {party!r} is not one of the job's parties {list(parties)!r}")
    if len(set(parties)) != len(parties):
        raise ConfigError(f"party names repeat in {list(parties)!r}")
    others = [p for p in parties if p != party]
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    mine = os.urandom(32)
    msg = {"pk": public, "contrib": mine}
    got = yield Exchange(send={p: msg for p in others}, recv=frozenset(others))
    contributions = {party: mine}
    seeds: dict[frozenset[str], bytes] = {frozenset({party}): new_seed()}
    for peer in others:
        pk, contrib = _check(got.get(peer), peer)
        contributions[peer] = contrib
        try:
            seeds[frozenset({party, peer})] = derive_seed(
                private, pk, info=_info(b"pair", job_id, (party, peer))
            )
        except ValueError as exc:  # a low-order point: the shared secret would be all zeros
            raise ProtocolError(
                f"seed agreement: {peer!r} sent a low-order X25519 public key: {exc}", peer=peer
            ) from None
    everyone = frozenset(parties)
    if everyone not in seeds:
        ikm = b"".join(contributions[p] for p in sorted(parties))
        seeds[everyone] = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_info(b"all", job_id, parties)
        ).derive(ikm)
    return seeds


def _check(msg: object, peer: str) -> tuple[bytes, bytes]:
    if not isinstance(msg, dict):
        raise ProtocolError(
            f"seed agreement: {peer!r} sent {type(msg).__name__}, not a map", peer=peer
        )
    pk, contrib = msg.get("pk"), msg.get("contrib")
    if not (isinstance(pk, bytes) and len(pk) == 32):
        raise ProtocolError(f"seed agreement: {peer!r} sent a bad public key {pk!r}", peer=peer)
    if not (isinstance(contrib, bytes) and len(contrib) == 32):
        raise ProtocolError(f"seed agreement: {peer!r} sent a bad contribution", peer=peer)
    return pk, contrib
