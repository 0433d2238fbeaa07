"""The memory bound: preparation and matching never hold a whole input's hashes/ciphertexts.

The bucket sizes are shrunk so that a 40,000-row input spans many buckets; tracemalloc (which
sees numpy's buffers) then shows a peak far below what holding every value would take.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mpcactors.ops._prg import Prg
from mpcactors.psi import _match, _prepare
from mpcactors.psi._checkpoint import Workspace
from mpcactors.psi._match import match_group, partition
from mpcactors.psi._prepare import PreparedFiles, prepare
from mpcactors.psi._source import CsvSpec

N = 40_000


def test_prepare_peak_memory_is_a_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prepare, "BATCH_ROWS", 512)
    monkeypatch.setattr(_prepare, "BUCKET_TARGET", 512)
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("id,v\n")
        f.writelines(f"{i % (N // 2):08d},{i}\n" for i in range(N))  # every key twice
    Prg(os.urandom(32)).random_u64(1)  # the PRG's one-time 1 MB zero buffer, not per input
    tracemalloc.start()
    try:
        prep = prepare(CsvSpec(str(path), ("id",)), str(tmp_path / "w"), os.urandom(32))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (prep.n_rows, prep.n_unique) == (N, N // 2)
    all_hashes = 32 * N  # what one array of every row's hash would take
    assert peak < all_hashes / 3, peak
    files = PreparedFiles(tmp_path / "w", prep)
    assert len({files.hashes(0, prep.n_unique)[i : i + 32] for i in range(0, 32 * prep.n_unique, 32)}) == N // 2


def test_matching_peak_memory_is_a_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_match, "GROUP_TARGET", 2048)
    rng = np.random.default_rng(7)
    own = rng.integers(0, 255, size=(N, 16), dtype=np.uint8)
    peer = rng.integers(0, 255, size=(N, 16), dtype=np.uint8)
    peer[: N // 3] = own[N // 2 : N // 2 + N // 3]
    ws = Workspace(None, "mem", "alice")
    try:
        cs = 1000
        for c in range(N // cs):
            ws.write_chunk("d_own", c, own[c * cs : (c + 1) * cs].tobytes())
            ws.write_chunk("d_peer", c, peer[c * cs : (c + 1) * cs].tobytes())
        del own
        groups = _match.n_groups(N, N)
        assert groups > 20
        tracemalloc.start()
        try:
            od = partition(ws, "d_own", N, cs, groups)
            pd = partition(ws, "d_peer", N, cs, groups)
            found = 0
            for g in range(groups):
                a, _b = match_group(od, pd, g)
                found += len(a)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        ws.remove()
    assert found == N // 3
    assert peak < 16 * (2 * N) / 4, peak  # both sides' values would take 16 * 2N bytes
