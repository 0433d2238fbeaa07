"""Microsoft SEAL's BFV through TenSEAL's ``sealapi``: the context, and SEAL objects to and from bytes.

Theory of operation
-------------------
:mod:`._he_triples` needs a few things TenSEAL's Python API does not offer directly:

* **Objects as bytes.** ``sealapi`` reads and writes SEAL objects only through files. :class:`Files`
  keeps a private temporary directory (``/dev/shm`` where it exists, mode 0700) and moves bytes
  through one file in it. What is saved is SEAL's own serialization (header, then the object,
  zstd-compressed); what is loaded is checked by SEAL's loader against the context (sizes,
  parameters, every coefficient below its modulus), so a malformed object from a peer is an
  error (:func:`load_peer`: :class:`HeError` naming the peer), never undefined behaviour.
* **Coefficients from arrays.** ``sealapi`` cannot set a plaintext's or ciphertext's
  coefficients from an array (its plaintexts parse a hex polynomial, milliseconds each). So
  :class:`SealContext` writes them in SEAL's documented uncompressed format: a ``SEALHeader``
  (magic ``0xA15E``, header size 16, SEAL's version, ``compr_mode_type::none``, total size), then
  ``Plaintext::save_members`` (``parms_id``, coefficient count, scale, a ``DynArray``) or
  ``Ciphertext::save_members`` (``parms_id``, NTT flag, size, degree, modulus count, scale,
  correction factor, a ``DynArray``), the ``DynArray`` being its own header, a count and the
  little-endian words. SEAL's loader checks these like any other object.
* **Parameters.** ``N = 16384``; coefficient modulus four 60-bit primes for data and a 60-bit
  special prime, 300 bits, below SEAL's 128-bit classic bound for N = 16384 (438 bits), which
  the context checks (``sec_level = tc128``); plaintext modulus ``t = 2^59`` (BFV needs no prime
  ``t`` without batching). One context, shared (SEAL contexts are read-only once built).
* **The 2^64 scale.** :mod:`._he_triples` encodes a message ``x`` of Z_2^64 at the scale
  ``Q / 2^64`` (CHEETAH's), not SEAL's ``Q / t``: ``x = 32 x_h + x_l`` with ``x_l < 32``,
  SEAL's encryption of the plaintext ``x_h`` adds ``round(Q x_h / t)`` and
  :attr:`SealContext.low_table` holds ``round(Q x_l / 2^64) mod q_i`` for the 32 values of
  ``x_l``, added to ``c_0``: into a seeded ciphertext as SEAL saved it
  (:meth:`SealContext.seeded_plus_c0`, which needs ``zstandard`` for SEAL's compression), or as
  the ciphertext ``(low, 0)`` (:meth:`SealContext.c0_bytes`).

TenSEAL and zstandard are optional (the ``he`` extra) and imported on first use. TenSEAL's calls
hold the GIL.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import MpcError
from ._checks import U64
from ._comm import Ahead, Exchange, Step

__all__ = [
    "DATA_BITS", "DEGREE", "LOW_BITS", "PLAIN", "Files", "HeError", "SealContext", "available", "bfv_context", "context",
    "load_peer", "pack", "pipelined_rounds", "unpack",
]

DEGREE = 16384  # ring degree N
_Q_BITS = (60, 60, 60, 60, 60)  # four data primes, then SEAL's special prime: 300 bits (tc128: 438)
DATA_BITS = sum(_Q_BITS[:-1])
PLAIN = 1 << 59  # the plaintext modulus t: below every q_i (SEAL takes up to 60 bits)
LOW_BITS = 64 - PLAIN.bit_length() + 1  # x = 2^LOW_BITS x_h + x_l: the bits t's scale cannot hold


class HeError(MpcError):
    """A peer's HE message is malformed (not a SEAL object for these parameters, wrong count)."""


@functools.cache  # asked per job; a failed import is not cached by Python
def available() -> bool:
    """Whether TenSEAL and zstandard import here (the ``he`` extra)."""
    try:
        seal_module()
    except ImportError:
        return False
    return True


def seal_module() -> Any:
    """The optional SEAL binding, imported on first use (no work at import time)."""
    import tenseal.sealapi as seal  # type: ignore[import-not-found]  # optional dependency
    import zstandard  # noqa: F401  # the he extra's other half: SEAL's saved objects (seeded_plus_c0)

    return seal


@functools.cache
def context() -> SealContext:
    """The BFV context, plaintext modulus :data:`PLAIN` (shared: SEAL contexts are read-only).

    Only ``t = 2^59`` fits :attr:`SealContext.low_table` (the bits below ``2^64 / t``)."""
    seal = seal_module()
    c = bfv_context(DEGREE, seal.CoeffModulus.Create(DEGREE, list(_Q_BITS)), PLAIN)
    q = math.prod(c.qs)
    low = np.array([[((q * v + (1 << 63)) >> 64) % qi for v in range(1 << LOW_BITS)] for qi in c.qs], dtype=U64)
    return dataclasses.replace(c, low_table=low)


