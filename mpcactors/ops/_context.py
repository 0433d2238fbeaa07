"""The context a protocol step runs in: who am I, who else, and where randomness comes from.

A context is addressed by a deterministic ``path`` (job id, op id, sub-indices from
:meth:`OpContext.child`), so the PRG streams of an op are the same at every party and never
depend on the order concurrent ops happen to run in. The scheduler builds one per op; tests build
them with :func:`local_contexts` (seeds made in-process, no network).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping, Sequence

from ._prg import Prg, new_seed, stream_key

__all__ = ["OpContext", "local_contexts", "seed_key"]


def seed_key(*parties: str) -> frozenset[str]:
    """The key of a seed shared by ``parties`` in :attr:`OpContext.seeds`."""
    return frozenset(parties)


class OpContext:
    """Per-op view of the job: party names, seeds, and a deterministic address.

    Attributes:
        party: this party's name.
        parties: every party of the job, in the job's order (the dealer included).
        seeds: shared 32-byte seeds keyed by the frozenset of the parties that hold them: every
            pair of parties, and the set of all parties. ``frozenset({party})`` is a private seed.
        path: the op's address, e.g. ``(b"job-1", 17)``; sub-steps extend it with :meth:`child`.
    """

    __slots__ = ("_counters", "_prefix", "parties", "party", "path", "seeds")

    def __init__(
        self,
        party: str,
        parties: Sequence[str],
        seeds: Mapping[frozenset[str], bytes],
        path: tuple[object, ...],
    ) -> None:
        self.party = party
        self.parties = tuple(parties)
        self.seeds = seeds
        self.path = path
        # One counter per seed key: two parties sharing a seed agree on a stream as long as they
        # make the same sequence of calls *for that key*, whatever they do with other keys (a
        # dealer walks every holder's stream; each holder walks only its own).
        self._counters: dict[frozenset[str], int] = {}
        self._prefix: bytes | None = None  # the encoded path, made on the first PRG stream

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(p for p in self.parties if p != self.party)

    def child(self, index: int | str) -> OpContext:
        """A context for sub-step ``index`` (e.g. inside :func:`~mpcactors.ops._comm.gather`)."""
        return OpContext(self.party, self.parties, self.seeds, self.path + (index,))

    def label(self, *extra: object) -> bytes:
        """A byte string naming this op's address plus ``extra`` (session labels, e.g. OT)."""
        return _label(self.path + extra, 0, frozenset())

    def prg(self, *parties: str) -> Prg:
        """A fresh PRG stream shared with ``parties`` (this party is always included).

        ``ctx.prg()`` is private to this party; ``ctx.prg("bob")`` is shared with bob;
        ``ctx.prg(*ctx.others)`` is shared by all. Each call returns the next stream of this op
        for that set of parties, so the parties sharing it must make their calls for that set in
        the same order (calls for other sets do not matter).
        """
        key = frozenset((self.party, *parties))
        try:
            seed = self.seeds[key]
        except KeyError:
            raise KeyError(f"no seed shared by {sorted(key)} in this job") from None
        counter = self._counters.get(key, 0)
        self._counters[key] = counter + 1
        if self._prefix is None:
            self._prefix = _path_bytes(self.path)
        return Prg(stream_key(seed, self._prefix + _suffix(counter, key)))


def _label(path: tuple[object, ...], counter: int, key: frozenset[str]) -> bytes:
    return _path_bytes(path) + _suffix(counter, key)


def _path_bytes(path: tuple[object, ...]) -> bytes:
    parts = [b"mpcactors/prg/v1"]
    for item in path:
        if isinstance(item, int):
            parts.append(b"i" + struct.pack(">q", item))
        elif isinstance(item, bytes):
            parts.append(b"b" + struct.pack(">I", len(item)) + item)
        else:
            s = str(item).encode()
            parts.append(b"s" + struct.pack(">I", len(s)) + s)
    return b"".join(parts)


def _suffix(counter: int, key: frozenset[str]) -> bytes:
    parts = [b"c" + struct.pack(">q", counter)]
    for name in sorted(key):
        s = name.encode()
        parts.append(b"p" + struct.pack(">I", len(s)) + s)
    return b"".join(parts)


def local_contexts(parties: Sequence[str], path: tuple[object, ...] = (b"test", 0)) -> dict[str, OpContext]:
    """Contexts for every party with seeds made in-process (tests and local simulation)."""
    parties = tuple(parties)
    shared: dict[frozenset[str], bytes] = {}
    for r in range(1, len(parties) + 1):
        for group in itertools.combinations(parties, r):
            if r in (1, 2, len(parties)):
                shared[frozenset(group)] = new_seed()
    out = {}
    for p in parties:
        mine = {k: v for k, v in shared.items() if p in k}
        out[p] = OpContext(p, parties, mine, path)
    return out
