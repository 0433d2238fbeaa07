"""Matrix Beaver-triple cross terms by lattice HE (BFV in Microsoft SEAL, through TenSEAL).

Theory of operation
-------------------
A matrix triple ``C = A B`` over Z_2^64 with ``A = A_0 + A_1``, ``B = B_0 + B_1`` needs the cross
terms ``A_i B_j`` (i != j) shared between the holders; ``A_i B_i`` is local. This module makes
one cross term per direction by homomorphic encryption instead of OT, so the traffic grows
with the matrices' entries (``m k + m n``), not with ``m k n`` as in Gilboa's OT product.

* **Coefficient encoding** (Huang, Lu, Hong, Chen, Hu, Wang, Ren, "Cheetah: Lean and Fast
  Secure Two-Party Deep Neural Network Inference", USENIX Security 2022, section 3.1). Cut ``A``
  into ``m' x k'`` blocks and ``B`` into ``k' x n'`` blocks with ``m' k' n' + k' - 1 <= N`` (the
  ring degree). Put

      a(X) = sum_{r,l} A[r, l] X^(r k' n' + l)        b(X) = sum_{l,c} B[l, c] X^(c k' + k' - 1 - l)

  then the coefficient of ``X^(r k' n' + c k' + k' - 1)`` in ``a(X) b(X)`` is
  ``sum_l A[r, l] B[l, c]``: every other product lands on another exponent and nothing wraps
  around ``X^N = -1``. One ciphertext times plaintext product gives a whole ``m' x n'`` block of
  inner products; the blocks along ``k`` are summed in the ciphertext.
* **Z_2^64 at the scale Q / 2^64** (CHEETAH's; SEAL's plaintext modulus is at most 60 bits, so
  ``t = 2^59`` and the scale is written in part by hand, :mod:`._he_seal`). The key holder's
  ciphertext of ``a`` has phase ``c_0 + c_1 s = (Q / 2^64) a + e (mod Q)``. The evaluator cuts
  its ``b`` (64-bit) into signed 32-bit halves, ``b = b_lo + 2^32 b_hi`` (SEAL lifts plaintext
  coefficients above ``t / 2`` to negatives, so each half is a small plaintext), and computes
  ``Enc(a) b_lo + (Enc(a) b_hi) 2^32``: phase ``(Q / 2^64) a b + e'`` where ``a b`` is the
  integer product, and ``(Q / 2^64) 2^64 = Q`` vanishes mod Q, so the phase carries
  ``a b mod 2^64``. SEAL's decryption (``round(t phase / Q) mod t``) of the block gives
  ``hi = round(M / 32) mod 2^59`` and of the block doubled five times ``lo = M mod 2^59``
  (``M`` the block's message): the two overlap in 54 bits, which fix the rounding's carry, and
  together give ``M mod 2^64`` (:func:`_join`).
* **Masks.** The evaluator adds a fresh public-key encryption of a mask ``R``, uniform in
  Z_2^64 on *every* coefficient (the unwanted ones hold partial sums of ``B_j`` too), and keeps
  ``-R`` at the wanted ones; the key holder keeps what it decrypts there, ``A_i B_j + R``.
* **Circuit privacy.** What the key holder would otherwise learn about ``B_j``, and how it is
  closed:
  - ``c_1`` of the product is ``c_1(Enc(a)) b(X)`` and i knows ``c_1(Enc(a))``: the *fresh*
    public-key encryption of the mask re-randomizes ``c_1`` (RLWE);
  - the noise is ``e b_lo + 2^32 e b_hi + ...``: j floods it (Asharov, Jain, Lopez-Alt, Tromer,
    Vaikuntanathan, Wichs, EUROCRYPT 2012, "smudging"; Gentry's thesis, 2009) with ``f``, a
    polynomial whose coefficients are uniform integers in ``[-F, F)``. ``F`` is the next power
    of two above ``2^sigma`` times the worst-case noise bound ``B`` times the number of
    coefficients the whole triple floods, so the statistical distance of everything i decrypts
    from a view independent of ``B_j`` is at most ``2^-sigma`` in all (the union bound:
    ``sum |delta| / F``; ``sigma = 40``). ``B`` is ``(eta + 1) ||b||_1 (2^32 + 1)`` with
    ``||b||_1 <= k n' 2^31`` per half (``eta = 21`` bounds SEAL's error coefficients, and the
    encoding's two roundings add 1), plus the mask encryption's noise (``< 2^20``). Correctness
    needs the doubled block's noise ``32 (B + F)`` below ``Q / (2 t)``: :func:`flood_bits`
    checks it with a margin, and a shape that does not fit raises ``ValueError`` (the caller
    uses OT).
  j sees only ciphertexts under i's key (RLWE, semantic security). Semi-honest only.
* **Parameters and SEAL objects** (:mod:`._he_seal`): ``N = 16384``, four 60-bit data primes
  and a 60-bit special prime, ``t = 2^59``; one key pair per triple and holder (from SEAL's
  CSPRNG). Ciphertexts and public keys travel as SEAL's own serialized bytes, checked by
  SEAL's loader (a malformed one raises :class:`HeError` naming the peer); plaintexts and the
  hand-written ``(c_0, 0)`` parts are written in SEAL's uncompressed format and loaded. The A
  ciphertexts are symmetric encryptions, so they travel *seeded* (``c_1`` as the 64-byte seed
  it was expanded from: half the bytes), the low bits added to the ``c_0`` SEAL saved. The
  evaluator mod-switches each returned block down two data primes after the flood
  (:func:`reply_drops`: exact decryption in the worst case; a public function of the flooded
  block, so the same view).

Rounds: the A ciphertexts go in chunks of ~16 MB (:func:`_chunks`: whole block rows, or parts
of a row along k where one row is more); in round ``u`` each holder sends chunk ``u`` (with its
public key on the first) and the evaluated outputs of the peer's chunk ``u - 2`` (of the rows
it ends). The peer's chunk ``u - 1``, here since round ``u - 1``, is evaluated while round
``u``'s messages travel, and so is my chunk ``u + 1`` (``Exchange.meanwhile``): on a slow link
the SEAL work hides behind the transfer. ``chunks + 2`` rounds (8 at 256^3, 38 at 512^3).
Both holders run both directions at once.

TenSEAL (``pip install tenseal``, the ``he`` extra) is an optional dependency imported on first
use. Its calls hold the GIL, so a node runs triples worth it (:func:`worth_a_process`) in a child
process (``mpcactors._offload``, which runs :func:`offloaded_cross_terms`); tests that drive the
step directly compute in process.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._checks import U64
from ._comm import Step
from ._he_seal import (
    DATA_BITS,
    DEGREE,
    LOW_BITS,
    PLAIN,
    Files,
    HeError,
    SealContext,
    available,
    context,
    load_peer,
    pack,
    pipelined_rounds,
    unpack,
)
from ._prg import Prg

__all__ = [
    "DEGREE",
    "SIGMA",
    "BlockPlan",
    "HeError",
    "available",
    "flood_bits",
    "he_cross_terms",
    "he_rounds",
    "offloaded_cross_terms",
    "plan_blocks",
    "reply_drops",
    "worth_a_process",
]

SIGMA = 40  # statistical security of the noise flooding
_ETA = 21  # bound on SEAL's error coefficients (centred binomial, 21)
_MASK_ENC_NOISE = 1 << 20  # bound on a public-key encryption's noise at N = 16384 (21 (2 N + 1) + 1)
_HALF = 32  # B's halves: signed 32-bit integers
_CHUNK_BYTES = 16 << 20  # A ciphertexts per chunk, counted loaded (~1 MB each)
_CT_BYTES = 2 * 4 * DEGREE * 8  # a ciphertext's coefficients at the data level
_PT_BYTES = 2 * 4 * DEGREE * 8  # a B block's two plaintexts in NTT form at the data level
_B_BUDGET = 768 << 20  # bytes of B plaintexts a plan may hold
# Measured costs (ms, one core, this module's calls): a block product (both halves, with their
# adds); an encrypted A block; a B block's plaintexts (write, load, NTT); a returned block (its
# halves joined, mask encryption, flood, switch, save, load, two decryptions, the wanted
# coefficients read).
_COST_MUL, _COST_A, _COST_B, _COST_OUT = 1.1, 10.5, 3.4, 22.0
_OFFLOAD_MS = 2000.0  # modelled CPU per holder from which a triple runs in a child process


@dataclasses.dataclass(frozen=True, slots=True)
class BlockPlan:
    """How A (m x k) and B (k x n) are cut: blocks of m' x k' and k' x n'."""

    mb: int  # m': rows of an A block
    kb: int  # k': inner length of a block
    nb: int  # n': columns of a B block
    m: int
    k: int
    n: int

    @property
    def counts(self) -> tuple[int, int, int]:
        """Blocks along m, k, n."""
        return -(-self.m // self.mb), -(-self.k // self.kb), -(-self.n // self.nb)

    def cost(self) -> float:
        """Modelled milliseconds per direction (one holder's encryptions and decryptions plus
        the other's products)."""
        im, ik, jn = self.counts
        return (
            _COST_MUL * im * ik * jn + _COST_A * im * ik + _COST_B * ik * jn + _COST_OUT * im * jn
        )


@functools.lru_cache(maxsize=256)  # asked per matmul op (route, rounds, triple): a search over block sizes
def plan_blocks(m: int, k: int, n: int, degree: int = DEGREE) -> BlockPlan:
    """The block shape of least modelled cost with ``m' k' n' + k' - 1 <= degree`` whose B
    plaintexts (held in NTT form for one prime at a time) fit :data:`_B_BUDGET` bytes, or the
    one with the fewest B blocks if none does."""

    best: BlockPlan | None = None
    leanest: BlockPlan | None = None
    nbs = sorted(_sizes(n))
    for kb in sorted(_sizes(k)):
        if kb > degree:
            break
        for nb in nbs:
            mb = min(m, (degree - kb + 1) // (kb * nb))
            if mb < 1:
                break
            plan = BlockPlan(mb, kb, nb, m, k, n)
            _, ik, jn = plan.counts
            if leanest is None or ik * jn < math.prod(leanest.counts[1:]):
                leanest = plan
            if ik * jn * _PT_BYTES <= _B_BUDGET and (best is None or plan.cost() < best.cost()):
                best = plan
    if leanest is None:
        raise ValueError(f"no block shape fits ring degree {degree} for k={k}")
    return best or leanest


def _sizes(d: int) -> set[int]:
    """Every ``ceil(d / c)`` for ``c = 1 .. d``: the block sizes worth trying (another size
    makes as many blocks as the next one of these and leaves more padding). ``O(sqrt d)``: the
    values for ``c <= sqrt d``, and every small ``v`` that some ``c`` gives (``c = ceil(d / v)``
    does if any does)."""
    r = math.isqrt(d) + 1
    out = {-(-d // c) for c in range(1, min(d, r) + 1)}
    out.update(v for v in range(1, min(d, r) + 1) if -(-d // -(-d // v)) == v)
    return out


def _noise_bound(plan: BlockPlan) -> int:
    """``B``: the worst-case noise of an evaluated block before the flood (module doc)."""
    _, ik, _ = plan.counts
    half = (_ETA + 1) * ik * plan.kb * plan.nb << (_HALF - 1)  # ||e_a||_inf ||b_half||_1
    return half * ((1 << _HALF) + 1) + _MASK_ENC_NOISE


def _headroom(q: int, t: int, shift: int = LOW_BITS) -> int:
    """The noise below which a block at modulus ``q`` decrypts exactly *doubled* ``shift`` times
    to the scale ``q / t`` (:func:`_join` reads both): ``q / (2 t 2^shift)``."""
    return q // t // 2 >> shift


def flood_bits(plan: BlockPlan, degree: int = DEGREE) -> int:
    """``log2 F`` of the flood for this triple (module doc), or ValueError where ``B + F``
    would not stay below the headroom (the shape is too big for these parameters)."""
    im, _, jn = plan.counts
    noise = _noise_bound(plan)
    bits = (noise * im * jn * degree).bit_length() + SIGMA
    room = _headroom(1 << (DATA_BITS - 1), PLAIN)  # a lower bound: the data primes are just below 2^60
    if noise + (1 << bits) >= room // 4 * 3:
        raise ValueError(
            f"an HE matrix triple of {plan.m}x{plan.k} @ {plan.k}x{plan.n} needs a flood of 2^{bits}, "
            f"more than the ciphertext modulus leaves (2^{room.bit_length() - 1})"
        )
    return bits


def reply_drops(c: SealContext, bound: int, degree: int = DEGREE, shift: int = LOW_BITS) -> int:
    """How many data primes the evaluator may drop (mod switches) from a flooded block whose
    noise is below ``bound``, keeping its decryption exact.

    BFV's mod switch from ``Q`` to ``Q' = Q / q_last`` divides the noise by ``q_last`` and adds
    rounding: ``|e0 + e1 s| <= (1 + ||s||_1) / 2 <= (1 + N) / 2`` for SEAL's ternary secret.
    After ``d`` switches the noise is below ``bound / (q_L ... q_(L-d+1)) + N + 1``; this keeps
    it below :func:`_headroom` at ``Q'`` (``shift``: how many times the block is doubled for
    its decryption) with the same margin (3/4) as :func:`flood_bits`. A switch is a public
    function of the flooded ciphertext, so it changes nothing in what the key holder can learn
    (data processing).
    """
    qs = c.qs
    drops = 0
    while drops + 1 < len(qs):
        kept, dropped = math.prod(qs[: len(qs) - drops - 1]), math.prod(qs[len(qs) - drops - 1 :])
        if -(-bound // dropped) + degree + 1 >= _headroom(kept, c.t, shift) // 4 * 3:
            break
        drops += 1
    return drops


def he_rounds(m: int, k: int, n: int) -> int:
    """Rounds of :func:`he_cross_terms` for A (m, k) and B (k, n)."""
    return len(_chunks(plan_blocks(m, k, n))) + 2


def _chunks(plan: BlockPlan) -> list[tuple[int, int, int, int]]:
    """The A blocks sent per round, about :data:`_CHUNK_BYTES` of ciphertexts each, as
    ``(lo, hi, l0, l1)``: block rows ``lo .. hi - 1`` and, of those, the blocks ``l0 .. l1 - 1``
    along k. Whole block rows where one fits; a longer row (big k) goes in parts, whose
    products the evaluator sums until the row's last part, so no round holds more."""
    im, ik, _ = plan.counts
    per = max(1, _CHUNK_BYTES // _CT_BYTES)
    if ik <= per:
        step = per // ik
        return [(lo, min(im, lo + step), 0, ik) for lo in range(0, im, step)]
    return [(r, r + 1, l0, min(ik, l0 + per)) for r in range(im) for l0 in range(0, ik, per)]


def _reduce(words: np.ndarray, q: int, bits: int | None = None) -> np.ndarray:
    """``sum_w words[w] 2^(64 w) mod q`` elementwise, for ``q < 2^60``: Horner's rule over
    digits of ``63 - log2 q`` bits, so ``acc * 2^L + digit`` stays below 2^64. ``bits``: how
    many low bits of the number to use (all by default)."""
    nbits = 64 * words.shape[0] if bits is None else bits
    width = 63 - q.bit_length()
    qq = np.uint64(q)
    acc = np.zeros(words.shape[1:], dtype=U64)
    top = -(-nbits // width) * width
    for pos in range(top - width, -1, -width):
        w, sh = divmod(pos, 64)
        digit = words[w] >> np.uint64(sh)
        if sh + width > 64 and w + 1 < words.shape[0]:
            digit |= words[w + 1] << np.uint64(64 - sh)
        take = min(width, nbits - pos)
        digit &= np.uint64((1 << take) - 1)
        acc <<= np.uint64(width)
        acc += digit
        acc %= qq
    return acc


# ---- the encoding ------------------------------------------------------------------------------


def _a_polys(a: np.ndarray, plan: BlockPlan, degree: int) -> np.ndarray:
    """(blocks along m, blocks along k, degree): ``A[r, l]`` at ``X^(r k' n' + l)``."""
    im, ik, _ = plan.counts
    pad = np.zeros((im * plan.mb, ik * plan.kb), dtype=U64)
    pad[: plan.m, : plan.k] = a
    blocks = pad.reshape(im, plan.mb, ik, plan.kb).transpose(0, 2, 1, 3)
    idx = np.arange(plan.mb)[:, None] * (plan.kb * plan.nb) + np.arange(plan.kb)[None, :]
    out = np.zeros((im, ik, degree), dtype=U64)
    out[:, :, idx] = blocks
    return out


def _b_polys(b: np.ndarray, plan: BlockPlan, degree: int) -> np.ndarray:
    """(blocks along k, blocks along n, degree): ``B[l, c]`` at ``X^(c k' + k' - 1 - l)``."""
    _, ik, jn = plan.counts
    pad = np.zeros((ik * plan.kb, jn * plan.nb), dtype=U64)
    pad[: plan.k, : plan.n] = b
    blocks = pad.reshape(ik, plan.kb, jn, plan.nb).transpose(0, 2, 1, 3)
    idx = np.arange(plan.nb)[None, :] * plan.kb + (plan.kb - 1 - np.arange(plan.kb))[:, None]
    out = np.zeros((ik, jn, degree), dtype=U64)
    out[:, :, idx] = blocks
    return out


def _halves(x: np.ndarray, t: int = PLAIN) -> tuple[np.ndarray, np.ndarray]:
    """``x = lo + 2^32 hi (mod 2^64)`` with ``lo, hi`` signed 32-bit, each written as SEAL's
    plaintext coefficient (a negative ``v`` as ``t + v``; SEAL lifts it back to ``v``)."""
    lo = (x & np.uint64(0xFFFFFFFF)).astype(np.int64)
    lo -= (lo >= 1 << 31).astype(np.int64) << 32
    with np.errstate(over="ignore"):
        hi = ((x - lo.astype(U64)) >> np.uint64(_HALF)).astype(np.int64)
    hi -= (hi >= 1 << 31).astype(np.int64) << 32
    return tuple(np.where(h < 0, h + t, h).astype(U64) for h in (lo, hi))  # type: ignore[return-value]


def _join(hi: np.ndarray, lo: np.ndarray, peer: str) -> np.ndarray:
    """``M mod 2^64`` from ``hi = round(M / 2^5) mod 2^59`` and ``lo = M mod 2^59`` (module doc).

    ``lo >> 5`` is ``floor(M / 2^5) mod 2^54``, so ``hi - (lo >> 5)`` is the rounding's carry
    (0 or 1) mod 2^54; anything else means a decryption was not exact.

    Raises:
        HeError: the two decryptions disagree (a block from ``peer`` not made as specified).
    """
    width = PLAIN.bit_length() - 1  # 59
    carry = (hi - (lo >> np.uint64(LOW_BITS))) & np.uint64((1 << (width - LOW_BITS)) - 1)
    if np.any(carry > 1):
        raise HeError(f"HE matrix triple: an evaluated block from {peer!r} does not decrypt consistently")
    top = (hi - carry) & np.uint64((1 << width) - 1)
    return (top << np.uint64(LOW_BITS)) | (lo & np.uint64((1 << LOW_BITS) - 1))


def _wanted(plan: BlockPlan) -> np.ndarray:
    """(m', n'): the exponent holding ``sum_l A[r, l] B[l, c]`` of a block product."""
    kb, nb = plan.kb, plan.nb
    return np.arange(plan.mb)[:, None] * (kb * nb) + np.arange(nb)[None, :] * kb + (kb - 1)


def _blocks_to_matrix(v: np.ndarray, plan: BlockPlan) -> np.ndarray:
    """(im, jn, m', n') -> (m, n)."""
    im, _, jn = plan.counts
    return v.transpose(0, 2, 1, 3).reshape(im * plan.mb, jn * plan.nb)[: plan.m, : plan.n]


# ---- the protocol ------------------------------------------------------------------------------


class _Holder:
    """This holder's keys for the triple, and its B plaintexts (NTT form, data level) while needed."""

    def __init__(self, c: SealContext) -> None:
        seal = c.seal
        self.c = c
        keygen = seal.KeyGenerator(c.ctx)
        self.secret = keygen.secret_key()
        self.public = seal.PublicKey()
        keygen.create_public_key(self.public)
        self.encryptor = seal.Encryptor(c.ctx, self.secret)
        self.decryptor = seal.Decryptor(c.ctx, self.secret)
        self.evaluator = seal.Evaluator(c.ctx)
        self.qcol = np.array(c.qs, dtype=U64)[:, None]
        # B's halves per block (None for a zero one: SEAL refuses a product with it), made for
        # the first chunk this holder evaluates; and the constant 2^32 (NTT form)
        self.b_plain: list[tuple[Any, Any]] | None = None
        self.shift: Any = None

    def plain_ntt(self, files: Files, coeffs: np.ndarray) -> Any:
        seal, c = self.c.seal, self.c
        pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(coeffs))
        self.evaluator.transform_to_ntt_inplace(pt, c.ctx.first_parms_id())
        return pt

    def load_b(self, files: Files, b_polys: np.ndarray) -> None:
        lo, hi = _halves(b_polys.reshape(-1, b_polys.shape[-1]))
        self.b_plain = [
            tuple(self.plain_ntt(files, x) if x.any() else None for x in pair)  # type: ignore[misc]
            for pair in zip(lo, hi, strict=True)
        ]
        self.shift = self.plain_ntt(files, np.array([1 << _HALF], dtype=U64))

    def low(self, x: np.ndarray) -> np.ndarray:
        """``round(Q x_l / 2^64) mod q_i`` (L, N) for the low bits ``x_l`` of ``x`` (N,)."""
        return self.c.low_table[:, (x & np.uint64((1 << LOW_BITS) - 1)).astype(np.intp)]


def _encrypt_rows(me: _Holder, files: Files, a_polys: np.ndarray) -> list[bytes]:
    """This holder's A blocks (rows of blocks, flattened) encrypted under its secret key at the
    scale ``Q / 2^64``, each serialized *seeded* (``c_1`` as the seed of SEAL's PRNG, so half a
    ciphertext's bytes; the peer's loader expands it): SEAL encrypts the high bits (at ``Q / t``)
    and the low bits are added to the saved ``c_0`` (:mod:`._he_seal`)."""
    seal, c = me.c.seal, me.c
    out = []
    for poly in a_polys.reshape(-1, a_polys.shape[-1]):
        pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(poly >> np.uint64(LOW_BITS)))
        saved = files.save(me.encryptor.encrypt_symmetric(pt))  # a Serializable: seeded
        out.append(c.seeded_plus_c0(saved, me.low(poly)))
    return out


def _accumulate(
    me: _Holder,
    files: Files,
    peer: str,
    theirs: list[memoryview],
    unit: tuple[int, int, int, int],
    plan: BlockPlan,
    sums: dict[tuple[int, int], list[Any]],
) -> None:
    """Add the products of the peer's A blocks of ``unit`` (block rows ``lo .. hi - 1``, blocks
    ``l0 .. l1 - 1`` along k) by my B blocks to ``sums[(r, j)]``: per block column ``j`` the
    running ``sum_l Enc(a) b_lo`` and ``sum_l Enc(a) b_hi`` (NTT form; absent while every B
    block so far was zero)."""
    seal, c, ev = me.c.seal, me.c, me.evaluator
    lo, hi, l0, l1 = unit
    _, _, jn = plan.counts
    width = l1 - l0
    if len(theirs) != (hi - lo) * width:  # unpack checked the count; a guard for direct callers
        raise HeError(f"HE matrix triple: {len(theirs)} ciphertexts from {peer!r}, expected {(hi - lo) * width}")
    if me.b_plain is None:
        raise ValueError("HE matrix triple: B's plaintexts are not loaded (internal)")
    cts = []
    for x in theirs:
        ct = load_peer(files, lambda: seal.Ciphertext(c.ctx), c, x, peer, "a ciphertext")
        if ct.size() != 2 or list(ct.parms_id()) != c.parms_id or ct.is_ntt_form():
            raise HeError(f"HE matrix triple: a ciphertext from {peer!r} is not a fresh one at the data level")
        ev.transform_to_ntt_inplace(ct)
        cts.append(ct)
    prod = seal.Ciphertext(c.ctx)
    for r in range(lo, hi):
        for j in range(jn):
            acc = sums.setdefault((r, j), [None, None])
            for half in (0, 1):
                for i in range(width):
                    y = me.b_plain[(l0 + i) * jn + j][half]
                    if y is None:
                        continue
                    x = cts[(r - lo) * width + i]
                    if acc[half] is None:
                        acc[half] = seal.Ciphertext(c.ctx)
                        ev.multiply_plain(x, y, acc[half])
                    else:
                        ev.multiply_plain(x, y, prod)
                        ev.add_inplace(acc[half], prod)


def _finish(
    me: _Holder,
    files: Files,
    enc_pk: Any,
    acc: list[Any],
    pos: np.ndarray,
    prg: Prg,
    flood: Callable[[], np.ndarray],
    drops: int,
) -> tuple[bytes, np.ndarray]:
    """One evaluated block from its sums (:func:`_accumulate`): ``lo + 2^32 hi + Enc_pk(R) +
    (f, 0)``, mod switched ``drops`` times (:func:`reply_drops`), serialized (module doc); and
    the mask ``R`` at ``pos``."""
    seal, c, ev = me.c.seal, me.c, me.evaluator
    if acc[1] is not None:
        ev.multiply_plain_inplace(acc[1], me.shift)
    parts = [x for x in acc if x is not None]
    mask = prg.random_u64(DEGREE)
    # The fresh encryption also re-randomizes c_1 (else c_1 / c_1(Enc(a)) = b).
    pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(mask >> np.uint64(LOW_BITS)))
    out = seal.Ciphertext(c.ctx)
    enc_pk.encrypt(pt, out)
    if parts:
        for x in parts[1:]:
            ev.add_inplace(parts[0], x)
        ev.transform_from_ntt_inplace(parts[0])
        ev.add_inplace(out, parts[0])
    low = me.low(mask) + flood()
    low %= me.qcol
    ev.add_inplace(out, files.load(seal.Ciphertext(c.ctx), c.ctx, c.c0_bytes(low)))
    for _ in range(drops):  # after the flood: fewer bytes, the same view (reply_drops)
        ev.mod_switch_to_next_inplace(out)
    return files.save(out), mask[pos]


def _open(me: _Holder, files: Files, peer: str, data: Any, pos: np.ndarray, level: list[int]) -> np.ndarray:
    """Decrypt one evaluated block (at the level ``level``, a ``parms_id``): its coefficients
    at ``pos`` mod 2^64, from the block and the block doubled :data:`LOW_BITS` times
    (:func:`_join`)."""
    seal, c = me.c.seal, me.c
    ct = load_peer(files, lambda: seal.Ciphertext(c.ctx), c, data, peer, "an evaluated ciphertext")
    if ct.size() != 2 or list(ct.parms_id()) != level or ct.is_ntt_form():
        raise HeError(f"HE matrix triple: an evaluated ciphertext from {peer!r} has the wrong shape or level")
    read = []
    for doubled in (False, True):
        if doubled:
            for _ in range(LOW_BITS):
                me.evaluator.add_inplace(ct, ct)
        pt = seal.Plaintext()
        me.decryptor.decrypt(ct, pt)
        n = pt.coeff_count()
        read.append(np.array([pt.data(int(i)) if i < n else 0 for i in pos.reshape(-1)], dtype=U64))
    return _join(read[0], read[1], peer).reshape(pos.shape)


def he_cross_terms(peer: str, a: np.ndarray, b: np.ndarray, prg: Prg) -> Step[np.ndarray]:
    """This holder's additive share of ``A_me B_peer + A_peer B_me`` (matrix products), Z_2^64.

    Both holders run it at once with their own shares ``a`` (m, k) and ``b`` (k, n) (the shapes
    are public and equal at both). See the module docstring; :func:`he_rounds` rounds.

    Args:
        peer: the other holder.
        a: this holder's share of A, uint64 (m, k).
        b: this holder's share of B, uint64 (k, n).
        prg: private randomness for the masks and the flood (keys come from SEAL's own CSPRNG).

    Returns:
        uint64 (m, n); the two holders' results add up to ``A_0 B_1 + A_1 B_0`` mod 2^64.

    Raises:
        ValueError: the shapes do not chain, or the shape is too big for the parameters.
        HeError: a malformed message from the peer.
        ModuleNotFoundError: TenSEAL is not installed.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"he_cross_terms needs A (m, k) and B (k, n), not {a.shape!r} and {b.shape!r}")
    (m, k), n = a.shape, b.shape[1]
    plan = plan_blocks(m, k, n)
    fbits = flood_bits(plan)
    c = context()
    drops = reply_drops(c, _noise_bound(plan) + (1 << fbits))  # the same at both holders
    level = c.level_parms_id(drops)
    im, ik, jn = plan.counts
    units = _chunks(plan)
    pos = _wanted(plan)
    files = Files()
    me = _Holder(c)

    def payload(u: int) -> dict[str, Any]:  # round u's part: my A blocks (and my key on the first)
        lo, hi, l0, l1 = units[u]
        out: dict[str, Any] = {"pk": files.save(me.public)} if u == 0 else {}
        band = a[lo * plan.mb : hi * plan.mb, l0 * plan.kb : l1 * plan.kb]
        part = dataclasses.replace(plan, m=band.shape[0], k=band.shape[1])
        out["a"] = pack(_encrypt_rows(me, files, _a_polys(band, part, DEGREE)))
        return out

    theirs: dict[int, list[Any]] = {}  # the peer's A blocks by unit, from arrival to evaluation
    peer_enc: list[Any] = []  # an encryptor under the peer's public key
    sums: dict[tuple[int, int], list[Any]] = {}  # (block row, block column) -> running sums
    masks = np.zeros((im, jn) + pos.shape, dtype=U64)  # R at the wanted coefficients (I keep -R)

    def evaluate(v: int) -> tuple[np.ndarray, np.ndarray]:  # the peer's unit v, packed
        unit = units[v]
        plo, phi, _, l1 = unit
        if me.b_plain is None:
            me.load_b(files, _b_polys(b, plan, DEGREE))
        _accumulate(me, files, peer, theirs.pop(v), unit, plan, sums)
        out = []
        if l1 == ik:  # the rows' last blocks along k: their outputs are complete
            flood = _flood_maker(prg, c, fbits)
            for r in range(plo, phi):
                for j in range(jn):
                    data, masks[r, j] = _finish(me, files, peer_enc[0], sums.pop((r, j)), pos, prg, flood, drops)
                    out.append(data)
        if v == len(units) - 1:  # B's plaintexts are done with
            me.b_plain = None
        return pack(out)

    def work(u: int) -> dict[str, Any]:
        """Round u + 1's message, made while round u's travel: the peer's chunk u - 1 (here
        since round u - 1) evaluated, and my chunk u + 1 encrypted."""
        out: dict[str, Any] = {}
        if 1 <= u <= len(units):
            out["c"] = evaluate(u - 1)
        if u + 1 < len(units):
            out.update(payload(u + 1))
        return out

    opened = np.zeros((im, jn) + pos.shape, dtype=U64)

    def receive(u: int, msg: dict[str, Any]) -> None:
        if u < len(units):
            lo, hi, l0, l1 = units[u]
            if u == 0:
                pk = load_peer(files, c.seal.PublicKey, c, msg.get("pk"), peer, "a public key")
                peer_enc.append(c.seal.Encryptor(c.ctx, pk))
            theirs[u] = unpack(msg.get("a"), (hi - lo) * (l1 - l0), peer, "ciphertexts")
        if u >= 2:  # the peer's evaluation of my unit u - 2 (blocks where it ends rows)
            plo, phi, _, l1 = units[u - 2]
            outs = unpack(msg.get("c"), (phi - plo) * jn if l1 == ik else 0, peer, "evaluated blocks")
            for i, data in enumerate(outs):
                r, j = divmod(i, jn)
                opened[plo + r, j] = _open(me, files, peer, data, pos, level)

    try:
        yield from pipelined_rounds(peer, lambda: payload(0), work, len(units) + 1, receive, "HE matrix triple")
    finally:
        files.close()
    with np.errstate(over="ignore"):
        return _blocks_to_matrix(opened, plan) - _blocks_to_matrix(masks, plan)


def _flood_maker(prg: Prg, c: SealContext, fbits: int) -> Callable[[], np.ndarray]:
    """Per call, one flood polynomial ``f`` (uniform in ``[-2^fbits, 2^fbits)``) as residues
    ``(L, N)`` modulo the data primes."""
    nwords = -(-(fbits + 1) // 64)
    shift = [pow(2, fbits, q) for q in c.qs]

    def make() -> np.ndarray:
        words = prg.random_u64((nwords, c.degree))
        out = np.empty((len(c.qs), c.degree), dtype=U64)
        for i, q in enumerate(c.qs):  # f + 2^fbits in [0, 2^(fbits+1)), then minus 2^fbits
            out[i] = (_reduce_near(words, q, fbits + 1) + np.uint64(q - shift[i])) % np.uint64(q)
        return out

    return make


def _reduce_near(words: np.ndarray, q: int, bits: int) -> np.ndarray:
    """:func:`_reduce` for ``q = 2^60 - delta`` with ``delta < 2^30`` (SEAL's 60-bit primes):
    Horner's rule over 30-bit digits with ``2^60 = delta (mod q)``, five times fewer steps."""
    delta = (1 << 60) - q
    if not 0 < delta < 1 << 30:
        return _reduce(words, q, bits)
    d, qq, low = np.uint64(delta), np.uint64(q), np.uint64((1 << 30) - 1)
    acc = np.zeros(words.shape[1:], dtype=U64)
    top = -(-bits // 30) * 30
    for pos in range(top - 30, -1, -30):
        w, sh = divmod(pos, 64)
        digit = words[w] >> np.uint64(sh)
        if sh + 30 > 64 and w + 1 < words.shape[0]:
            digit |= words[w + 1] << np.uint64(64 - sh)
        digit &= np.uint64((1 << min(30, bits - pos)) - 1)
        # acc < q: acc 2^30 = (acc >> 30) 2^60 + (acc & low) 2^30 = (acc >> 30) delta + (acc & low) 2^30
        hi = (acc >> np.uint64(30)) * d  # < 2^60
        acc &= low
        acc <<= np.uint64(30)
        acc += hi  # < 2^61
        acc += digit
        acc %= qq
    return acc


def offloaded_cross_terms(peer: str, a: np.ndarray, b: np.ndarray, key: bytes) -> Step[np.ndarray]:
    """:func:`he_cross_terms` with its private randomness from ``key`` (32 bytes): the form a
    child process runs (``mpcactors._offload``)."""
    return he_cross_terms(peer, a, b, Prg(bytes(key)))


def worth_a_process(m: int, k: int, n: int) -> bool:
    """Whether the modelled CPU of a triple pays for a child process (~0.5 s to start)."""
    return plan_blocks(m, k, n).cost() >= _OFFLOAD_MS
