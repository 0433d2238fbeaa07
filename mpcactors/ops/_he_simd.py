"""Elementwise triples by lattice HE: BFV's SIMD slots over a CRT of plaintext primes.

Theory of operation
-------------------
The cross terms of an elementwise Beaver triple, ``a_0 b_1 + a_1 b_0`` (``_ot_triples.py``),
computed under one holder's BFV key with batching (Smart and Vercauteren, "Fully homomorphic
SIMD operations", DCC 2014; SEAL's ``BatchEncoder``), as SPU's CHEETAH computes its products
(Huang, Lu, Hong, Ding, "Cheetah: Lean and Fast Secure Two-Party Deep Neural Network
Inference", USENIX Security 2022; a CRT of plaintext primes, noise flooding, a share per slot):

* **Roles.** The elements are split in two, in whole batches of N = 8192: holder 0 holds the key
  (K) for the first part and evaluates (E) the second, holder 1 the other way round, so both do
  the same work in the same rounds.
* **Plaintexts.** Four primes ``t_j`` of 45 bits, ``t_j = 1 mod 2N`` (so SEAL batches: N slots
  per plaintext, products slot by slot); ``P = prod t_j ~ 2^180``. A ring element is lifted
  centred (``[-2^63, 2^63)``), so ``x = a_K b_E + b_K a_E`` is an integer with ``|x| < 2^127``,
  and its residues mod ``t_j`` are what the slots multiply.
* **K** encrypts its ``a_K`` and ``b_K`` (per prime and batch) under its secret key, serialized
  seeded (``c_1`` as a seed: half the bytes), and sends them with its public keys.
* **E** computes ``Enc(a_K) b_E + Enc(b_K) a_E``, adds a fresh encryption under K's public key
  of its mask ``r``, uniform mod ``P`` (uniform residues mod each ``t_j``; the encryption also
  re-randomizes ``c_1``), and a flood ``f`` uniform in ``[-F, F]`` to ``c_0``; it switches the
  result down to one prime (a public function of it: :func:`._he_triples.reply_drops`) and
  returns it. Its share is ``-r mod 2^64``.
* **K** decrypts ``v_j = x + r mod t_j``; the CRT gives ``v = x + r mod P`` in ``[0, P)``
  (:func:`_crt_low`), and its share is ``v mod 2^64``. The shares add up to ``x mod 2^64``
  unless ``x + r`` wraps around ``P``: probability ``|x| / P < 2^-52`` per element (then that
  element's triple is wrong; what K sees is the same either way).

Who sees what: E sees only ciphertexts under K's key (RLWE). K sees ``x + r mod P`` with ``r``
uniform mod ``P`` (perfectly hiding), and the noise: a product's noise is ``(e + eps) b~`` for
the plaintext polynomial ``b~`` of E's slots, which the flood hides (statistical distance at
most ``2^-SIGMA`` over every coefficient the triple floods, by the union bound).

Noise, worst case: SEAL's fresh errors ``|e| <= 21`` and the encoding's rounding
``|eps| <= 1/2``; SEAL centres plaintext coefficients, ``||b~||_inf <= t / 2``; so each product
adds at most ``N 21.5 t / 2`` (``B`` for two, plus the mask encryption's). ``F = 2^(bitlen(B
count) + SIGMA)`` with ``count`` the coefficients flooded; decryption is exact while
``B + F < Q / (2 t)`` (``Q``: three 60-bit data primes, SEAL's 38-bit special prime beside them,
218 bits, SEAL's 128-bit bound for N = 8192), with a 3/4 margin: up to 2^27 elements a
triple (a bigger one goes by OT).

Rounds, as :mod:`._he_triples`: K's ciphertexts go in chunks of ~16 MB; in round ``u`` each
holder sends its chunk ``u`` (its public keys on the first) and the evaluated chunk ``u - 2`` of
the peer; the peer's chunk ``u - 1`` is evaluated and my chunk ``u + 1`` encrypted while round
``u`` travels; the first chunk is small (8 units), so the peer starts evaluating sooner.
``chunks + 2`` rounds (9 at 10^6 elements).

TenSEAL is optional (the ``he`` extra); its calls hold the GIL, so a node runs big triples
(:func:`worth_a_process`) in a child process (``mpcactors._offload``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._checks import U64
from ._comm import Step
from ._he_seal import (
    Files,
    HeError,
    SealContext,
    bfv_context,
    load_peer,
    pack,
    pipelined_rounds,
    seal_module,
    unpack,
)
from ._he_triples import _ETA, SIGMA, _flood_maker, reply_drops
from ._prg import Prg

__all__ = ["DEGREE", "fits", "offloaded_simd_cross", "simd_cross", "simd_rounds", "worth_a_process"]

DEGREE = 8192  # N: slots per plaintext
_Q_BITS = (60, 60, 60, 38)  # three data primes, then SEAL's special prime: 218 bits (tc128's bound)
_T_BITS = 45  # each plaintext prime
_PRIMES = 4  # P ~ 2^180 > 2^127 x 2^52: an element wraps with probability < 2^-52
_CHUNK_UNITS = 40  # (batch, prime) units per round: two seeded ciphertexts each, ~16 MB
_FIRST_UNITS = 8  # ... but the first: the peer starts evaluating sooner (nothing else overlaps it)
_MASK_ENC_NOISE = _ETA * (2 * DEGREE + 1) + 1  # a public-key encryption's noise, bounded
_EXACT = 2.0**-40  # a CRT fraction this close to an integer is recomputed with Python integers
# Measured costs (ms, one core, this module's calls, 2026-12-04): per (batch, prime) unit as key
# holder (two encryptions, the decryption) and as evaluator (two products, the mask, the reply),
# and per triple (four key pairs, their public keys saved and loaded)
_COST_K, _COST_E, _COST_KEYS = 7.0, 10.5, 50.0
_OFFLOAD_MS = 1500.0  # a child process takes ~0.5 s to start and import: worth it above this


@functools.cache
def contexts() -> tuple[SealContext, ...]:
    """One BFV context per plaintext prime (batching; the coefficient modulus is shared)."""
    seal = seal_module()
    coeff = seal.CoeffModulus.Create(DEGREE, list(_Q_BITS))
    return tuple(bfv_context(DEGREE, coeff, t) for t in seal.PlainModulus.Batching(DEGREE, [_T_BITS] * _PRIMES))


# ---- sizes ---------------------------------------------------------------------------------------


def _split(n: int) -> int:
    """Holder 0 holds the key for elements ``[0, h)`` and holder 1 for ``[h, n)``: whole batches."""
    batches = -(-n // DEGREE)
    return min(n, -(-batches // 2) * DEGREE)


def _chunks(units: int) -> list[tuple[int, int]]:
    """Unit ranges per round: a small first chunk, then :data:`_CHUNK_UNITS` each."""
    first = min(units, _FIRST_UNITS)
    return [(0, first)] * (units > 0) + [(lo, min(units, lo + _CHUNK_UNITS)) for lo in range(first, units, _CHUNK_UNITS)]


def _units(count: int) -> int:
    return -(-count // DEGREE) * _PRIMES


def simd_rounds(n: int) -> int:
    """Rounds of :func:`simd_cross` for ``n`` elements."""
    h = _split(n)
    return max(len(_chunks(_units(h))), len(_chunks(_units(n - h)))) + 2


def _noise_bound(t: int) -> int:
    """``B``: the worst-case noise of an evaluated ciphertext before the flood (module doc)."""
    return 2 * DEGREE * (2 * _ETA + 1) * (t // 2 + 1) // 2 + _MASK_ENC_NOISE


def flood_bits(n: int, t: int) -> int:
    """``log2 F`` for a triple of ``n`` elements and the prime ``t``, or ValueError where the
    data level's noise room (3/4 of ``Q / 2t``) would not hold it."""
    bits = (_noise_bound(t) * _units(n) * DEGREE).bit_length() + SIGMA
    room = (1 << (sum(_Q_BITS[:-1]) - 1)) // t // 2  # a lower bound: the data primes are just below 2^60
    if _noise_bound(t) + (1 << bits) >= room // 4 * 3:
        raise ValueError(f"an HE elementwise triple of {n} elements needs a flood of 2^{bits}, more than the modulus leaves")
    return bits


