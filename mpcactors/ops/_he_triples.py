"""Matrix Beaver-triple cross terms by lattice HE (BFV in OpenFHE): two holders, no dealer.

Theory of operation
-------------------
A matrix triple ``C = A B`` over Z_2^64 with ``A = A_0 + A_1``, ``B = B_0 + B_1`` needs the cross
terms ``A_i B_j`` (i != j) shared between the holders; ``A_i B_i`` is local. This module makes
one cross term per direction by homomorphic encryption instead of OT, so the traffic grows
with the matrices' entries (``m k + m n``), not with ``m k n`` as in Gilboa's OT product.

* **Coefficient encoding** (Huang, Lu, Hong, Chen, Hu, Wang, Ren, "Cheetah: Lean and Fast
  Secure Two-Party Deep Neural Network Inference", USENIX Security 2022, section 3.1; Rathee
  et al.'s earlier "CrypTFlow2" uses slots instead). Cut ``A`` into ``m' x k'`` blocks and
  ``B`` into ``k' x n'`` blocks with ``m' k' n' + k' - 1 <= N`` (the ring degree). Put

      a(X) = sum_{r,l} A[r, l] X^(r k' n' + l)        b(X) = sum_{l,c} B[l, c] X^(c k' + k' - 1 - l)

  then the coefficient of ``X^(r k' n' + c k' + k' - 1)`` in ``a(X) b(X)`` is
  ``sum_l A[r, l] B[l, c]``: every other product lands on another exponent (the offsets
  ``l - l'`` are below ``k'`` in size) and nothing wraps around ``X^N = -1``. One ciphertext
  times plaintext product gives a whole ``m' x n'`` block of inner products; the blocks along
  ``k`` are summed in the ciphertext.
* **Z_2^64 through a CRT of plaintext primes.** OpenFHE's coefficient encoding takes plaintext
  moduli up to 32 bits, so the exact integer ``v = sum_l A_i[r, l] B_j[l, c] + R[r, c]`` (shares
  read as integers in ``[0, 2^64)``, so ``0 <= v < 2^(128 + L + sigma + 1)``, ``L = ceil(log2
  k)``) is computed modulo several 32-bit primes ``t_p`` (each ``= 1 mod 2^16``, so they batch
  too) whose product exceeds that bound; the key holder gets ``v mod t_p`` for every ``p``,
  rebuilds ``v mod 2^64`` with Garner's mixed-radix CRT (exact, as ``v`` is below the product)
  and keeps it; the evaluator keeps ``-R mod 2^64``.
* **Masks.** ``R[r, c]`` is one integer uniform in ``[0, 2^(128 + L + sigma))``, the same for
  every prime (reduced mod ``t_p``): it hides ``sum_l A_i B_j`` (below ``2^(128 + L)``) up to
  statistical distance ``2^-sigma`` per entry (``sigma = 40``; the distance adds up over the
  ``m n`` entries). Every coefficient that is not a wanted inner product is masked with an
  independent uniform residue mod ``t_p`` (from 128 random bits: bias ``2^-96``), since those
  hold partial sums of ``B_j`` too.
* **Keys and circuit privacy.** Per prime the holders make one joint BFV key (OpenFHE
  threshold FHE: the leader's ``KeyGen``, the follower's ``MultipartyKeyGen``; secret
  ``s = s_L + s_F``), so a ciphertext under it opens only with both partial decryptions. Holder
  i encrypts ``A_i``; holder j computes ``sum Enc(a) * b + Enc(mask)`` and sends it with its own
  partial decryption; i adds its partial decryption and fuses. The evaluator's result would
  leak ``B_j`` two ways, both closed:
  - its ``c_1`` is ``c_1(Enc(a)) b(X)`` and i knows ``c_1(Enc(a))``: adding the *fresh* public-
    key encryption of the mask re-randomizes ``c_1`` (RLWE);
  - its noise is ``e b(X) + ...``: j's partial decryption runs in OpenFHE's
    ``NOISE_FLOODING_MULTIPARTY`` mode, which for BFV adds two 60-bit towers to ``Q`` and
    floods ``c_1 s_j`` with a ring element uniform modulo ``Q_l / q_0`` (OpenFHE
    docs/static_docs/Threshold_FHE.md; Li and Micciancio, EUROCRYPT 2021, on why this is
    needed). Every ciphertext is compressed (modulus switched) to 3 of Q's 4 towers before it
    leaves, the fewest that mode accepts: the flood is uniform below ``Q_3 / q_0 ~ 2^120``, the
    product noise after the switch is at most about ``2^10 ||b||_1 (k / k')`` < 2^60 (a fresh,
    switched ciphertext's noise times the plaintext's norm, ``||b||_1 <= k' n' 2^31`` for a
    block, ``N 2^31`` for slots, summed over the blocks), and ``Delta = Q_3 / t ~ 2^148``. So i sees ``Delta v + e + flood`` and ``e`` is
    hidden up to about ``2^-60`` (heuristic noise bound, not a proof).
  Holder j sees only ciphertexts under the joint key (semantic security, RLWE), and i's
  partial decryptions only of ciphertexts j computed. Semi-honest only; 128-bit classic
  (``HEStd_128_classic``: OpenFHE picks ``N = 16384``, ``log2 Q = 240``).

Rounds: :func:`he_keys` makes the joint keys once (the leader's public keys, then the
follower's joint keys: two rounds, reusable for every triple of a job); then per prime two rounds
in which both holders send at once (their encrypted shares, then the evaluated ciphertexts with
a partial decryption): ``2 P`` rounds, ``P = 6`` primes for ``k <= 2^22``. One prime at a time
bounds the memory (a ciphertext is about 1 MB).

OpenFHE is an optional dependency imported on first use; its Python wheel (1.6.1) ships a
CPython 3.10 extension only. Its OpenMP pool spins: set ``OMP_NUM_THREADS`` where the process
starts (the library reads no environment).

Status: an experiment, measured and not wired into semi2k (``OtSource.matrix_triple`` keeps OT).
On this host (bench/RESULTS.md, 2026-12-03) a 256 x 256 x 256 matrix triple took 127 s of CPU
and 642 MB per holder against SPU CHEETAH's 7.7 s in the same run, and about the OT triple's
time (212 s, 8,692 MB per holder); and the wheel does not import under the project's Python
3.11, so CI runs only this module's plain-integer tests (encoding, CRT, block plans).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._checks import U64
from ._comm import Exchange, Step
from ._prg import Prg

__all__ = [
    "PRIMES",
    "SIGMA",
    "BlockPlan",
    "HeKeys",
    "he_cross_products",
    "he_cross_terms",
    "he_keys",
    "plan_blocks",
    "primes_for",
]

SIGMA = 40  # statistical security of the integer masks, per entry
# 32-bit primes = 1 mod 2^16 (largest below 2^32): coprime CRT moduli, NTT-friendly for N <= 2^15.
PRIMES = (
    4293918721,
    4292804609,
    4292149249,
    4292018177,
    4291952641,
    4289462273,
    4288806913,
    4288086017,
)
_MASK_WORDS = 3  # 64-bit words of an integer mask (128 + L + SIGMA <= 192)
# RNS towers kept after encryption (of 4): the fewest OpenFHE's flooded partial decryption
# accepts. Flood ~ Q_3 / q_0 = 2^120 against product noise below ~2^60, Delta = Q_3 / t ~ 2^148.
_TOWERS = 3
# Measured costs at N = 16384, log2 Q = 240, one thread (ms): a ciphertext x plaintext product
# with its add; an encrypted A block (encrypt, serialize, deserialize); a B block plaintext
# (encode, NTT); a returned block (mask encryption, both partial decryptions, (de)serialize).
_COST_MUL, _COST_A, _COST_B, _COST_OUT = 1.2, 25.0, 8.0, 52.0


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


def plan_blocks(m: int, k: int, n: int, degree: int) -> BlockPlan:
    """The block shape of least modelled cost with ``m' k' n' + k' - 1 <= degree``."""

    def sizes(d: int) -> set[int]:  # every ceil(d / c): the block sizes worth trying
        return {-(-d // c) for c in range(1, d + 1) if c == 1 or -(-d // c) != -(-d // (c - 1))}

    best: BlockPlan | None = None
    for kb in sorted(sizes(k)):
        if kb > degree:
            break
        for nb in sorted(sizes(n)):
            mb = min(m, (degree - kb + 1) // (kb * nb))
            if mb < 1:
                break
            plan = BlockPlan(mb, kb, nb, m, k, n)
            if best is None or plan.cost() < best.cost():
                best = plan
    if best is None:
        raise ValueError(f"no block shape fits ring degree {degree} for k={k}")
    return best


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


def _residue(words: np.ndarray, t: int) -> np.ndarray:
    """``sum_w words[w] 2^(64 w) mod t`` elementwise (t < 2^32: a product of residues fits a word)."""
    tt = np.uint64(t)
    acc = np.zeros(words.shape[1:], dtype=U64)
    for w in range(words.shape[0]):
        acc = (acc + (words[w] % tt) * np.uint64(pow(2, 64 * w, t)) % tt) % tt
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
            x = (x + d * np.uint64(radix % t) % tt) % tt
            radix *= primes[j]
        inv = np.uint64(pow(radix, -1, t))
        digits.append((residues[p] + tt - x) % tt * inv % tt)
    out = np.zeros_like(residues[0])
    radix = 1
    with np.errstate(over="ignore"):
        for j, d in enumerate(digits):
            out += d * np.uint64(radix % (1 << 64))
            radix *= primes[j]
    return out


def _openfhe() -> Any:
    """The optional OpenFHE module, imported on first use (no work at import time)."""
    import openfhe  # type: ignore[import-not-found]  # optional dependency

    return openfhe


def _context(fhe: Any, t: int) -> Any:
    """A BFV context with plaintext modulus ``t``, 128-bit classic, threshold noise flooding."""
    params = fhe.CCParamsBFVRNS()
    params.SetPlaintextModulus(t)
    params.SetMultiplicativeDepth(1)
    params.SetSecurityLevel(fhe.SecurityLevel.HEStd_128_classic)
    params.SetMultipartyMode(fhe.MultipartyMode.NOISE_FLOODING_MULTIPARTY)
    cc = fhe.GenCryptoContext(params)
    for feature in (
        fhe.PKESchemeFeature.PKE,
        fhe.PKESchemeFeature.LEVELEDSHE,
        fhe.PKESchemeFeature.MULTIPARTY,
    ):
        cc.Enable(feature)
    return cc


def _centered(x: np.ndarray, t: int) -> np.ndarray:
    """Residues in ``[0, t)`` as the signed int64 values OpenFHE's encodings take."""
    y = np.ascontiguousarray(x, dtype=np.int64)
    y[y > t // 2] -= t
    return y


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


def _wanted(plan: BlockPlan) -> np.ndarray:
    """(m', n'): the exponent holding ``sum_l A[r, l] B[l, c]`` of a block product."""
    kb, nb = plan.kb, plan.nb
    return np.arange(plan.mb)[:, None] * (kb * nb) + np.arange(nb)[None, :] * kb + (kb - 1)


def _blocks_to_matrix(v: np.ndarray, plan: BlockPlan) -> np.ndarray:
    """(im, jn, m', n') -> (m, n)."""
    im, _, jn = plan.counts
    return v.transpose(0, 2, 1, 3).reshape(im * plan.mb, jn * plan.nb)[: plan.m, : plan.n]


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """How one kind of product maps onto plaintexts: this holder's encrypted polynomials, the
    peer-facing plaintexts, which products sum into which output, where the results sit."""

    packed: bool  # slots (elementwise, batched) or coefficients (matrix blocks)
    mine: Callable[[np.ndarray], np.ndarray]  # residues of my a -> (ciphertexts, <= degree)
    plain: Callable[[np.ndarray], np.ndarray]  # residues of my b -> (plaintexts, <= degree)
    terms: list[list[tuple[int, int]]]  # per output: (peer ciphertext, my plaintext) pairs
    where: np.ndarray  # result shape: flat index into (outputs, degree)


def _matmul_layout(plan: BlockPlan, degree: int) -> _Layout:
    im, ik, jn = plan.counts
    pos = _wanted(plan)
    r, c = np.arange(plan.m)[:, None], np.arange(plan.n)[None, :]
    where = ((r // plan.mb) * jn + c // plan.nb) * degree + pos[r % plan.mb, c % plan.nb]
    a_len = (plan.mb - 1) * plan.kb * plan.nb + plan.kb  # exponents in use
    b_len = plan.kb * plan.nb
    return _Layout(
        packed=False,
        # Trailing zeros left out: OpenFHE pads, and a short list encodes faster (14 -> 9 ms).
        mine=lambda a: _a_polys(a, plan, degree).reshape(im * ik, degree)[:, :a_len],
        plain=lambda b: _b_polys(b, plan, degree).reshape(ik * jn, degree)[:, :b_len],
        terms=[[(i * ik + l, l * jn + j) for l in range(ik)] for i in range(im) for j in range(jn)],
        where=where,
    )


def _elementwise_layout(shape: tuple[int, ...], degree: int) -> _Layout:
    size = math.prod(shape)
    count = -(-size // degree)

    def slots(x: np.ndarray) -> np.ndarray:
        out = np.zeros(count * degree, dtype=U64)
        out[:size] = x.reshape(-1)
        return out.reshape(count, degree)

    return _Layout(
        packed=True,
        mine=slots,
        plain=slots,
        terms=[[(o, o)] for o in range(count)],
        where=np.arange(size).reshape(shape),
    )


def _encode(cc: Any, layout: _Layout, x: np.ndarray, t: int, level: int = 0) -> Any:
    """A plaintext for a ciphertext with ``level`` towers dropped (numpy: OpenFHE's fast path)."""
    values = _centered(x, t)
    make = cc.MakePackedPlaintext if layout.packed else cc.MakeCoefPackedPlaintext
    return make(values, 1, level)


def _evaluate(
    fhe: Any,
    cc: Any,
    keys: tuple[Any, Any],
    theirs: list[bytes],
    plain: np.ndarray,
    mask: np.ndarray,
    t: int,
    layout: _Layout,
) -> tuple[list[bytes], list[bytes]]:
    """Per output ``sum Enc(a) b + Enc(mask)`` and this holder's (flooded) partial decryption
    of it, both serialized."""
    joint, secret = keys
    cts = [fhe.DeserializeCiphertextString(x, fhe.BINARY) for x in theirs]
    dropped = round(math.log2(cc.GetModulus()) / 60) - _TOWERS  # of Q's 60-bit towers
    pts = [_encode(cc, layout, row, t, dropped) for row in plain]
    out: list[bytes] = []
    shares: list[bytes] = []
    for o, pairs in enumerate(layout.terms):
        acc = cc.EvalMult(cts[pairs[0][0]], pts[pairs[0][1]])
        for ci, pi in pairs[1:]:
            acc = cc.EvalAdd(acc, cc.EvalMult(cts[ci], pts[pi]))
        # The fresh encryption also re-randomizes c_1 (else c_1 / c_1(Enc(a)) = b).
        acc = cc.EvalAdd(
            acc, cc.Compress(cc.Encrypt(joint, _encode(cc, layout, mask[o], t)), _TOWERS)
        )
        out.append(fhe.Serialize(acc, fhe.BINARY))
        shares.append(fhe.Serialize(cc.MultipartyDecryptMain([acc], secret)[0], fhe.BINARY))
    return out, shares


def _open(
    fhe: Any, cc: Any, secret: Any, ct: bytes, share: bytes, t: int, layout: _Layout, degree: int
) -> np.ndarray:
    """Fuse the peer's partial decryption with this holder's: the plaintext mod t."""
    c = fhe.DeserializeCiphertextString(ct, fhe.BINARY)
    lead = cc.MultipartyDecryptLead([c], secret)[0]
    pt = cc.MultipartyDecryptFusion([lead, fhe.DeserializeCiphertextString(share, fhe.BINARY)])
    got = pt.GetPackedValue() if layout.packed else pt.GetCoefPackedValue()
    vals = np.zeros(degree, dtype=np.int64)
    vals[: len(got)] = got
    return (vals % t).astype(U64)


@dataclasses.dataclass(frozen=True, slots=True)
class HeKeys:
    """One holder's half of the joint BFV keys, one per CRT prime (from :func:`he_keys`); reuse
    them for every triple of a job."""

    fhe: Any  # the openfhe module
    primes: tuple[int, ...]
    contexts: list[Any]
    secrets: list[Any]  # this holder's secret key share per prime
    joint: list[Any]  # the joint public key per prime

    def prefix(self, primes: tuple[int, ...]) -> tuple[list[Any], list[Any], list[Any]]:
        """(contexts, secrets, joint keys) of the first ``len(primes)`` primes."""
        if self.primes[: len(primes)] != primes:
            raise ValueError(
                f"these keys cover {len(self.primes)} primes, the product needs {len(primes)}"
            )
        n = len(primes)
        return self.contexts[:n], self.secrets[:n], self.joint[:n]


def he_keys(peer: str, *, leader: bool, primes: tuple[int, ...] = PRIMES[:6]) -> Step[HeKeys]:
    """Make the joint keys with ``peer``: the leader's KeyGen, then the follower's
    MultipartyKeyGen (secret ``s_L + s_F``), per prime. Two rounds, one message each way.

    Raises:
        ModuleNotFoundError: OpenFHE is not installed.
    """
    fhe = _openfhe()
    ser = fhe.BINARY
    ctxs = [_context(fhe, t) for t in primes]
    if leader:
        pairs = [cc.KeyGen() for cc in ctxs]
        yield Exchange(send={peer: {"pk": [fhe.Serialize(kp.publicKey, ser) for kp in pairs]}})
        got = yield Exchange(recv=frozenset({peer}))
        joint = [fhe.DeserializePublicKeyString(x, ser) for x in got[peer]["pk"]]
    else:
        got = yield Exchange(recv=frozenset({peer}))
        pks = [fhe.DeserializePublicKeyString(x, ser) for x in got[peer]["pk"]]
        pairs = [cc.MultipartyKeyGen(pk) for cc, pk in zip(ctxs, pks, strict=True)]
        yield Exchange(send={peer: {"pk": [fhe.Serialize(kp.publicKey, ser) for kp in pairs]}})
        joint = [kp.publicKey for kp in pairs]
    return HeKeys(fhe, tuple(primes), ctxs, [kp.secretKey for kp in pairs], joint)


def _cross(
    keys: HeKeys,
    primes: tuple[int, ...],
    layout: _Layout,
    peer: str,
    a: np.ndarray,
    b: np.ndarray,
    prg: Prg,
    bits: int,
) -> Step[np.ndarray]:
    """The protocol of the module docstring for one layout; see :func:`he_cross_terms`."""
    fhe = keys.fhe
    ctxs, secrets, joint = keys.prefix(primes)
    degree = int(ctxs[0].GetRingDimension())
    words = prg.random_u64((_MASK_WORDS,) + layout.where.shape)  # R, uniform in [0, 2^bits)
    words[_MASK_WORDS - 1] &= np.uint64((1 << (bits - 64 * (_MASK_WORDS - 1))) - 1)
    outputs = len(layout.terms)
    residues: list[np.ndarray] = []
    for p, (cc, t) in enumerate(zip(ctxs, primes, strict=True)):
        tt = np.uint64(t)
        mine = [
            fhe.Serialize(
                cc.Compress(cc.Encrypt(joint[p], _encode(cc, layout, x, t)), _TOWERS), fhe.BINARY
            )
            for x in layout.mine(a % tt)
        ]
        got = yield Exchange(send={peer: {"a": mine}}, recv=frozenset({peer}))
        mask = _residue(prg.random_u64((2, outputs, degree)), t)  # 128 bits per residue
        mask.reshape(-1)[layout.where] = _residue(words, t)
        out, shares = _evaluate(
            fhe, cc, (joint[p], secrets[p]), got[peer]["a"], layout.plain(b % tt), mask, t, layout
        )
        got = yield Exchange(send={peer: {"c": out, "d": shares}}, recv=frozenset({peer}))
        opened = np.stack(
            [
                _open(fhe, cc, secrets[p], c, d, t, layout, degree)
                for c, d in zip(got[peer]["c"], got[peer]["d"], strict=True)
            ]
        )
        residues.append(opened.reshape(-1)[layout.where])
    with np.errstate(over="ignore"):
        return _garner(residues, primes) - words[0]


def he_cross_terms(
    peer: str, a: np.ndarray, b: np.ndarray, prg: Prg, *, leader: bool, keys: HeKeys | None = None
) -> Step[np.ndarray]:
    """This holder's additive share of ``A_me B_peer + A_peer B_me`` (matrix products), Z_2^64.

    Both holders run it at once with their own shares ``a`` (m, k) and ``b`` (k, n) (the shapes
    are public and equal at both) and opposite ``leader`` flags. See the module docstring.

    Args:
        peer: the other holder.
        a: this holder's share of A, uint64 (m, k).
        b: this holder's share of B, uint64 (k, n).
        prg: private randomness for the masks.
        leader: True at exactly one holder (it makes the first key of each joint key).
        keys: joint keys from :func:`he_keys`; made here (two rounds more) when None.

    Returns:
        uint64 (m, n); the two holders' results add up to ``A_0 B_1 + A_1 B_0`` mod 2^64.

    Raises:
        ValueError: the shapes do not chain, or ``k`` needs more primes than there are keys.
        ModuleNotFoundError: OpenFHE is not installed.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"he_cross_terms needs A (m, k) and B (k, n), not {a.shape!r} and {b.shape!r}"
        )
    (m, k), n = a.shape, b.shape[1]
    primes = primes_for(k)
    if keys is None:
        keys = yield from he_keys(peer, leader=leader, primes=primes)
    degree = int(keys.contexts[0].GetRingDimension())
    layout = _matmul_layout(plan_blocks(m, k, n, degree), degree)
    return (
        yield from _cross(keys, primes, layout, peer, a, b, prg, 128 + (k - 1).bit_length() + SIGMA)
    )


def he_cross_products(
    peer: str, a: np.ndarray, b: np.ndarray, prg: Prg, *, leader: bool, keys: HeKeys | None = None
) -> Step[np.ndarray]:
    """This holder's share of ``a_me * b_peer + a_peer * b_me`` elementwise (SIMD slots).

    The same protocol as :func:`he_cross_terms` with batched (slot) encoding: ``N`` products
    per ciphertext, no sums, the same CRT primes (``= 1 mod 2N``), masks and keys.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape.
        ModuleNotFoundError: OpenFHE is not installed.
    """
    if a.shape != b.shape:
        raise ValueError(f"he_cross_products needs equal shapes, not {a.shape!r} and {b.shape!r}")
    primes = primes_for(1)
    if keys is None:
        keys = yield from he_keys(peer, leader=leader, primes=primes)
    layout = _elementwise_layout(a.shape, int(keys.contexts[0].GetRingDimension()))
    return (yield from _cross(keys, primes, layout, peer, a, b, prg, 128 + SIGMA))