def bfv_context(degree: int, coeff: Any, plain: Any) -> SealContext:
    """A BFV context of SEAL's (128-bit security checked) for the ring degree, the coefficient
    modulus (SEAL ``Modulus`` objects) and the plaintext modulus (an int or a ``Modulus``)."""
    seal = seal_module()
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(degree)
    parms.set_coeff_modulus(coeff)
    parms.set_plain_modulus(plain)
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise ValueError(f"SEAL rejects the BFV parameters: {ctx.parameters_error_message()}")
    data = ctx.first_context_data()
    qs = tuple(int(m.value()) for m in data.parms().coeff_modulus())
    header = seal.Serialization.SEALHeader()
    t = int(plain) if isinstance(plain, int) else int(plain.value())
    return SealContext(
        seal, ctx, t, qs, list(data.parms_id()), (header.version_major, header.version_minor),
        np.zeros((len(qs), 0), dtype=U64), degree,
    )  # fmt: skip


def pipelined_rounds(
    peer: str, first: Callable[[], dict[str, Any]], work: Callable[[int], dict[str, Any]], last: int,
    receive: Callable[[int, dict[str, Any]], None], what: str,
) -> Step[None]:
    """Rounds ``0 .. last`` with ``peer``, each holder sending at once: round 0 sends ``first()``,
    round ``u + 1`` what ``work(u)`` made while round ``u``'s messages travelled
    (``Exchange.meanwhile``); the peer's message of round ``u`` goes to ``receive(u, msg)``.

    Raises:
        HeError: a peer's message that is not a mapping (``what`` names the protocol).
    """
    ahead = Ahead(first)
    for u in range(last + 1):
        send = ahead.result()
        ahead = Ahead(functools.partial(work, u) if u < last else dict)
        got = yield Exchange(send={peer: send}, recv=frozenset({peer}), meanwhile=ahead if u < last else None)
        msg = got[peer]
        if not isinstance(msg, dict):
            raise HeError(f"{what}: round {u} message from {peer!r} is {type(msg).__name__}")
        receive(u, msg)


@dataclasses.dataclass(frozen=True, slots=True)
class SealContext:
    """One BFV context and the writers of SEAL's uncompressed format for it."""

    seal: Any
    ctx: Any
    t: int
    qs: tuple[int, ...]  # the data level's coefficient moduli
    parms_id: list[int]
    version: tuple[int, int]
    low_table: np.ndarray  # (data primes, 2^LOW_BITS): round(Q v / 2^64) mod q_i (module doc)
    degree: int = DEGREE  # the ring degree N

    def level_parms_id(self, drops: int) -> list[int]:
        """The ``parms_id`` of the level ``drops`` mod switches below the data level."""
        data = self.ctx.first_context_data()
        for _ in range(drops):
            data = data.next_context_data()
        return list(data.parms_id())

    def _header(self, body: int) -> bytes:  # SEALHeader, uncompressed
        return struct.pack("<HBBBBHQ", 0xA15E, 16, *self.version, 0, 0, 16 + body)

    def _dyn(self, words: np.ndarray) -> bytes:  # DynArray<uint64>::save
        body = struct.pack("<Q", words.size) + np.ascontiguousarray(words, dtype="<u8").tobytes()
        return self._header(len(body)) + body

    def plaintext_bytes(self, coeffs: np.ndarray) -> bytes:
        """A non-NTT plaintext with ``coeffs`` (< t) in SEAL's uncompressed format."""
        body = bytes(32) + struct.pack("<Qd", coeffs.size, 1.0) + self._dyn(coeffs)
        return self._header(len(body)) + body

    def seeded_plus_c0(self, saved: bytes, residues: np.ndarray) -> bytes:
        """A seeded ciphertext as SEAL saved it (``Serializable``: ``c_0``, then the seed of
        ``c_1``), with ``residues`` (L, N) added to ``c_0``, in SEAL's uncompressed format.

        SEAL compresses what it saves (zstd by default); its layout inside is
        ``Ciphertext::save_members``: ``parms_id``, NTT flag, size, degree, modulus count, scale,
        correction factor, then ``c_0`` as a ``DynArray`` (a seeded ciphertext saves only its
        first half), then the seed's ``UniformRandomGeneratorInfo``, which is kept as it is.
        Only this holder's own output goes through here (never a peer's bytes).
        """
        magic, hsize, _, _, mode, _, total = struct.unpack_from("<HBBBBHQ", saved)
        if magic != 0xA15E or hsize != 16 or total != len(saved):
            raise ValueError("SEAL's saved ciphertext has no valid header (internal)")
        if mode == 0:
            body = saved[16:]
        elif mode == 2:
            import zstandard  # optional (the he extra), imported on first use

            body = zstandard.ZstdDecompressor().decompress(saved[16:], max_output_size=2 * len(saved) + (1 << 16))
        else:  # SEAL as TenSEAL builds it compresses with zstd (2)
            raise ValueError(f"SEAL's saved ciphertext has compression mode {mode} (internal)")
        count = len(self.qs) * self.degree
        ntt, size, degree, moduli = struct.unpack_from("<?QQQ", body, 32)
        dyn = 32 + 1 + 5 * 8  # members before c_0's DynArray
        (words,) = struct.unpack_from("<Q", body, dyn + 16)
        if ntt or size != 2 or degree != self.degree or moduli != len(self.qs) or words != count:
            raise ValueError("SEAL's saved ciphertext is not a seeded one at the data level (internal)")
        c0 = np.frombuffer(body, dtype="<u8", count=count, offset=dyn + 24).reshape(len(self.qs), self.degree)
        c0 = (c0 + residues) % np.array(self.qs, dtype=U64)[:, None]
        out = body[: dyn + 24] + c0.astype("<u8").tobytes() + body[dyn + 24 + 8 * count :]
        return self._header(len(out)) + out

    def c0_bytes(self, residues: np.ndarray) -> bytes:
        """The ciphertext ``(f, 0)`` at the data level, ``residues`` = ``f mod q_i`` (L, N)."""
        polys = np.zeros((2,) + residues.shape, dtype=U64)
        polys[0] = residues
        body = (
            struct.pack("<4Q", *self.parms_id)
            + b"\x00"  # not NTT form
            + struct.pack("<QQQdQ", 2, self.degree, len(self.qs), 1.0, 1)
            + self._dyn(polys.reshape(-1))
        )
        return self._header(len(body)) + body


