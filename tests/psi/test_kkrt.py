"""KKRT16 PSI core (sans-IO, run in-process) against the plain Python intersection."""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import pytest

import mpcactors.psi._kkrt as kkrt
from mpcactors._errors import PsiError
from mpcactors.ops._comm import Exchange, run_local
from mpcactors.psi._kkrt import (
    cuckoo_insert,
    hash_bins,
    item_hashes,
    params,
    psi_receive,
    psi_send,
)


def run(a: Sequence[str | bytes], b: Sequence[str | bytes], chunk: int = 1 << 16) -> tuple[set, object, object]:
    """KKRT PSI of a (receiver) and b (sender); checks the alignment; returns the common ids."""
    res, _ = run_local({"r": psi_receive("s", item_hashes(a), chunk=chunk),
                        "s": psi_send("r", item_hashes(b))})
    r = res["r"]
    own = [a[i] for i in r.own]
    assert own == [b[j] for j in r.peer]  # S's positions are the same keys, row for row
    assert len(set(own)) == len(own)
    assert r.n_peer == len(b) and res["s"].n_peer == len(a)
    return set(own), r, res["s"]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"id-{i:08d}" for i in range(start, start + n)]


@pytest.mark.parametrize("na,nb,common", [(1000, 1000, 300), (5000, 200, 150), (200, 5000, 200), (3000, 3000, 0)])
def test_random_sets(na: int, nb: int, common: int) -> None:
    rnd = random.Random(na * 7 + nb)
    shared = [f"s{rnd.getrandbits(64):x}" for _ in range(common)]
    a = shared + [f"a{rnd.getrandbits(64):x}" for _ in range(na - common)]
    b = shared + [f"b{rnd.getrandbits(64):x}" for _ in range(nb - common)]
    rnd.shuffle(a)
    rnd.shuffle(b)
    got, _, _ = run(a, b)
    assert got == set(a) & set(b)


def test_every_id_common_and_several_chunks() -> None:
    a = ids(4000)
    b = list(reversed(a))
    got, r, _ = run(a, b, chunk=512)
    assert got == set(a)
    assert len(r.own) == 4000


def test_no_id_common() -> None:
    got, r, _ = run(ids(2000), ids(2000, 10_000), chunk=256)
    assert got == set() and r.own.size == 0


@pytest.mark.parametrize("a,b", [([], ["x", "y"]), (["x", "y"], []), ([], []), (["x"], ["x"]), (["x"], ["y"])])
def test_empty_and_single(a: list[str], b: list[str]) -> None:
    got, _, _ = run(a, b, chunk=8)
    assert got == set(a) & set(b)


def test_unicode_long_and_binary_ids() -> None:
    a = ["ünïcödé", "日本語のキー", "e\u0301", "é", "x" * 10_000, b"\x00\xff" * 50, "", "🙂"]
    b = ["é", "日本語のキー", "x" * 10_000, "x" * 9_999, "🙂", b"\x00\xff" * 50, "", "E\u0301"]
    got, _, _ = run(a, b)
    assert got == {"é", "日本語のキー", "x" * 10_000, "🙂", b"\x00\xff" * 50, ""}


