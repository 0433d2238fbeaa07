"""The sign bit of a two-holder arithmetic share by the millionaires' protocol (semi2k, no dealer).

Theory of operation
-------------------
CrypTFlow2 (Rathee, Rastogi, Gupta, Chandran, Sharma, "CrypTFlow2: Practical 2-Party Secure
Inference", CCS 2020, section 3; also Cheetah, Huang et al., USENIX Security 2022, section 5).
For ``l = bits`` and ``x = x_0 + x_1 mod 2^l``, with ``x'`` the low ``q = l - 1`` bits::

    msb(x) = msb(x_0) ^ msb(x_1) ^ carry,   carry = [x_0' + x_1' >= 2^q] = [a < b],
    a = 2^q - 1 - x_s' (the OT sender's input),   b = x_r' (the chooser's input).

``carry`` is symmetric in the holders, so half of the elements have holder 0 as the sender and
the other half holder 1: both directions carry the same work in the same rounds.

**Leaves.** ``a`` and ``b`` are cut into chunks of ``m`` bits (the top one may be shorter),
``a = sum_j 2^(m j) a_j``. For every chunk the chooser learns a boolean sharing of
``lt_j = [a_j < b_j]`` and ``eq_j = [a_j == b_j]`` by one 1-out-of-2^w OT (``w`` the chunk's
width): the sender draws random output bits ``(r_lt, r_eq)`` (its shares) and offers, for every
possible ``v``, the pair ``([a_j < v] ^ r_lt, [a_j == v] ^ r_eq)``; the chooser takes pair
``b_j``. The 1-out-of-2^w OT is Naor and Pinkas's from ``w`` 1-out-of-2 OTs ("Oblivious
Transfer and Polynomial Evaluation", STOC 1999, section 4.1; "Computationally Secure Oblivious
Transfer", J. Cryptology 2005): one random OT per bit ``i`` of the chunk (IKNP,
:func:`~mpcactors.ops._ot_engine._rot_pair`, the chooser chooses with bit ``i`` of ``b_j``)
gives the sender two pseudorandom 64-bit strings ``k_i^0, k_i^1`` (fixed-key AES TMMO row
hashes, ``ot/_kernels.py``) and the chooser ``k_i^(b_i)``. The pad of pair ``v`` is
``F(v) = XOR_i bits 2v, 2v+1 of k_i^(v_i)``: the PRF ``F_k(v)`` of Naor-Pinkas is the 2-bit
slice ``v`` of the hash output ``k`` (a PRF on a 2^w-point domain read from a PRG's output; so
``2^(w+1) <= 64``, ``m <= 5``). The sender sends all 2^w padded pairs as one ``2^(w+1)``-bit
word; the chooser removes pad ``F(b_j)``, which it can compute, and reads pair ``b_j``.
No hash is computed beyond the OT's own: the sender's pad word is
``XOR_i k_i^0 ^ ((k_i^0 ^ k_i^1) & S_i)``, ``S_i`` the pairs whose index has bit ``i`` set.

**Tree.** ``[a < b] = lt_hi ^ (eq_hi & lt_lo)`` and ``[a == b] = eq_hi & eq_lo`` over adjacent
chunks (lt and eq of one chunk are exclusive, so XOR is OR), a tree of ``k - 1`` nodes over the
``k`` leaves, one opening round per level, ``ceil(log2 k)`` levels. Both ANDs of a node share the
operand ``eq_hi``, so each node takes one two-output AND triple ``(A; B, B'; A B, A B')``: it is
made up front, from the shape alone, by random OT in the leaves' rounds, one OT per node each
way (as the AND triples of ``_ot_triples.py``, Asharov et al. CCS 2013, with two bits of the
sender's ``k^0 ^ k^1`` as ``B_s, B'_s`` and the chooser's random choice as ``A_r``; the cross
term ``A_r (B_s, B'_s)`` is shared as the low bits of ``k^0`` and ``k^(A_r)``). A level opens
``eq_hi ^ A``, ``lt_lo ^ B`` and ``eq_lo ^ B'`` (the root only the first two), Beaver over GF(2).
Every bit is packed 64 elements a word.

Rounds: the random OTs (one per ``ROUND_BYTES`` of ``U``: 1 for small inputs), one for the
leaf words, ``ceil(log2 k)`` for the tree: 6 for 64 bits with ``m`` = 4 or 5. Traffic per element
and direction, ``l = 64``: ``m = 5``: (31.5 leaf + 12 node) random OTs of 16 bytes, 13 leaf
words of 64 bits for half of the elements, 35 opened bits: about 750 bytes; ``m = 4``: (31.5 +
15) OTs, 16 words of 32 bits, 43 bits: about 780 bytes (the AND circuit of ``_boolean.msb``:
~3 KB). The leaves always cost ``l - 1`` OTs; a larger ``m`` saves tree nodes but doubles the
words per bit (``m <= 5``: a pad is a slice of one 64-bit OT output).

Who sees what: the chooser sees ``U`` of the sender's OTs (pseudorandom, ``_ot_engine.py``), the
2^w padded pairs of each leaf, of which it can unpad only pair ``b_j`` (every other pad ``F(v)``
XORs at least one slice ``v`` of a string ``k_i^(1 - b_i)`` it does not have, and different
``v`` read disjoint slices: the other pairs are uniform to it), and openings masked by the AND
triples' random ``A, B, B'``. The sender sees only ``U`` and openings. Neither view depends on
the other holder's share; ``tests/ops/test_millionaire.py`` checks the leaf words with a
distinguisher that catches an unpadded variant. Semi-honest only.
"""