def fits(n: int) -> bool:
    """Whether a triple of ``n`` elements fits the parameters (TenSEAL importing is separate)."""
    try:
        flood_bits(n, 1 << _T_BITS)
    except ValueError:
        return False
    return n > 0


def cost(n: int) -> float:
    """Modelled CPU (ms) of a triple of ``n`` elements, per holder (module constants)."""
    h = _split(n)
    return (_COST_K + _COST_E) * max(_units(h), _units(n - h)) + _COST_KEYS


def worth_a_process(n: int) -> bool:
    """Whether the modelled CPU of a triple pays for a child process."""
    return cost(n) >= _OFFLOAD_MS


# ---- arithmetic mod the 45-bit primes ------------------------------------------------------------


def _mulmod(x: np.ndarray, c: int, t: int) -> np.ndarray:
    """``x c mod t`` for uint64 ``x < t``, ``c < t < 2^46``: the quotient in float64 (error below
    1/64 for products below 2^92), the remainder exactly in wrapping uint64 arithmetic."""
    q = np.floor(x.astype(np.float64) * (c / t)).astype(U64)
    with np.errstate(over="ignore"):
        r = (x * U64(c) - q * U64(t)).view(np.int64)  # the true remainder, in [-t, 2t)
    r += np.where(r < 0, t, 0)
    r -= np.where(r >= t, t, 0)
    return r.view(U64)


