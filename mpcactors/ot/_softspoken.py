"""SoftSpoken OT extension (small-field VOLE, semi-honest): half of IKNP's ``U`` at k = 2.

Theory of operation
-------------------
Roy, "SoftSpoken OT: Quieter OT Extension from Small-Field Silent VOLE in the Minicrypt Model",
CRYPTO 2022 (ePrint 2022/192), in its semi-honest form. IKNP is the case ``k = 1``: each of its
128 base OTs gives one column of the correlation ``Q = T ^ (r * s)``, and the receiver sends one
128-bit row of ``U`` per OT. SoftSpoken groups the base OTs ``k`` at a time into ``C = 128 / k``
*small VOLEs* over ``F_2^k``; each sends one bit per OT, so ``U`` is ``128 / k`` bits per OT
(8 bytes at ``k = 2``, against IKNP's 16).

Set-up of VOLE ``i`` (a punctured PRF by a GGM tree of depth ``k`` over the ``k`` random base
OTs ``ik .. ik + k - 1``, one message after the base OTs): the extension receiver R holds all
``2^k`` leaves ``L_{i,x}``; the sender S holds every leaf but ``L_{i,Delta_i}`` for its random
``Delta_i in F_2^k``. Level 1 is the first base OT's key pair (S chose ``not Delta_i[0]``).
Level ``l > 1`` expands every node into two children (:func:`_children`, HMAC-SHA256); R sends
``M_l[c] = XOR_p N[p, c] ^ k^c`` (the XOR of the level's ``c``-children, masked by base OT
``ik + l``'s key ``c``); S chose ``c = not Delta_i[l]`` and recovers the one child it cannot
expand itself. Leaf ``x`` is the node of path bits ``x[0], x[1], ...``. Per session (an op's
address) every leaf is re-keyed with :func:`~._extension.derive_keys`, which keeps the
puncturing, so one set-up serves any number of independent sessions.

Extending ``m`` OTs with choice bits ``r`` (``G`` is AES-128-CTR, one stream per leaf)::

    R: u_i = XOR_x G(L_{i,x}),  v_i[b] = XOR_{x: x_b = 1} G(L_{i,x})   (b < k)
       sends c_i = u_i ^ r                                 --- C = 128/k columns of m bits --->
    S: w_i[b] = XOR_{x != Delta_i: (x ^ Delta_i)_b = 1} G(L_{i,x}) ^ Delta_i[b] c_i

Then ``w_i[b] = v_i[b] ^ Delta_i[b] r``, since ``XOR_x (x ^ Delta_i)_b G_x`` is
``v_i[b] ^ Delta_i[b] u_i`` and its ``x = Delta_i`` term is zero. Columns ``ik + b`` of ``T``
(R) and ``Q`` (S) are ``v_i[b]`` and ``w_i[b]``: ``Q_j = T_j ^ (r_j * s)`` with ``s`` the bits
of every ``Delta_i``, the IKNP correlation, so rows, random OT (``H(j, Q_j ^ b s)``), the
correction of correlated OT and every user of :mod:`._extension`'s receiver and sender stay
as they are (:class:`SoftReceiver` and :class:`SoftSender` offer their ``choice_columns`` /
``rows_from_columns``).

What each side sees. S sees ``c_i``, masked by ``G(L_{i,Delta_i})``, the one leaf it does not
hold (the GGM puncturing: ``M_l[Delta_i[l]]`` is masked by the base-OT key S did not choose);
R sees nothing after the set-up. ``s`` is uniform in ``F_2^128`` to R (the base OTs hide the
choices), so the row hash ``H`` is used exactly as in IKNP (correlation robust with a uniform
``s``). Semi-honest only: SoftSpoken's consistency check for a malicious receiver is left out,
as IKNP's KOS15 check is.

Cost per OT at ``k = 2``: R expands 4 x 64 = 256 bits of PRG (IKNP: 2 x 128), S 3 x 64 = 192
(IKNP: 128), a few XOR passes more, and 8 bytes on the wire instead of 16. ``k`` is a parameter
of the set-up (:data:`KS`: 1, which is IKNP itself, 2 by default, 4, 8): ``U`` is ``16 / k``
bytes per OT, R expands ``2^k x 128 / k`` bits of PRG and S one leaf less per VOLE; at ``k = 4``
that is 512 / 480 bits (~35 % more OT time on this host, half the ``U``), for slow links.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes, hmac

from ..ops._comm import Exchange, Step
from ._base import OtError
from ._extension import _COLUMN_STEP, derive_keys, receiver_base_keys, sender_base_keys
from ._kernels import ColumnPrg, RowHash, _Scratch, transpose_bits

__all__ = ["KS", "U_COLUMNS", "WIDTH", "K", "SoftReceiver", "SoftSender", "soft_receiver_setup", "soft_sender_setup"]

K = 2  # bits per small VOLE, by default
KS = (1, 2, 4, 8)  # the k that divide a row (k = 1 is IKNP)
WIDTH = 128  # bits of a row of T / Q (as IKNP's)
U_COLUMNS = WIDTH // K  # columns of U at the default k: bits on the wire per OT
_GGM = b"mpcactors/ot/softspoken/ggm\0"


def _children(node: bytes) -> tuple[bytes, bytes]:
    """The two children of a GGM node: ``HMAC-SHA256(node, domain || c)[:16]``."""
    out = []
    for c in (0, 1):
        h = hmac.HMAC(node, hashes.SHA256())
        h.update(_GGM + bytes([c]))
        out.append(h.finalize()[:16])
    return out[0], out[1]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(16, "little")


def check_k(k: object) -> int:
    """``k`` if it is one of :data:`KS`, else a ValueError naming them."""
    if not isinstance(k, int) or isinstance(k, bool) or k not in KS:
        raise ValueError(f"SoftSpoken k must be one of {list(KS)} (bits per small VOLE), not {k!r}")
    return k


def _bit_masks(k: int, bits: np.ndarray) -> np.ndarray:
    """``(C, k)`` uint8: 0xFF where bit ``b`` of ``Delta_i`` is set."""
    return np.where(bits.reshape(WIDTH // k, k).astype(bool), np.uint8(0xFF), np.uint8(0))


def _subset_xor(g: np.ndarray, out: np.ndarray) -> None:
    """``out[:, b] = XOR_{x: x_b = 1} g[:, x]`` for ``g`` ``(C, 2^k, n)``, ``out`` ``(C, k, n)``.

    At ``k = 2``: ``out[:, 0] = g1 ^ g3``, ``out[:, 1] = g2 ^ g3`` (slot 0 is never read, so the
    sender may leave garbage in it)."""
    c, leaves, n = g.shape
    for b in range(out.shape[1]):
        sel = g.reshape(c, leaves >> (b + 1), 2, 1 << b, n)[:, :, 1]  # x with bit b set
        dst = out[:, b]
        srcs = [sel[:, hi, lo] for hi in range(sel.shape[1]) for lo in range(sel.shape[2])]
        if len(srcs) == 1:  # k = 1 (IKNP): one leaf
            np.copyto(dst, srcs[0])
            continue
        np.bitwise_xor(srcs[0], srcs[1], out=dst)  # 2^(k-1) >= 2 sources: no copy first
        for src in srcs[2:]:
            np.bitwise_xor(dst, src, out=dst)


def _streams(k: int, keys: np.ndarray, slots: list[tuple[int, int]]) -> ColumnPrg:
    """AES-128-CTR keystreams of some leaves, leaf ``(i, x)`` in row ``i 2^k + x``: expanded
    and viewed as ``(C, 2^k, n)``."""
    return ColumnPrg(keys, [(i << k) + x for i, x in slots], (WIDTH // k) << k)


def _expand(g: ColumnPrg, k: int, nbytes: int) -> np.ndarray:
    return g.expand(nbytes).reshape(WIDTH // k, 1 << k, nbytes)


class SoftReceiver:
    """The SoftSpoken receiver: every leaf of every small VOLE, and the row counter."""

    width = WIDTH

    def __init__(self, leaves: np.ndarray, *, k: int = K, session: bytes = b"") -> None:
        """``leaves`` ``(C, 2^k, 16)``: every leaf of each of the ``C = 128 / k`` VOLEs."""
        self.k = check_k(k)
        self.u_width = WIDTH // k  # columns of U: bits on the wire per OT
        self._leaves = np.array(leaves, dtype=np.uint8).reshape(self.u_width, 1 << k, 16)
        self._g = _streams(k, self._leaves, [(i, x) for i in range(self.u_width) for x in range(1 << k)])
        self._sc = _Scratch()
        self.rows_done = 0
        self.hash = RowHash(b"softspoken/rot" + session)

    def derive(self, session: bytes) -> SoftReceiver:
        """An independent instance for ``session`` (every leaf re-keyed, see the module doc)."""
        return SoftReceiver(derive_keys(self._leaves.reshape(-1, 16), session), k=self.k, session=session)

    def choice_columns(self, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(C, T)`` for choice bits ``r``: ``C`` ``(u_width, ceil(B/8))`` uint8 to send,
        ``T`` ``(B, 16)`` uint8 kept (the interface of :meth:`ExtReceiver.choice_columns`)."""
        r = np.asarray(choices, dtype=bool).reshape(-1)
        b = r.size
        nb = -(-b // 8)
        k, cols = self.k, self.u_width
        packed = np.packbits(r, bitorder="little")
        u = np.empty((cols, nb), dtype=np.uint8)
        t = np.empty((8 * nb, WIDTH // 8), dtype=np.uint8)
        for lo in range(0, nb, _COLUMN_STEP):
            hi = min(nb, lo + _COLUMN_STEP)
            g = _expand(self._g, k, hi - lo)
            v = self._sc.get("v", WIDTH * (hi - lo)).reshape(cols, k, hi - lo)
            _subset_xor(g, v)
            # u = XOR of all leaves = g0 ^ (XOR of the leaves with bit k-1 set) ^ (the rest)
            uc = u[:, lo:hi]
            np.bitwise_xor(v[:, k - 1], g[:, 0], out=uc)
            for x in range(1, (1 << k) >> 1):  # the other leaves with the top bit clear
                np.bitwise_xor(uc, g[:, x], out=uc)
            transpose_bits(v.reshape(WIDTH, hi - lo), out=t[8 * lo : 8 * hi], scratch=self._sc)
        u ^= packed[None, :]
        self.rows_done += b
        return u, t[:b]


class SoftSender:
    """The SoftSpoken sender: ``Delta_i`` and the ``2^k - 1`` leaves it holds of each VOLE."""

    width = WIDTH

    def __init__(self, s_bits: np.ndarray, known: np.ndarray, *, k: int = K, session: bytes = b"") -> None:
        """``s_bits`` ``(128,)``: bit ``ik + b`` is bit ``b`` of ``Delta_i``; ``known``
        ``(C, 2^k - 1, 16)``: the leaves ``x = Delta_i ^ y`` for ``y = 1 .. 2^k - 1``."""
        self.k = check_k(k)
        self.u_width = WIDTH // k
        self._s_bits = np.array(s_bits, dtype=np.uint8).reshape(WIDTH)
        self._known = np.array(known, dtype=np.uint8).reshape(self.u_width, (1 << k) - 1, 16)
        self.delta = np.packbits(self._s_bits, bitorder="little")
        self._masks = _bit_masks(k, self._s_bits)
        self._g = _streams(k, self._known, [(i, y) for i in range(self.u_width) for y in range(1, 1 << k)])
        self._sc = _Scratch()
        self.rows_done = 0
        self.hash = RowHash(b"softspoken/rot" + session)

    def derive(self, session: bytes) -> SoftSender:
        """The sender's half of :meth:`SoftReceiver.derive`."""
        return SoftSender(self._s_bits, derive_keys(self._known.reshape(-1, 16), session), k=self.k, session=session)

    def rows_from_columns(self, u_cols: np.ndarray, b: int) -> np.ndarray:
        """``Q`` ``(b, 16)`` for the next ``b`` rows from the receiver's columns ``C``."""
        nb = -(-b // 8)
        k, cols = self.k, self.u_width
        if u_cols.shape != (cols, nb) or u_cols.dtype != np.uint8:
            raise OtError(
                f"SoftSpoken OT: columns of shape {u_cols.shape} {u_cols.dtype}, expected ({cols}, {nb}) uint8"
            )
        q = np.empty((8 * nb, WIDTH // 8), dtype=np.uint8)
        for lo in range(0, nb, _COLUMN_STEP):
            hi = min(nb, lo + _COLUMN_STEP)
            n = hi - lo
            h = _expand(self._g, k, n)  # slot y holds G(L_{Delta ^ y}); slot 0 unused
            w = self._sc.get("w", WIDTH * n).reshape(cols, k, n)
            _subset_xor(h, w)
            c = u_cols[:, lo:hi]
            tmp = self._sc.get("c", cols * n).reshape(cols, n)
            for bit in range(k):
                np.bitwise_and(c, self._masks[:, bit, None], out=tmp)
                np.bitwise_xor(w[:, bit], tmp, out=w[:, bit])
            transpose_bits(w.reshape(WIDTH, n), out=q[8 * lo : 8 * hi], scratch=self._sc)
        self.rows_done += b
        return q[:b]


def _receiver_tree(k: int, k0: np.ndarray, k1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every leaf ``(C, 2^k, 16)`` and the level corrections ``(C, k - 1, 2, 16)``."""
    cols = WIDTH // k
    leaves = np.empty((cols, 1 << k, 16), dtype=np.uint8)
    corr = np.empty((cols, k - 1, 2, 16), dtype=np.uint8)
    for i in range(cols):
        base = i * k
        nodes = [bytes(k0[base]), bytes(k1[base])]  # index: path bits, LSB = level 1
        for lvl in range(1, k):
            kids = [_children(nd) for nd in nodes]
            for c in (0, 1):
                acc = bytes((k0 if c == 0 else k1)[base + lvl])
                for kid in kids:
                    acc = _xor(acc, kid[c])
                corr[i, lvl - 1, c] = np.frombuffer(acc, dtype=np.uint8)
            nodes = [kids[p][c] for c in (0, 1) for p in range(len(nodes))]  # bit lvl of x = c
        leaves[i] = np.frombuffer(b"".join(nodes), dtype=np.uint8).reshape(1 << k, 16)
    return leaves, corr


def _sender_tree(k: int, s: np.ndarray, keys: np.ndarray, corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Delta bits (128,), known leaves (C, 2^k - 1, 16))`` from the base OTs (choices ``s``)."""
    cols = WIDTH // k
    delta_bits = (1 - np.asarray(s, dtype=np.uint8)).astype(np.uint8)  # S chose not Delta
    known = np.empty((cols, (1 << k) - 1, 16), dtype=np.uint8)
    for i in range(cols):
        base = i * k
        d = [int(delta_bits[base + lvl]) for lvl in range(k)]
        nodes: dict[int, bytes] = {1 - d[0]: bytes(keys[base])}  # every node but the path's
        for lvl in range(1, k):
            nxt: dict[int, bytes] = {}
            for p, nd in nodes.items():
                kid = _children(nd)
                for c in (0, 1):
                    nxt[p | (c << lvl)] = kid[c]
            c = 1 - d[lvl]
            acc = _xor(bytes(corr[i, lvl - 1, c]), bytes(keys[base + lvl]))
            for p, nd in nodes.items():
                acc = _xor(acc, nxt[p | (c << lvl)])
            path = sum(d[j] << j for j in range(lvl))
            nxt[path | (c << lvl)] = acc
            nodes = nxt
        delta = sum(d[j] << j for j in range(k))
        for y in range(1, 1 << k):
            known[i, y - 1] = np.frombuffer(nodes[delta ^ y], dtype=np.uint8)
    return delta_bits, known


def soft_receiver_setup(peer: str, *, label: bytes = b"", k: int = K) -> Step[SoftReceiver]:
    """The receiver's set-up: 128 base OTs as their sender (2 rounds), then the GGM level
    corrections to ``peer`` (1 round, ``C (k - 1) x 32`` bytes)."""
    check_k(k)
    k0, k1 = yield from receiver_base_keys(peer, WIDTH, label=label)
    leaves, corr = _receiver_tree(k, k0, k1)
    yield Exchange(send={peer: corr})
    return SoftReceiver(leaves, k=k)


def soft_sender_setup(peer: str, *, label: bytes = b"", k: int = K) -> Step[SoftSender]:
    """The sender's half of :func:`soft_receiver_setup` (choice bits ``not Delta``)."""
    check_k(k)
    s, keys = yield from sender_base_keys(peer, WIDTH, label=label)
    got = yield Exchange(recv=frozenset({peer}))
    corr = got[peer]
    shape = (WIDTH // k, k - 1, 2, 16)
    if not isinstance(corr, np.ndarray) or corr.shape != shape or corr.dtype != np.uint8:
        raise OtError(f"SoftSpoken set-up: expected {shape} uint8 from {peer!r}, got {getattr(corr, 'shape', type(corr).__name__)}")
    delta_bits, known = _sender_tree(k, s, keys, corr)
    return SoftSender(delta_bits, known, k=k)