def test_crowded_cuckoo_table_retries_and_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table with barely more bins than ids: many evictions, failed insertions retried."""
    tries: list[int] = []
    real = kkrt.cuckoo_insert

    def counting(bins3: np.ndarray, m: int, **kw: object) -> object:
        tries.append(m)
        return real(bins3, m, max_rounds=200)

    monkeypatch.setattr(kkrt, "bins_for", lambda n: max(8, n + n // 10 + 2))
    monkeypatch.setattr(kkrt, "cuckoo_insert", counting)
    a = ids(300)
    b = ids(300, 150)
    got, _, _ = run(a, b, chunk=64)
    assert got == set(a) & set(b)
    assert tries  # (usually more than one try at this load)


def test_cuckoo_placement_is_a_valid_assignment() -> None:
    items = item_hashes(ids(20_000))
    m = kkrt.bins_for(len(items))
    bins3 = hash_bins(b"k" * 16, items, m)
    placed = cuckoo_insert(bins3, m)
    assert placed is not None
    table, which = placed
    full = table >= 0
    assert sorted(table[full].tolist()) == list(range(len(items)))
    j = np.nonzero(full)[0]
    assert np.array_equal(bins3[table[j], which[table[j]]], j)


def test_params_and_failure_bounds() -> None:
    p = params(1 << 20, 1 << 20)
    assert p.bins == int(np.ceil(1.27 * (1 << 20)))
    assert 9 <= p.tag_bytes <= 10
    assert sum(p.caps) < 3 * (1 << 20) * 1.06  # padding costs a few percent
    assert params(kkrt.MAX_ITEMS, kkrt.MAX_ITEMS).tag_bytes <= 12  # tag and position fit a block


def tamper(gen: Generator[Exchange, Any, Any]) -> Generator[Exchange, Any, Any]:
    """The sender, but its value chunks lose their last column."""
    reply = None
    try:
        while True:
            ex = gen.send(reply) if reply is not None else next(gen)
            send = {
                p: v[:, :-1] if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] < 64 else v
                for p, v in ex.send.items()
            }
            reply = yield Exchange(send=send, recv=ex.recv)
    except StopIteration as stop:
        return stop.value


def test_malformed_sender_chunk_is_a_psi_error() -> None:
    with pytest.raises(PsiError, match="chunk 0 from 's'"):
        run_local({"r": psi_receive("s", item_hashes(ids(10)), chunk=8),
                   "s": tamper(psi_send("r", item_hashes(ids(10))))})


def test_ids_colliding_in_cuckoo_bins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids whose bins collide: 60 pairs of ids with all three bins equal (ids 2i and 2i+1 for
    i < 60, common ones among them), a few more with h_1 = h_2. Both parties hash alike, so
    cuckoo hashing must place both ids of a pair through the same three bins, and the sender's
    simple hashing puts several values in one bin."""
    real = kkrt.hash_bins
    odd, even = item_hashes(ids(120, 180)[1::2]), item_hashes(ids(120, 180)[0::2])
    partner = {bytes(o): e for o, e in zip(odd, even)}  # by content: both parties agree

    def colliding(key: bytes, items: np.ndarray, m: int) -> np.ndarray:
        canon = items.copy()
        for i, x in enumerate(items):
            e = partner.get(bytes(x))
            if e is not None:
                canon[i] = e
        b = real(key, canon, m).copy()
        few = (items[:, 0] < 4) & (items[:, 1] < 128)
        b[few, 2] = b[few, 1]
        return b

    monkeypatch.setattr(kkrt, "hash_bins", colliding)
    a = ids(400)
    b = ids(300, 200) + ["日本語", "x" * 5000]
    got, _, _ = run(a + ["日本語"], b, chunk=64)
    assert got == (set(a) & set(b)) | {"日本語"}


def test_sender_reports_given_positions() -> None:
    """A shard reports positions in the whole input (``positions=``), checked by ``peer_limit``."""
    a, b = ids(50), ids(40, 30)
    pos = np.arange(1000, 1040, dtype=np.uint32)
    res, _ = run_local({"r": psi_receive("s", item_hashes(a), peer_limit=1040),
                        "s": psi_send("r", item_hashes(b), positions=pos)})
    r = res["r"]
    assert sorted(int(p) for p in r.peer) == list(range(1000, 1020))
    assert [a[i] for i in r.own] == [b[int(p) - 1000] for p in r.peer]
    with pytest.raises(PsiError, match="beyond its 1019 items"):
        run_local({"r": psi_receive("s", item_hashes(a), peer_limit=1019),
                   "s": psi_send("r", item_hashes(b), positions=pos)})
