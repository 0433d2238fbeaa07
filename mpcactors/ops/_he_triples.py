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
* **Z_2^64 through a CRT of plaintext moduli.** The exact integer
  ``v = sum_l A_i[r, l] B_j[l, c] + R[r, c]`` (shares read as integers in ``[0, 2^64)``, so
  ``0 <= v < 2^(128 + L + sigma + 1)``, ``L = ceil(log2 k)``) is computed modulo several 46-bit
  primes ``t_p`` (:data:`PRIMES`) whose product exceeds that bound; the key holder gets
  ``v mod t_p`` for every ``p``, rebuilds ``v mod 2^64`` with Garner's mixed-radix CRT (exact, as
  ``v`` is below the product) and keeps it; the evaluator keeps ``-R mod 2^64``.
* **Masks.** ``R[r, c]`` is one integer uniform in ``[0, 2^(128 + L + sigma))``, the same for
  every prime (reduced mod ``t_p``): it hides ``sum_l A_i B_j`` (below ``2^(128 + L)``) up to
  statistical distance ``2^-sigma`` per entry (``sigma = 40``). Every coefficient that is not a
  wanted inner product is masked with an independent uniform residue mod ``t_p``, since those
  hold partial sums of ``B_j`` too.
* **Keys and circuit privacy.** Holder i makes a fresh BFV key per prime and triple, encrypts
  ``A_i`` under its secret key and sends the ciphertexts with its public key. Holder j computes
  ``sum Enc(a) * b + Enc_pk(mask) + (f, 0)`` and sends it back; i decrypts. What i would
  otherwise learn about ``B_j``, and how it is closed:
  - ``c_1`` of the product is ``c_1(Enc(a)) b(X)`` and i knows ``c_1(Enc(a))``: the *fresh*
    public-key encryption of the mask re-randomizes ``c_1`` (RLWE);
  - the noise is ``e b(X) + ...``: j floods it (Asharov, Jain, Lopez-Alt, Tromer,
    Vaikuntanathan, Wichs, EUROCRYPT 2012, "smudging"; Gentry's thesis, 2009) with ``f``, a
    polynomial whose coefficients are uniform integers in ``[-F, F)``. ``F`` is the next power
    of two above ``2^sigma`` times the worst-case noise bound ``B`` times the number of
    coefficients the whole triple floods, so the statistical distance of everything i decrypts
    from a view independent of ``B_j`` is at most ``2^-sigma`` in all (the union bound:
    ``sum |delta| / F``). ``B`` is ``(eta + 1/2) ||b||_1`` summed over the blocks along ``k``
    (``eta = 21`` bounds SEAL's error coefficients; ``||b||_1 <= k' n' t / 2`` after SEAL's
    centred lift) plus the mask encryption's noise (``< 2^19``). Correctness needs
    ``B + F < Delta / 2``, ``Delta = Q / t``: :func:`flood_bits` checks it, and a shape that
    does not fit raises ``ValueError`` (the caller uses OT).
  j sees only ciphertexts under i's key (RLWE, semantic security). Semi-honest only.
* **Parameters and SEAL objects** (:mod:`._he_seal`): ``N = 8192``, three 60-bit data primes
  and a 38-bit special prime (SEAL's 128-bit classic bound). ``Delta = Q / t ~ 2^134``; a
  1024^3 triple floods with ``F = 2^130``. Ciphertexts and public keys travel as SEAL's own
  serialized bytes, checked by SEAL's loader (a malformed one raises :class:`HeError` naming
  the peer); plaintexts and the flood are written in SEAL's uncompressed format and loaded.
  The A ciphertexts are symmetric encryptions, so they travel *seeded* (SEAL's
  ``Serializable``: ``c_1`` as the 64-byte seed it was expanded from, ~200 KB instead of
  ~400 KB). The returned ones are whole (their ``c_1`` is no longer pseudorandom) but the
  evaluator mod-switches them down one data prime after the flood (:func:`reply_drops`: exact
  decryption in the worst case; a public function of the flooded block, so the same view).

Rounds: the A ciphertexts go in chunks of block rows; in round ``u`` each holder sends chunk
``u`` (with its public key on a prime's first chunk) and the evaluated outputs of the peer's
chunk ``u - 2``. The peer's chunk ``u - 1``, here since round ``u - 1``, is evaluated while
round ``u``'s messages travel, and so is my chunk ``u + 1`` (``Exchange.meanwhile``): on a
slow link the SEAL work hides behind the transfer. ``units + 2`` rounds, ``units`` = chunks
summed over the primes (one per prime for shapes up to ~256^3). Both holders run both
directions at once.

TenSEAL (``pip install tenseal``, the ``he`` extra) is an optional dependency imported on first
use. Its calls hold the GIL, so a node runs triples worth it (:func:`worth_a_process`) in a child
process (``mpcactors._offload``, which runs :func:`offloaded_cross_terms`); tests that drive the
step directly compute in process.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._checks import U64
from ._comm import Ahead, Exchange, Step
from ._he_seal import (
    DATA_BITS,
    DEGREE,
    Files,
    HeError,
    SealContext,
    available,
    context,
    load_peer,
    pack,
    unpack,
)
from ._prg import Prg

__all__ = [
    "DEGREE",
    "PRIMES",
    "SIGMA",
    "BlockPlan",
    "HeError",
    "available",
    "flood_bits",
    "he_cross_terms",
    "he_rounds",
    "offloaded_cross_terms",
    "plan_blocks",
    "primes_for",
    "reply_drops",
    "worth_a_process",
]

SIGMA = 40  # statistical security of the integer masks and of the noise flooding
_ETA = 21  # bound on SEAL's error coefficients (centred binomial, 21)
_MASK_ENC_NOISE = 1 << 19  # bound on a public-key encryption's noise at N = 8192
# 46-bit primes (the largest below 2^46): coprime CRT moduli, each coprime to the 60/38-bit q_i
PRIMES = (
    70368744177643,
    70368744177607,
    70368744177601,
    70368744177587,
    70368744177497,
    70368744177467,
)
_MASK_WORDS = 3  # 64-bit words of an integer mask (128 + L + SIGMA <= 192)
_CHUNK_BYTES = 96 << 20  # A ciphertexts per chunk, counted loaded (~400 KB each; ~200 KB seeded on the wire)
_CT_BYTES = 2 * 3 * DEGREE * 8  # a ciphertext's coefficients at the data level
_PT_BYTES = 3 * DEGREE * 8  # a B plaintext in NTT form at the data level
_B_BUDGET = 768 << 20  # bytes of B plaintexts a plan may hold (one prime's at a time)
# Measured costs (ms, one core, this module's calls): a ciphertext x plaintext product with its
# add; an encrypted A block; a B block plaintext (write, load, NTT); a returned block (mask
# encryption, flood, save, load, decryption, reading the wanted coefficients).
_COST_MUL, _COST_A, _COST_B, _COST_OUT = 0.23, 3.2, 0.6, 6.5
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
        """Modelled milliseconds per prime and direction."""
        im, ik, jn = self.counts
        return (
            _COST_MUL * im * ik * jn + _COST_A * im * ik + _COST_B * ik * jn + _COST_OUT * im * jn
        )


@functools.lru_cache(maxsize=256)  # asked per matmul op (route, rounds, triple): a search over block sizes
def plan_blocks(m: int, k: int, n: int, degree: int = DEGREE) -> BlockPlan:
    """The block shape of least modelled cost with ``m' k' n' + k' - 1 <= degree`` whose B
    plaintexts (held in NTT form for one prime at a time) fit :data:`_B_BUDGET` bytes, or the
    one with the fewest B blocks if none does."""

    def sizes(d: int) -> set[int]:  # every ceil(d / c): the block sizes worth trying
        return {-(-d // c) for c in range(1, d + 1) if c == 1 or -(-d // c) != -(-d // (c - 1))}

    best: BlockPlan | None = None
    leanest: BlockPlan | None = None
    for kb in sorted(sizes(k)):
        if kb > degree:
            break
        for nb in sorted(sizes(n)):
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


def primes_for(k: int) -> tuple[int, ...]:
    """The fewest :data:`PRIMES` whose product exceeds ``2^(128 + ceil(log2 k) + SIGMA + 1)``."""
    bits = 128 + (k - 1).bit_length() + SIGMA
    if bits > 64 * _MASK_WORDS:
        raise ValueError(f"inner dimension k={k} needs masks of more than {64 * _MASK_WORDS} bits")
    bound = 1 << (bits + 1)
    prod = 1
    for i, t in enumerate(PRIMES):
        prod *= t
        if prod > bound:
            return PRIMES[: i + 1]
    raise ValueError(f"inner dimension k={k} needs more than {len(PRIMES)} CRT primes")


def _noise_bound(plan: BlockPlan, primes: Sequence[int]) -> int:
    """``B``: the worst-case noise of an evaluated block before the flood (module doc)."""
    return (2 * _ETA + 1) * plan.k * plan.nb * (max(primes) // 2) // 2 + _MASK_ENC_NOISE


def flood_bits(plan: BlockPlan, primes: Sequence[int], degree: int = DEGREE) -> int:
    """``log2 F`` of the flood for this triple (module doc), or ValueError where ``B + F``
    would not stay below ``Delta / 2`` (the shape is too big for these parameters)."""
    im, _, jn = plan.counts
    t = max(primes)
    noise = _noise_bound(plan, primes)
    coefficients = len(primes) * im * jn * degree
    bits = (noise * coefficients).bit_length() + SIGMA
    delta = (1 << DATA_BITS) // t  # a lower bound: the data primes are just below 2^60
    if noise + (1 << bits) >= delta // 2 * 3 // 4:
        raise ValueError(
            f"an HE matrix triple of {plan.m}x{plan.k} @ {plan.k}x{plan.n} needs a flood of 2^{bits}, "
            f"more than the ciphertext modulus leaves (Delta ~ 2^{delta.bit_length() - 1})"
        )
    return bits


def reply_drops(c: SealContext, bound: int, degree: int = DEGREE) -> int:
    """How many data primes the evaluator may drop (mod switches) from a flooded block whose
    noise is below ``bound``, keeping its decryption exact.

    BFV's mod switch from ``Q`` to ``Q' = Q / q_last`` divides the noise by ``q_last`` and adds
    rounding: ``|e0 + e1 s| <= (1 + ||s||_1) / 2 <= (1 + N) / 2`` for SEAL's ternary secret;
    decryption at ``Q'`` is exact while the noise stays below ``Q' / (2 t)``. After ``d``
    switches the noise is below ``bound / (q_L ... q_(L-d+1)) + N + 1``; this keeps the same
    safety margin (3/4) as :func:`flood_bits`. A switch is a public function of the flooded
    ciphertext, so it changes nothing in what the key holder can learn (data processing).
    """
    qs = c.qs
    drops = 0
    while drops + 1 < len(qs):
        kept, dropped = math.prod(qs[: len(qs) - drops - 1]), math.prod(qs[len(qs) - drops - 1 :])
        if -(-bound // dropped) + degree + 1 >= kept // c.t // 2 * 3 // 4:
            break
        drops += 1
    return drops


def he_rounds(m: int, k: int, n: int) -> int:
    """Rounds of :func:`he_cross_terms` for A (m, k) and B (k, n)."""
    plan = plan_blocks(m, k, n)
    return sum(len(_chunks(plan)) for _ in primes_for(k)) + 2


def _chunks(plan: BlockPlan) -> list[tuple[int, int]]:
    """Block-row ranges of A sent per round (about :data:`_CHUNK_BYTES` of ciphertexts each)."""
    im, ik, _ = plan.counts
    step = max(1, _CHUNK_BYTES // (ik * _CT_BYTES))
    return [(lo, min(im, lo + step)) for lo in range(0, im, step)]


# ---- integers mod t ----------------------------------------------------------------------------


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


def _mulmod(x: np.ndarray, c: int, q: int) -> np.ndarray:
    """``x c mod q`` for ``x < q < 2^47`` and a constant ``c``: Horner over ``c``'s digits."""
    width = 63 - q.bit_length()
    qq = np.uint64(q)
    c %= q
    acc = np.zeros_like(x)
    for pos in range(-(-c.bit_length() // width) * width - width, -1, -width):
        acc <<= np.uint64(width)
        acc += x * np.uint64((c >> pos) & ((1 << width) - 1))
        acc %= qq
    return acc


def _garner(residues: Sequence[np.ndarray], primes: Sequence[int]) -> np.ndarray:
    """``v mod 2^64`` from the residues ``v mod t_p``, for ``0 <= v < prod t_p``.

    Garner's mixed radix: ``v = d_0 + d_1 t_0 + d_2 t_0 t_1 + ...`` with ``0 <= d_p < t_p``,
    each digit from the residues mod ``t_p`` alone; the sum is then taken mod 2^64 (words wrap).
    """
    digits: list[np.ndarray] = []
    for p, t in enumerate(primes):
        tt = np.uint64(t)
        x = np.zeros_like(residues[p])
        radix = 1
        for j, d in enumerate(digits):  # x = (d_0 + d_1 t_0 + ... + d_(p-1) t_0..t_(p-2)) mod t
            x = (x + _mulmod(d % tt, radix, t)) % tt
            radix *= primes[j]
        digits.append(_mulmod((residues[p] + tt - x) % tt, pow(radix, -1, t), t))
    out = np.zeros_like(residues[0])
    radix = 1
    with np.errstate(over="ignore"):
        for j, d in enumerate(digits):
            out += d * np.uint64(radix % (1 << 64))
            radix *= primes[j]
    return out


def _uniform_mod(prg: Prg, shape: tuple[int, ...], t: int) -> np.ndarray:
    """Uniform residues mod ``t`` (rejection sampling of ``t.bit_length()``-bit draws)."""
    mask = np.uint64((1 << t.bit_length()) - 1)
    out = prg.random_u64(shape) & mask
    flat = out.reshape(-1)
    bad = np.flatnonzero(flat >= np.uint64(t))
    while bad.size:
        flat[bad] = prg.random_u64(bad.size) & mask
        bad = bad[flat[bad] >= np.uint64(t)]
    return out


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


def _rows(plan: BlockPlan, lo: int, hi: int) -> BlockPlan:
    """The plan of A's block rows ``lo .. hi - 1`` alone (their m)."""
    return dataclasses.replace(plan, m=min(plan.m, hi * plan.mb) - lo * plan.mb)


def _wanted(plan: BlockPlan) -> np.ndarray:
    """(m', n'): the exponent holding ``sum_l A[r, l] B[l, c]`` of a block product."""
    kb, nb = plan.kb, plan.nb
    return np.arange(plan.mb)[:, None] * (kb * nb) + np.arange(nb)[None, :] * kb + (kb - 1)


def _blocks_to_matrix(v: np.ndarray, plan: BlockPlan) -> np.ndarray:
    """(im, jn, m', n') -> (m, n)."""
    im, _, jn = plan.counts
    return v.transpose(0, 2, 1, 3).reshape(im * plan.mb, jn * plan.nb)[: plan.m, : plan.n]


# ---- the protocol ------------------------------------------------------------------------------


class _Prime:
    """One prime's keys, and this holder's B plaintexts (NTT form, data level) while needed."""

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
        self.b_plain: list[Any] | None = None  # made for the first chunk it evaluates

    def load_b(self, files: Files, b_res: np.ndarray) -> None:
        """B's blocks as plaintexts; None for a zero block (SEAL refuses a product with it)."""
        seal, c = self.c.seal, self.c
        self.b_plain = []
        for poly in b_res.reshape(-1, b_res.shape[-1]):
            if not poly.any():
                self.b_plain.append(None)
                continue
            pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(poly))
            self.evaluator.transform_to_ntt_inplace(pt, c.ctx.first_parms_id())
            self.b_plain.append(pt)


def _encrypt_rows(pr: _Prime, files: Files, a_res: np.ndarray) -> list[bytes]:
    """This holder's A blocks (rows of blocks, flattened) encrypted under its secret key, each
    serialized *seeded*: SEAL writes ``c_1`` (uniform) as the seed of its PRNG, so a block is half
    a ciphertext's bytes; the peer's loader expands the seed."""
    seal, c = pr.c.seal, pr.c
    out = []
    for poly in a_res.reshape(-1, a_res.shape[-1]):
        pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(poly))
        out.append(files.save(pr.encryptor.encrypt_symmetric(pt)))  # a Serializable: seeded
    return out


def _evaluate(
    pr: _Prime,
    files: Files,
    peer: str,
    peer_pk: Any,
    theirs: list[memoryview],
    rows: int,
    plan: BlockPlan,
    mask: np.ndarray,
    flood: Callable[[], np.ndarray],
    drops: int,
) -> list[bytes]:
    """For each of ``rows`` block rows of the peer's A: per block column ``sum_l Enc(a) b +
    Enc_pk(mask) + (f, 0)``, mod switched ``drops`` times (:func:`reply_drops`), serialized
    (module doc)."""
    seal, c, ev = pr.c.seal, pr.c, pr.evaluator
    _, ik, jn = plan.counts
    if len(theirs) != rows * ik:  # unpack checked the count; a guard for direct callers
        raise HeError(f"HE matrix triple: {len(theirs)} ciphertexts from {peer!r}, expected {rows * ik}")
    cts = []
    for x in theirs:
        ct = load_peer(files, lambda: seal.Ciphertext(c.ctx), c, x, peer, "a ciphertext")
        if ct.size() != 2 or list(ct.parms_id()) != c.parms_id or ct.is_ntt_form():
            raise HeError(f"HE matrix triple: a ciphertext from {peer!r} is not a fresh one at the data level")
        ev.transform_to_ntt_inplace(ct)
        cts.append(ct)
    enc_pk = seal.Encryptor(c.ctx, peer_pk)
    b_plain = pr.b_plain
    if b_plain is None:
        raise ValueError("HE matrix triple: B's plaintexts are not loaded (internal)")
    out = []
    prod = seal.Ciphertext(c.ctx)
    for r in range(rows):
        for j in range(jn):
            # The fresh encryption also re-randomizes c_1 (else c_1 / c_1(Enc(a)) = b).
            pt = files.load(seal.Plaintext(), c.ctx, c.plaintext_bytes(mask[r * jn + j]))
            acc = seal.Ciphertext(c.ctx)
            enc_pk.encrypt(pt, acc)
            terms = [(cts[r * ik + l], b_plain[l * jn + j]) for l in range(ik)]
            terms = [(x, y) for x, y in terms if y is not None]
            if terms:
                total = seal.Ciphertext(c.ctx)
                ev.multiply_plain(*terms[0], total)
                for x, y in terms[1:]:
                    ev.multiply_plain(x, y, prod)
                    ev.add_inplace(total, prod)
                ev.transform_from_ntt_inplace(total)
                ev.add_inplace(acc, total)
            ev.add_inplace(acc, files.load(seal.Ciphertext(c.ctx), c.ctx, c.flood_bytes(flood())))
            for _ in range(drops):  # after the flood: fewer bytes, the same view (reply_drops)
                ev.mod_switch_to_next_inplace(acc)
            out.append(files.save(acc))
    return out


def _open(pr: _Prime, files: Files, peer: str, data: Any, pos: np.ndarray, level: list[int]) -> np.ndarray:
    """Decrypt one evaluated block (at the level ``level``, a ``parms_id``): its coefficients
    at ``pos`` (mod t)."""
    seal, c = pr.c.seal, pr.c
    ct = load_peer(files, lambda: seal.Ciphertext(c.ctx), c, data, peer, "an evaluated ciphertext")
    if ct.size() != 2 or list(ct.parms_id()) != level:
        raise HeError(f"HE matrix triple: an evaluated ciphertext from {peer!r} has the wrong shape or level")
    pt = seal.Plaintext()
    pr.decryptor.decrypt(ct, pt)
    n = pt.coeff_count()
    return np.array([pt.data(int(i)) if i < n else 0 for i in pos.reshape(-1)], dtype=U64).reshape(pos.shape)


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
    primes = primes_for(k)
    plan = plan_blocks(m, k, n)
    fbits = flood_bits(plan, primes)
    bound = _noise_bound(plan, primes) + (1 << fbits)  # an evaluated block's noise, flood included
    drops = [reply_drops(context(t), bound) for t in primes]  # the same at both holders
    levels = [context(t).level_parms_id(d) for t, d in zip(primes, drops, strict=True)]
    im, ik, jn = plan.counts
    chunks = _chunks(plan)
    bits = 128 + (k - 1).bit_length() + SIGMA
    words = prg.random_u64((_MASK_WORDS, m, n))  # R, uniform in [0, 2^bits)
    words[_MASK_WORDS - 1] &= np.uint64((1 << (bits - 64 * (_MASK_WORDS - 1))) - 1)
    pos = _wanted(plan)
    r_idx, c_idx = np.arange(m)[:, None], np.arange(n)[None, :]
    where = ((r_idx // plan.mb) * jn + c_idx // plan.nb) * DEGREE + pos[r_idx % plan.mb, c_idx % plan.nb]
    units = [(p, lo, hi) for p in range(len(primes)) for lo, hi in chunks]
    files = Files()
    state: dict[int, _Prime] = {}  # a prime's keys, from its first chunk until its last is opened

    def payload(u: int) -> dict[str, Any]:  # unit u's message part: my A chunk (and my key)
        p, lo, hi = units[u]
        out: dict[str, Any] = {}
        if p not in state:
            state[p] = _Prime(context(primes[p]))
            out["pk"] = files.save(state[p].public)
        a_res = _a_polys(a[lo * plan.mb : hi * plan.mb] % np.uint64(primes[p]), _rows(plan, lo, hi), DEGREE)
        out["a"] = pack(_encrypt_rows(state[p], files, a_res))
        return out

    theirs: dict[int, list[Any]] = {}  # the peer's chunks by unit, from arrival to evaluation
    pks: dict[int, Any] = {}

    def evaluate(v: int) -> tuple[np.ndarray, np.ndarray]:  # the peer's chunk v, packed
        pp, plo, phi = units[v]
        t = primes[pp]
        pr = state[pp]
        if pr.b_plain is None:
            pr.load_b(files, _b_polys(b % np.uint64(t), plan, DEGREE))
        mask = _uniform_mod(prg, ((phi - plo) * jn, DEGREE), t)
        rows = np.arange(plo * plan.mb, min(m, phi * plan.mb))
        sub = where[rows] - plo * jn * DEGREE
        mask.reshape(-1)[sub] = _reduce(words[:, rows], t)
        flood = _flood_maker(prg, context(t), fbits)
        out = _evaluate(pr, files, peer, pks[pp], theirs.pop(v), phi - plo, plan, mask, flood, drops[pp])
        if phi == im:  # the prime's last chunk: its B plaintexts are done with
            pr.b_plain = None
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

    try:
        opened = [np.zeros((im, jn) + pos.shape, dtype=U64) for _ in primes]
        ahead = Ahead(lambda: payload(0))
        last = len(units) + 1
        for u in range(last + 1):
            send: dict[str, Any] = ahead.result()
            ahead = Ahead(functools.partial(work, u) if u < last else dict)
            got = yield Exchange(send={peer: send}, recv=frozenset({peer}), meanwhile=ahead if u < last else None)
            msg = got[peer]
            if not isinstance(msg, dict):
                raise HeError(f"HE matrix triple: round {u} message from {peer!r} is {type(msg).__name__}")
            if u < len(units):
                p, lo, hi = units[u]
                if lo == 0:
                    c = context(primes[p])
                    pks[p] = load_peer(files, c.seal.PublicKey, c, msg.get("pk"), peer, "a public key")
                theirs[u] = unpack(msg.get("a"), (hi - lo) * ik, peer, "ciphertexts")
            if u >= 2:  # the peer's evaluation of my chunk u - 2
                pp, plo, phi = units[u - 2]
                outs = unpack(msg.get("c"), (phi - plo) * jn, peer, "evaluated blocks")
                for i, data in enumerate(outs):
                    r, j = divmod(i, jn)
                    opened[pp][plo + r, j] = _open(state[pp], files, peer, data, pos, levels[pp])
                if phi == im:  # every output of the prime is open: its keys are done with
                    del state[pp]
        residues = [_blocks_to_matrix(o, plan) for o in opened]
    finally:
        files.close()
    with np.errstate(over="ignore"):
        return _garner(residues, primes) - words[0]


def _flood_maker(prg: Prg, c: SealContext, fbits: int) -> Callable[[], np.ndarray]:
    """Per call, one flood polynomial ``f`` (uniform in ``[-2^fbits, 2^fbits)``) as residues
    ``(L, N)`` modulo the data primes."""
    nwords = -(-(fbits + 1) // 64)
    shift = [pow(2, fbits, q) for q in c.qs]

    def make() -> np.ndarray:
        words = prg.random_u64((nwords, DEGREE))
        out = np.empty((len(c.qs), DEGREE), dtype=U64)
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
    return len(primes_for(k)) * plan_blocks(m, k, n).cost() >= _OFFLOAD_MS
