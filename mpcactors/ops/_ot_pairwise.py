"""semi2k with more than two holders and no dealer: every correlation from pairwise OT.

Theory of operation
-------------------
Each pair of holders has its own base OTs (``_ot_engine.ot_setup`` with every peer) and runs the
two-holder machinery of ``_ot_triples.OtSource`` between them; a holder's share of a correlation
is its local term plus its shares of the cross terms with every peer, all pairs in the same
rounds (the scheduler merges them into one frame per peer).

* **Beaver triples** ``c = (sum_i a_i)(sum_j b_j) = sum_i a_i b_i + sum_{i != j} a_i b_j``: each
  unordered pair {i, j} makes its two cross terms a_i b_j and a_j b_i by Gilboa products, one
  per direction (MASCOT's semi-honest triple generation, Keller, Orsini, Scholl, CCS 2016, for
  n parties). Matrix triples likewise, with the matrix cross terms of ``OtSource``.
* **AND triples** ``c = (XOR_i a_i) & (XOR_j b_j)``: the same with XOR, each cross term a_i & b_j
  from one correlated OT per bit (delta = a bit of a_i, choice = the bit of b_j); the two-holder
  trick of defining a_i by random OTs does not extend, since a_i must be the same for every peer.
* **Random bits with both sharings** ``r = XOR_i s_i`` (B2A, truncation tuples): arithmetic shares
  by folding in one holder at a time, ``u_k = u_{k-1} XOR s_k = u_{k-1} + s_k - 2 u_{k-1} s_k``;
  ``u_{k-1}`` is additively shared among holders 0..k-1 and ``s_k`` is holder k's private bit, so
  ``u_{k-1} s_k`` is one correlated OT from each earlier holder (delta = its share of u_{k-1},
  choice = s_k). n - 1 stages of one OT each (two rounds, more for big arrays); holders outside
  a stage's pairs exchange as many empty rounds, so every holder takes part in every round and
  none starts the next stage early.
* **Truncation tuples** (r, r_mid, r_msb) for ``_trunc.py`` (Damgard et al. S&P 2019) from 64
  such random bits per element: r = sum 2^k r_k, r_mid = sum_{k=d..62} 2^(k-d) r_k, r_msb = r_63
  are linear in the bits' arithmetic shares. (Two holders use the cheaper wrap-bit truncation.)

Who sees what: only OT messages travel, between the two holders of each pair, as in
``_ot_engine.py``; none depends on another holder's shares. Semi-honest, any number of corrupt
holders short of all (each pair's OTs are secure against either of its two holders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._checks import U64
from ._comm import Step, gather_peers
from ._context import OpContext
from ._matmul import ring_matmul
from ._ot_engine import OtPair, idle_rounds, ot_rounds
from ._ot_triples import Made, OtSource, _bits_of, draw_operands

__all__ = ["PairwiseSource"]

_POW2 = np.left_shift(U64(1), np.arange(64, dtype=U64))


class PairwiseSource:
    """This holder's maker of correlations for one op with every other holder (module doc).

    Args:
        ctx: the op's context (labels the extension instances; ``ctx.prg()`` draws this holder's
            private randomness).
        party: this holder.
        holders: every holder, in the protocol's order (the folding order of random bits).
        pairs: the base OTs with each other holder.
    """

    def __init__(self, ctx: OpContext, party: str, holders: Sequence[str], pairs: Mapping[str, OtPair]) -> None:
        self.ctx = ctx
        self.party = party
        self.holders = tuple(holders)
        self.index = self.holders.index(party)
        self.peers = [h for h in self.holders if h != party]
        self.srcs = {p: OtSource(ctx, party, [h for h in self.holders if h in (party, p)], pairs[p]) for p in self.peers}

    def triple(self, shape: tuple[int, ...]) -> Made:
        """An elementwise Beaver triple (a_i, b_i, c_i); a_i, b_i early."""
        a, b = draw_operands(self.ctx, shape, shape)

        def step() -> Step[list[np.ndarray]]:
            c = np.multiply(a, b).reshape(-1)
            accs = [np.zeros(c.size, dtype=U64) for _ in self.peers]
            yield from gather_peers({p: self.srcs[p]._cross(a.reshape(-1), b.reshape(-1), acc) for p, acc in zip(self.peers, accs)})
            for acc in accs:
                c += acc
            return [a, b, c.reshape(shape)]

        return [a, b, None], step()

    def and_triple(self, shape: tuple[int, ...]) -> Made:
        """A boolean triple over 64-bit words; a_i, b_i early."""
        a, b = draw_operands(self.ctx, shape, shape)

        def step() -> Step[list[np.ndarray]]:
            crosses = yield from gather_peers({p: self.srcs[p].and_cross(a, b) for p in self.peers})
            c = np.bitwise_and(a, b)
            for x in crosses.values():
                c ^= x
            return [a, b, c]

        return [a, b, None], step()

    def matrix_triple(self, ashape: tuple[int, ...], bshape: tuple[int, ...]) -> Made:
        """A matrix triple (A_i, B_i, C_i), C = A @ B, under numpy's matmul rules; A_i, B_i early."""
        a, b = draw_operands(self.ctx, ashape, bshape)

        def step() -> Step[list[np.ndarray]]:
            res = yield from gather_peers({p: self.srcs[p]._matrix_or_stack(a, b, False) for p in self.peers})
            c = ring_matmul(a, b)
            for r in res.values():
                c += r[2]
            return [a, b, c]

        return [a, b, None], step()

    def _xor_to_arith(self, bits: np.ndarray, keep: tuple[int, ...] | None = None) -> Step[np.ndarray]:
        """This holder's additive share of ``XOR_i bits_i`` (0/1 per entry), from its own bits
        (bool, flat) by folding in one holder at a time (module doc). ``keep``: per position in
        each group of 64 bits, the low bytes of the share that matter (the OTs' corrections send
        only those; the share is then valid modulo 2^(8 keep) at that position)."""
        mine = bits.astype(U64)
        u = mine.copy() if self.index == 0 else np.zeros(bits.size, dtype=U64)
        for k in range(1, len(self.holders)):
            hk = self.holders[k]
            steps = {}
            for p in self.peers:
                pi = self.holders.index(p)
                if self.index == k and pi < k:  # my bit against each earlier holder's share of u
                    steps[p] = self.srcs[p].products(None, bits, keep)
                elif self.index < k and p == hk:
                    steps[p] = self.srcs[p].products(u, None, keep)
                else:  # not a pair of this stage: as many empty rounds as its pairs take
                    steps[p] = idle_rounds(p, ot_rounds(1, bits.size, keep, self.srcs[p].u_bytes))
            res = yield from gather_peers(steps)
            if self.index == k:  # u_k = s_k - 2 sum_i [u_{k-1} s_k]_i  (my share of u_{k-1} is 0)
                prod = np.zeros(bits.size, dtype=U64)
                for _, got in res.values():
                    if got.size:
                        prod += got
                u = mine - (prod << U64(1))
            elif self.index < k:  # u_k = [u_{k-1}]_i - 2 [u_{k-1} s_k]_i
                for sent, _ in res.values():  # the one pair of this stage (the others sent nothing)
                    u -= sent << U64(1) if sent.size else U64(0)
        return u

    def bit_pair(self, shape: tuple[int, ...]) -> Made:
        """A random bit with a boolean (early) and an arithmetic sharing (B2A)."""
        n = int(np.prod(shape, dtype=np.int64))
        bits = self.ctx.prg().random_bits(n)

        def step() -> Step[list[np.ndarray]]:
            arith = yield from self._xor_to_arith(bits.astype(bool))
            return [bits.reshape(shape), arith.reshape(shape)]

        return [bits.reshape(shape), None], step()

    def trunc_tuple(self, shape: tuple[int, ...], bits: int) -> Made:
        """(r, r_mid, r_msb) of ``_trunc.py`` from 64 random shared bits per element (none early):
        the bits of the XOR of the holders' private random words, each bit's share only modulo
        what the tuple needs of it (:func:`trunc_keep`)."""
        n = int(np.prod(shape, dtype=np.int64))
        word = self.ctx.prg().random_u64(n)

        def step() -> Step[list[np.ndarray]]:
            sh = yield from self._xor_to_arith(_bits_of(word), trunc_keep(bits))
            sh64 = sh.reshape(n, 64)
            r = np.einsum("nl,l->n", sh64, _POW2)  # wraps mod 2^64 like the ring
            r_mid = np.einsum("nl,l->n", sh64[:, bits:63], _POW2[: 63 - bits])
            r_msb = np.ascontiguousarray(sh64[:, 63])
            return [r.reshape(shape), r_mid.reshape(shape), r_msb.reshape(shape)]

        return [None, None, None], step()


def trunc_keep(bits: int) -> tuple[int, ...]:
    """Bytes of bit k's arithmetic share that a truncation tuple by ``bits`` = d uses: r = sum
    2^k r_k needs r_k modulo 2^(64-k); r_mid = sum_{k=d..62} 2^(k-d) r_k modulo 2^(64-k+d); r_msb
    = r_63 only modulo 2^(d+1) (``_trunc.truncated_share`` shifts it left by 63 - d). At d = 18:
    390 bytes of corrections per element instead of 512."""
    need = [64 - k + (bits if k >= bits else 0) for k in range(63)] + [max(1, bits + 1)]
    return tuple(-(-min(64, n) // 8) for n in need)