def _uniform_mod(prg: Prg, t: int, n: int) -> np.ndarray:
    """``n`` values uniform mod ``t`` (from 128 random bits each: bias below 2^-80)."""
    w = prg.random_u64((2, n))
    return (_mulmod(w[0] % U64(t), (1 << 64) % t, t) + w[1] % U64(t)) % U64(t)


def _crt_low(res: np.ndarray, ts: tuple[int, ...]) -> np.ndarray:
    """``v mod 2^64`` for the ``v`` in ``[0, P)`` with residues ``res[j] = v mod t_j``.

    ``y_j = v_j (P / t_j)^-1 mod t_j``; ``v = sum_j y_j P / t_j - k P`` with ``k = floor(sum_j
    y_j / t_j)``, in float64; where that sum is within :data:`_EXACT` of an integer the element
    is recomputed with Python integers (never wrong, rarely slow)."""
    p = math.prod(ts)
    mod = 1 << 64
    ys = [_mulmod(res[j], pow(p // t, -1, t), t) for j, t in enumerate(ts)]
    frac = sum(y.astype(np.float64) / t for y, t in zip(ys, ts, strict=True))
    k = np.floor(frac)
    with np.errstate(over="ignore"):
        out = k.astype(U64) * U64((-p) % mod)
        for y, t in zip(ys, ts, strict=True):
            out += y * U64((p // t) % mod)
    for i in np.flatnonzero(np.abs(frac - np.rint(frac)) < _EXACT):
        out[i] = sum(int(y[i]) * (p // t) for y, t in zip(ys, ts, strict=True)) % p % mod
    return out


# ---- the protocol --------------------------------------------------------------------------------


class _Keys:
    """This holder's key pair for one plaintext prime, and the calls it makes with it."""

    def __init__(self, c: SealContext) -> None:
        seal = c.seal
        self.c = c
        keygen = seal.KeyGenerator(c.ctx)
        self.public = seal.PublicKey()  # whole (sealapi does not bind a seeded Serializable<PublicKey>)
        keygen.create_public_key(self.public)
        secret = keygen.secret_key()
        self.encryptor = seal.Encryptor(c.ctx, secret)
        self.decryptor = seal.Decryptor(c.ctx, secret)
        self.evaluator = seal.Evaluator(c.ctx)
        self.encoder = seal.BatchEncoder(c.ctx)
        self.peer: Any = None  # an encryptor under the peer's public key, from its first message

    def encode(self, slots: np.ndarray) -> Any:
        pt = self.c.seal.Plaintext()
        full = np.zeros(DEGREE, dtype=U64)
        full[: slots.size] = slots
        self.encoder.encode(full.tolist(), pt)
        return pt


def _residues(x: np.ndarray, ts: tuple[int, ...]) -> np.ndarray:
    """(primes, n): the centred lift of ring elements ``x`` modulo each prime."""
    signed = x.view(np.int64)
    return np.stack([(signed % np.int64(t)).view(U64) for t in ts])


def simd_cross(peer: str, first: bool, a: np.ndarray, b: np.ndarray, prg: Prg) -> Step[np.ndarray]:
    """This holder's additive share of ``a_me b_peer + a_peer b_me`` (elementwise), Z_2^64.

    Both holders run it at once with their own flat shares; ``first``: this holder is holder 0
    (the key holder of the first part). :func:`simd_rounds` rounds.

    Args:
        peer: the other holder.
        first: whether this holder is holder 0.
        a: this holder's a, uint64 (n,).
        b: this holder's b, uint64 (n,).
        prg: private randomness for the masks and the flood (keys come from SEAL's own CSPRNG).

    Returns:
        uint64 (n,); the two holders' results add up to ``a_0 b_1 + a_1 b_0`` mod 2^64 (but for
        an element whose ``x + r`` wraps around ``P``: probability below 2^-52, module doc).

    Raises:
        ValueError: ``a`` and ``b`` of other shapes, or too many elements for the parameters.
        HeError: a malformed message from the peer.
    """
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"simd_cross needs two flat operands of one size, not {a.shape!r} and {b.shape!r}")
    n = a.size
    h = _split(n)
    mine, theirs = (slice(0, h), slice(h, n)) if first else (slice(h, n), slice(0, h))
    ctxs = contexts()
    ts = tuple(c.t for c in ctxs)
    fbits = [flood_bits(n, t) for t in ts]
    drops = [reply_drops(c, _noise_bound(c.t) + (1 << f), DEGREE, 0) for c, f in zip(ctxs, fbits, strict=True)]
    levels = [c.level_parms_id(d) for c, d in zip(ctxs, drops, strict=True)]
    n_mine, n_theirs = a[mine].size, a[theirs].size
    my_chunks, peer_chunks = _chunks(_units(n_mine)), _chunks(_units(n_theirs))
    k_ops, e_ops = (a[mine], b[mine]), (a[theirs], b[theirs])  # my shares as key holder, as evaluator
    masks = np.zeros((len(ts), n_theirs), dtype=U64)  # r mod t_j, per element, drawn as evaluated
    files = Files()
    keys = [_Keys(c) for c in ctxs]

    def payload(u: int) -> dict[str, Any]:  # round u's part: my chunk u (and my public keys on the first)
        out: dict[str, Any] = {"pk": [files.save(k.public) for k in keys]} if u == 0 else {}  # for my masks
        cts = []
        for unit in range(*my_chunks[u]):
            s, j = divmod(unit, _PRIMES)
            lo, hi = s * DEGREE, min(n_mine, (s + 1) * DEGREE)
            for x in k_ops:
                slots = _residues(x[lo:hi], ts[j : j + 1])[0]
                cts.append(files.save(keys[j].encryptor.encrypt_symmetric(keys[j].encode(slots))))
        out["a"] = pack(cts)
        return out

    theirs_cts: dict[int, list[Any]] = {}  # the peer's chunks, from arrival to evaluation

    def evaluate(v: int) -> tuple[np.ndarray, np.ndarray]:
        got = theirs_cts.pop(v)
        out = []
        for i, unit in enumerate(range(*peer_chunks[v])):
            s, j = divmod(unit, _PRIMES)
            lo, hi = s * DEGREE, min(n_theirs, (s + 1) * DEGREE)
            masks[j, lo:hi] = _uniform_mod(prg, ts[j], hi - lo)  # independent per prime: r uniform mod P
            slots = [_residues(x[lo:hi], ts[j : j + 1])[0] for x in e_ops]
            out.append(_evaluate(keys[j], files, peer, got[2 * i : 2 * i + 2], slots, masks[j, lo:hi],
                                 _flood_maker(prg, keys[j].c, fbits[j]), drops[j]))  # fmt: skip
        return pack(out)

    def work(u: int) -> dict[str, Any]:
        """Round u + 1's message, made while round u's travel (module doc)."""
        out: dict[str, Any] = {}
        if 1 <= u <= len(peer_chunks):
            out["c"] = evaluate(u - 1)
        if u + 1 < len(my_chunks):
            out.update(payload(u + 1))
        return out

    opened = np.zeros((len(ts), n_mine), dtype=U64)

    def receive(u: int, msg: dict[str, Any]) -> None:
        if u == 0 and peer_chunks:
            pks = msg.get("pk")
            if not isinstance(pks, list) or len(pks) != len(keys):
                raise HeError(f"HE elementwise triple: {peer!r} sent no {len(keys)} public keys")
            for k, pk in zip(keys, pks, strict=True):
                key = load_peer(files, k.c.seal.PublicKey, k.c, pk, peer, "a public key")
                k.peer = k.c.seal.Encryptor(k.c.ctx, key)
        if u < len(peer_chunks):
            lo, hi = peer_chunks[u]
            theirs_cts[u] = unpack(msg.get("a"), 2 * (hi - lo), peer, "ciphertexts")
        if 2 <= u < len(my_chunks) + 2:  # the peer's evaluation of my chunk u - 2
            lo, hi = my_chunks[u - 2]
            for unit, data in zip(range(lo, hi), unpack(msg.get("c"), hi - lo, peer, "evaluated ciphertexts"), strict=True):
                s, j = divmod(unit, _PRIMES)
                top = min(n_mine, (s + 1) * DEGREE)
                opened[j, s * DEGREE : top] = _open(keys[j], files, peer, data, levels[j])[: top - s * DEGREE]

    try:
        yield from pipelined_rounds(
            peer, lambda: payload(0) if my_chunks else {},  # no keys to send where I hold none of the elements
            work, max(len(my_chunks), len(peer_chunks)) + 1, receive, "HE elementwise triple",
        )
    finally:
        files.close()
    out = np.empty(n, dtype=U64)
    out[mine] = _crt_low(opened, ts)
    with np.errstate(over="ignore"):
        out[theirs] = -_crt_low(masks, ts)
    return out


def _load_fresh(k: _Keys, files: Files, peer: str, data: Any) -> Any:
    c = k.c
    ct = load_peer(files, lambda: c.seal.Ciphertext(c.ctx), c, data, peer, "a ciphertext")
    if ct.size() != 2 or list(ct.parms_id()) != c.parms_id or ct.is_ntt_form():
        raise HeError(f"HE elementwise triple: a ciphertext from {peer!r} is not a fresh one at the data level")
    return ct


def _evaluate(
    k: _Keys,
    files: Files,
    peer: str,
    cts: list[Any],
    slots: list[np.ndarray],
    mask: np.ndarray,
    flood: Callable[[], np.ndarray],
    drops: int,
) -> bytes:
    """One evaluated unit: ``Enc(a_K) b_E + Enc(b_K) a_E + Enc_pk(r) + (f, 0)``, switched down
    ``drops`` primes, serialized (module doc). ``slots``: my ``(a_E, b_E)`` residues."""
    c, ev = k.c, k.evaluator
    ct_a, ct_b = (_load_fresh(k, files, peer, x) for x in cts)
    a_e, b_e = slots
    out = c.seal.Ciphertext(c.ctx)
    k.peer.encrypt(k.encode(mask), out)  # also re-randomizes c_1 (else c_1 / c_1(Enc(a_K)) = b~)
    for ct, y in ((ct_a, b_e), (ct_b, a_e)):
        if y.any():  # SEAL refuses a product with a zero plaintext (and it adds nothing)
            ev.multiply_plain_inplace(ct, k.encode(y))
            ev.add_inplace(out, ct)
    ev.add_inplace(out, files.load(c.seal.Ciphertext(c.ctx), c.ctx, c.c0_bytes(flood())))
    for _ in range(drops):  # after the flood: fewer bytes, the same view
        ev.mod_switch_to_next_inplace(out)
    return files.save(out)


def _open(k: _Keys, files: Files, peer: str, data: Any, level: list[int]) -> np.ndarray:
    """Decrypt one evaluated unit (at the level ``level``): its N slots."""
    c = k.c
    ct = load_peer(files, lambda: c.seal.Ciphertext(c.ctx), c, data, peer, "an evaluated ciphertext")
    if ct.size() != 2 or list(ct.parms_id()) != level or ct.is_ntt_form():
        raise HeError(f"HE elementwise triple: an evaluated ciphertext from {peer!r} has the wrong shape or level")
    pt = c.seal.Plaintext()
    k.decryptor.decrypt(ct, pt)
    return np.array(k.encoder.decode_uint64(pt), dtype=U64)


def offloaded_simd_cross(peer: str, first: bool, a: np.ndarray, b: np.ndarray, key: bytes) -> Step[np.ndarray]:
    """:func:`simd_cross` with its private randomness from ``key`` (32 bytes): the form a child
    process runs (``mpcactors._offload``)."""
    return simd_cross(peer, bool(first), a, b, Prg(bytes(key)))