from __future__ import annotations

import functools

import numpy as np

from ..ot._base import OtError
from ._checks import U64
from ._comm import Exchange, Step
from ._context import OpContext
from ._ot_engine import _rot_pair
from ._ot_triples import OtSource
from ._protocol import Protocol, Share
from ._semi2k import Semi2k

__all__ = ["CHUNK_BITS", "millionaire_msb", "millionaire_rounds", "millionaire_share"]

CHUNK_BITS = 5  # m: bits per leaf (CrypTFlow2 uses 4; 5 measured 2-8 % faster, bench/RESULTS.md)
_THREE = U64(3)


def _widths(q: int, m: int) -> list[int]:
    """Widths of the chunks of ``q`` bits, lowest first (the top one may be shorter)."""
    return [min(m, q - lo) for lo in range(0, q, m)]


def millionaire_rounds(bits: int = 64, m: int = CHUNK_BITS, ot_rounds: int = 1) -> int:
    """Rounds of :func:`millionaire_msb`: the random OTs, the leaf words, the tree levels."""
    k = len(_widths(bits - 1, m))
    return ot_rounds + 1 + (k - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _tables(w: int) -> tuple[np.ndarray, np.ndarray, U64, U64]:
    """For chunks of ``w`` bits: ``table[a]`` with pair v = ([a < v], [a == v]) at bits 2v, 2v+1;
    ``sel[i]``: the pairs whose index v has bit i set; the masks of every pair's low and high bit."""
    n = 1 << w
    table = np.zeros(n, dtype=U64)
    for a in range(n):
        word = 0
        for v in range(n):
            word |= int(a < v) << (2 * v) | int(a == v) << (2 * v + 1)
        table[a] = word
    sel = np.array([sum(3 << (2 * v) for v in range(n) if v >> i & 1) for i in range(w)], dtype=U64)
    lo = sum(1 << (2 * v) for v in range(n))
    return table, sel, U64(lo), U64(lo << 1)


def _pad_word(k0: np.ndarray, k1: np.ndarray, sel: U64) -> np.ndarray:
    """The sender's part of the pads of bit i of a chunk: pair v from ``k^(v_i)`` (module doc)."""
    return k0 ^ ((k0 ^ k1) & sel)


def _wire_dtype(w: int) -> type:
    return {1: np.uint8, 2: np.uint8, 3: np.uint16, 4: np.uint32}.get(w, np.uint64)


def _pack(bits: np.ndarray) -> np.ndarray:
    """(..., n) 0/1 uint8 -> (..., n / 64) uint64, element e at bit e % 64 of word e // 64."""
    return np.packbits(bits, axis=-1, bitorder="little").view(U64)


def _unpack(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")


def _pieces(lo: int, hi: int, start: int, block: int, count: int) -> list[tuple[int, int, int, int]]:
    """Rows lo..hi-1 against ``count`` blocks of ``block`` rows from row ``start``:
    ``(block index, first, last element in it, offset in lo..hi)`` of every overlap."""
    out = []
    a, b = max(lo, start), min(hi, start + block * count)
    while a < b:
        idx = (a - start) // block
        end = min(b, start + (idx + 1) * block)
        e0 = a - start - idx * block
        out.append((idx, e0, e0 + end - a, a - lo))
        a = end
    return out


def millionaire_msb(ctx: OpContext, src: OtSource, part: np.ndarray, bits: int = 64, m: int = CHUNK_BITS) -> Step[np.ndarray]:
    """This holder's boolean share of the sign bit of the low ``bits`` bits of ``x``.

    Args:
        ctx: the op's context (this holder's private PRG draws the sender's output bits and the
            AND triples' operands).
        src: the op's OT source with the other holder (``Semi2k._source``).
        part: this holder's arithmetic share of ``x``, any shape.
        bits: the width ``l`` of the two's complement numbers, 2..64.
        m: bits per leaf, 1..5.

    Returns:
        A uint64 array of ``part``'s shape, every word 0 or 1: with the other holder's, XOR
        ``[x < 0]`` (as an ``l``-bit number).

    Raises:
        ValueError: ``bits`` or ``m`` out of range.
        OtError: a malformed message from the other holder.
    """
    if not 2 <= bits <= 64:
        raise ValueError(f"bits must be in 2..64, not {bits!r}")
    if not 1 <= m <= 5:
        raise ValueError(f"chunk bits m must be in 1..5, not {m!r}")
    shape = part.shape
    n = int(np.prod(shape, dtype=np.int64))
    n_pad = max(128, -(-n // 128) * 128)  # halves of whole words
    half, nw = n_pad // 2, n_pad // 64
    q = bits - 1
    widths = _widths(q, m)
    k = len(widths)
    nodes = k - 1
    low = U64((1 << q) - 1)
    flat = np.zeros(n_pad, dtype=U64)
    flat[:n] = part.reshape(-1)
    # holder 0 sends for elements [0, half), holder 1 for the rest (module doc)
    mine = slice(0, half) if src.first else slice(half, n_pad)
    theirs = slice(half, n_pad) if src.first else slice(0, half)
    a_in = low ^ (flat[mine] & low)  # 2^q - 1 - x_s'
    b_in = flat[theirs] & low
    g = ctx.prg()
    a_tri = g.random_u64((nodes, nw))  # this holder's A of every node triple (packed)
    a_bits = _unpack(a_tri)  # (nodes, n_pad) 0/1, the choices of the triple OTs
    pad_s = np.zeros((k, half), dtype=U64)  # sender: pad words of my leaves
    pad_r = np.zeros((k, half), dtype=U64)  # chooser: the pads it can compute
    tri_b = np.zeros((nodes, n_pad), dtype=np.uint8)  # sender: (B', B) in bits 1, 0
    tri_c = np.zeros((nodes, n_pad), dtype=np.uint8)  # both: cross terms (bits 1, 0)
    leaf_rows = q * half

    def on_send(lo: int, hi: int, x0: np.ndarray, x1: np.ndarray) -> None:
        k0, k1 = x0[:, 0], x1[:, 0]
        for i, e0, e1, o in _pieces(lo, hi, 0, half, q):
            j, bit = divmod(i, m)
            sel = _tables(widths[j])[1][bit]
            pad_s[j, e0:e1] ^= _pad_word(k0[o : o + e1 - e0], k1[o : o + e1 - e0], sel)
        for t, e0, e1, o in _pieces(lo, hi, leaf_rows, n_pad, nodes):
            c0, c1 = k0[o : o + e1 - e0], k1[o : o + e1 - e0]
            tri_b[t, e0:e1] = ((c0 ^ c1) & _THREE).astype(np.uint8)
            tri_c[t, e0:e1] ^= (c0 & _THREE).astype(np.uint8)

    def choices(lo: int, hi: int) -> np.ndarray:
        out = np.empty(hi - lo, dtype=bool)
        for i, e0, e1, o in _pieces(lo, hi, 0, half, q):
            out[o : o + e1 - e0] = (b_in[e0:e1] >> U64(i)) & U64(1)
        for t, e0, e1, o in _pieces(lo, hi, leaf_rows, n_pad, nodes):
            out[o : o + e1 - e0] = a_bits[t, e0:e1]
        return out

    def on_recv(lo: int, hi: int, x: np.ndarray) -> None:
        kr = x[:, 0]
        for i, e0, e1, o in _pieces(lo, hi, 0, half, q):
            pad_r[i // m, e0:e1] ^= kr[o : o + e1 - e0]
        for t, e0, e1, o in _pieces(lo, hi, leaf_rows, n_pad, nodes):
            tri_c[t, e0:e1] ^= (kr[o : o + e1 - e0] & _THREE).astype(np.uint8)

    peer = src.peer
    yield from _rot_pair(peer, src.snd, src.rcv, leaf_rows + nodes * n_pad, on_send, choices, on_recv)

    # leaves: the sender's random output bits are its shares; it sends every padded pair
    r_lt = g.random_u64((k, half // 64))
    r_eq = g.random_u64((k, half // 64))
    rl, re = _unpack(r_lt).astype(U64), _unpack(r_eq).astype(U64)
    words = []
    for j, w in enumerate(widths):
        table, _, lo_mask, hi_mask = _tables(w)
        aj = (a_in >> U64(j * m)) & U64((1 << w) - 1)
        word = pad_s[j] ^ table[aj] ^ (rl[j] * lo_mask) ^ (re[j] * hi_mask)
        words.append((word & (lo_mask | hi_mask)).astype(_wire_dtype(w)))
    got = yield Exchange(send={peer: tuple(words)}, recv=frozenset({peer}))
    msg = got.get(peer)
    if not isinstance(msg, (tuple, list)) or len(msg) != k:
        raise OtError(f"millionaire: expected {k} leaf word arrays from {peer!r}, got {type(msg).__name__}")
    lt = np.empty((k, nw), dtype=U64)
    eq = np.empty((k, nw), dtype=U64)
    mine_w = slice(mine.start // 64, mine.stop // 64)
    theirs_w = slice(theirs.start // 64, theirs.stop // 64)
    lt[:, mine_w], eq[:, mine_w] = r_lt, r_eq
    got_lt = np.empty((k, half), dtype=np.uint8)
    got_eq = np.empty((k, half), dtype=np.uint8)
    for j, w in enumerate(widths):
        arr = msg[j]
        if not isinstance(arr, np.ndarray) or arr.shape != (half,) or arr.dtype != _wire_dtype(w):
            raise OtError(
                f"millionaire: expected leaf words ({half},) {np.dtype(_wire_dtype(w))} from {peer!r} "
                f"for chunk {j}, got {getattr(arr, 'shape', type(arr).__name__)}"
            )
        bj = (b_in >> U64(j * m)) & U64((1 << w) - 1)
        pair = ((arr.astype(U64) ^ pad_r[j]) >> (bj << U64(1))) & _THREE
        got_lt[j] = pair & U64(1)
        got_eq[j] = pair >> U64(1)
    lt[:, theirs_w], eq[:, theirs_w] = _pack(got_lt), _pack(got_eq)

    # tree: one opening per level with the node triples
    b_all = _pack(tri_b & np.uint8(1))
    b2_all = _pack(tri_b >> np.uint8(1))
    c_all = _pack(tri_c & np.uint8(1))
    c2_all = _pack(tri_c >> np.uint8(1))
    c_all ^= a_tri & b_all  # + A_i B_i (own terms)
    c2_all ^= a_tri & b2_all
    used = 0
    level = 0
    while lt.shape[0] > 1:
        cnt = lt.shape[0] // 2
        root = lt.shape[0] == 2
        t = slice(used, used + cnt)
        used += cnt
        eq_hi, lt_lo, eq_lo = eq[1 : 2 * cnt : 2], lt[0 : 2 * cnt : 2], eq[0 : 2 * cnt : 2]
        a_t, b_t, b2_t = a_tri[t], b_all[t], b2_all[t]
        opening = [eq_hi ^ a_t, lt_lo ^ b_t] + ([] if root else [eq_lo ^ b2_t])
        mine_open = np.stack(opening)
        got = yield Exchange(send={peer: mine_open}, recv=frozenset({peer}))
        theirs_open = got.get(peer)
        if not isinstance(theirs_open, np.ndarray) or theirs_open.shape != mine_open.shape or theirs_open.dtype != U64:
            raise OtError(
                f"millionaire: expected openings {mine_open.shape} uint64 from {peer!r} at tree level "
                f"{level}, got {getattr(theirs_open, 'shape', type(theirs_open).__name__)}"
            )
        opened = mine_open ^ theirs_open
        e, f = opened[0], opened[1]
        and_lt = c_all[t] ^ (e & b_t) ^ (a_t & f)
        if src.first:
            and_lt ^= e & f
        new_lt = [lt[1 : 2 * cnt : 2] ^ and_lt]
        new_eq: list[np.ndarray] = []
        if not root:
            f2 = opened[2]
            and_eq = c2_all[t] ^ (e & b2_t) ^ (a_t & f2)
            if src.first:
                and_eq ^= e & f2
            new_eq.append(and_eq)
        if lt.shape[0] % 2:  # the top chunk waits for the next level
            new_lt.append(lt[-1:])
            new_eq.append(eq[-1:])
        lt = np.concatenate(new_lt)
        eq = np.concatenate(new_eq) if new_eq else eq[:0]
        level += 1
    carry = _unpack(lt[0])[:n].astype(U64)
    top = (flat[:n] >> U64(q)) & U64(1)
    return (carry ^ top).reshape(shape)



def millionaire_share(ctx: OpContext, proto: Protocol, x: Share, bits: int = 64) -> Step[Share]:
    """:func:`millionaire_msb` on a share of semi2k without a dealer (``_boolean.msb``)."""
    if not isinstance(proto, Semi2k) or not proto.dealerless:
        raise TypeError(f"the millionaires' protocol needs semi2k without a dealer, not {proto!r}")
    out = yield from millionaire_msb(ctx, proto._pair_source(ctx), x.parts[0], bits)
    return Share((out,), x.shape, "bool")