def pack(objects: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Serialized objects as one uint8 array and their sizes: the wire codec carries arrays
    without copying them into msgpack (a list of ~400 KB bytes objects is packed byte by byte)."""
    sizes = np.array([len(x) for x in objects], dtype=np.uint64)
    return np.frombuffer(b"".join(objects), dtype=np.uint8), sizes


def unpack(packed: Any, count: int, peer: str, what: str) -> list[memoryview]:
    """The ``count`` objects of :func:`pack`'s ``(blob, sizes)`` from ``peer``.

    Raises:
        HeError: not a pair of a uint8 and a uint64 array, another count, or sizes that do not
            add up to the blob.
    """
    if not (isinstance(packed, tuple | list) and len(packed) == 2
            and all(isinstance(x, np.ndarray) and x.ndim == 1 for x in packed)
            and packed[0].dtype == np.uint8 and packed[1].dtype == np.uint64):
        raise HeError(f"HE matrix triple: {what} from {peer!r} is not a (uint8 blob, uint64 sizes) pair")
    blob, sizes = packed
    if sizes.size != count:
        raise HeError(f"HE matrix triple: {sizes.size} {what} from {peer!r}, expected {count}")
    ends = np.cumsum(sizes, dtype=np.uint64)
    total = int(ends[-1]) if count else 0
    if total != blob.size:
        raise HeError(f"HE matrix triple: {what} from {peer!r}: sizes add up to {total}, not {blob.size}")
    if not count:
        return []
    view = memoryview(blob).cast("B")
    starts = [0, *(int(e) for e in ends[:-1])]
    return [view[s : int(e)] for s, e in zip(starts, ends, strict=True)]


class Files:
    """SEAL's Python API reads and writes only files: a private directory for them."""

    def __init__(self) -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="mpcactors-he-", dir=base)  # mode 0700
        self._path = os.path.join(self.dir, "object")  # one triple's calls never overlap

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def save(self, obj: Any) -> bytes:
        obj.save(self._path)
        with open(self._path, "rb") as f:
            return f.read()

    def load(self, obj: Any, ctx: Any, data: bytes) -> Any:
        with open(self._path, "wb") as f:
            f.write(data)
        obj.load(ctx, self._path)
        return obj


def load_peer(files: Files, make: Callable[[], Any], c: SealContext, data: Any, peer: str, what: str) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise HeError(f"HE matrix triple: {what} from {peer!r} is {type(data).__name__}, not bytes")
    try:
        return files.load(make(), c.ctx, bytes(data))
    except (ValueError, RuntimeError, OSError) as e:  # SEAL's checks (invalid_argument, logic_error)
        raise HeError(f"HE matrix triple: {what} from {peer!r} is not a valid SEAL object: {e}") from None
