"""Comparing double-blinded values in bounded memory (the matching party only).

Theory of operation
-------------------
After the exchange the matching party holds, as chunk files, the double-blinded value of every
stream position of its own input (``own``, returned by the peer) and of the peer's input
(``peer``, computed here). A common id has the same double-blinded value on both sides. We keep
the first 16 bytes of each value (two distinct ids collide with probability n^2 / 2^128).

1. Partition both sides into ``G`` group files by the value's first 8 bytes mod ``G``, with the
   stream position; a common id falls in the same group on both sides. ``G`` is chosen so a
   group holds ~2^20 records.
2. Per group: sort by the first 8 bytes, keep only runs of equal prefixes (almost exactly the
   matches), sort those by all 16 bytes and pair adjacent equal values from different sides.

Groups are matched in order and pairs come out sorted by value within a group. That order --
pseudo-random, unrelated to either party's input order -- is the order the two parties agree on
for the rows of the intersection. Memory: one group, ~2^20 x 24 bytes per side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._checkpoint import Workspace

__all__ = ["D_BYTES", "GROUP_TARGET", "match_arrays", "match_group", "n_groups", "partition"]

D_BYTES = 16
GROUP_TARGET = 1 << 20
_REC = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("pos", "<i8")])


def n_groups(n_own: int, n_peer: int) -> int:
    return int(max(1, -(-(n_own + n_peer) // GROUP_TARGET)))


def partition(ws: Workspace, kind: str, n_items: int, chunk_size: int, groups: int) -> Path:
    """Route the ``kind`` chunks' values with their positions into ``groups`` files."""
    out_dir = ws.root / "groups" / kind
    out_dir.mkdir(parents=True, exist_ok=True)
    # unbuffered: every write is a chunk's slice (G buffers would cost G x 8 KB)
    files = [open(out_dir / f"{g:05d}.bin", "wb", buffering=0) for g in range(groups)]  # noqa: SIM115
    try:
        n_chunks = -(-n_items // chunk_size)
        for c in range(n_chunks):
            raw = ws.read_chunk(kind, c)
            words = raw.view("<u8").reshape(-1, 2)
            rec = np.empty(words.shape[0], dtype=_REC)
            rec["hi"] = words[:, 0]
            rec["lo"] = words[:, 1]
            rec["pos"] = np.arange(c * chunk_size, c * chunk_size + words.shape[0], dtype=np.int64)
            if groups == 1:
                rec.tofile(files[0])
                continue
            g = (rec["hi"] % np.uint64(groups)).astype(np.int64)
            order = np.argsort(g, kind="stable")
            cuts = np.searchsorted(g[order], np.arange(groups + 1))
            for i in range(groups):
                if cuts[i + 1] > cuts[i]:
                    rec[order[cuts[i] : cuts[i + 1]]].tofile(files[i])
    finally:
        for f in files:
            f.close()
    return out_dir


def match_arrays(own: np.ndarray, peer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(own_pos, peer_pos)`` of equal values, sorted by value."""
    hi = np.concatenate([own["hi"], peer["hi"]])
    if hi.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    lo = np.concatenate([own["lo"], peer["lo"]])
    pos = np.concatenate([own["pos"], peer["pos"]])
    side = np.concatenate([np.zeros(len(own), np.int8), np.ones(len(peer), np.int8)])
    order = np.argsort(hi, kind="stable")
    hs = hi[order]
    dup = hs[1:] == hs[:-1]
    keep = np.zeros(hi.size, dtype=bool)
    keep[:-1] |= dup
    keep[1:] |= dup
    cand = order[keep]
    cand = cand[np.lexsort((lo[cand], hi[cand]))]
    same = (
        (hi[cand][1:] == hi[cand][:-1])
        & (lo[cand][1:] == lo[cand][:-1])
        & (side[cand][1:] != side[cand][:-1])
    )
    k = np.nonzero(same)[0]
    a, b = cand[k], cand[k + 1]
    a_is_own = side[a] == 0
    own_idx = np.where(a_is_own, a, b)
    peer_idx = np.where(a_is_own, b, a)
    return pos[own_idx].astype(np.int64), pos[peer_idx].astype(np.int64)


def match_group(own_dir: Path, peer_dir: Path, g: int) -> tuple[np.ndarray, np.ndarray]:
    """``(own_pos, peer_pos)`` of group ``g`` (files from :func:`partition`), sorted by value."""
    own = np.fromfile(own_dir / f"{g:05d}.bin", dtype=_REC)
    peer = np.fromfile(peer_dir / f"{g:05d}.bin", dtype=_REC)
    return match_arrays(own, peer)
