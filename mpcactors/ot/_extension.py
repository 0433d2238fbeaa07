"""OT extension (IKNP03), width-generic so KKRT16's 1-out-of-N OPRF is the same code.

Theory of operation
-------------------
Ishai, Kilian, Nissim and Petrank, "Extending Oblivious Transfers Efficiently", CRYPTO 2003, in
its semi-honest form, with the wide/pseudorandom-code generalisation of Kolesnikov, Kumaresan,
Rosulek and Trieu, "Efficient Batched Oblivious PRF with Applications to Private Set
Intersection", CCS 2016 (KKRT16). Width ``w`` (128 for IKNP, 512 for KKRT):

Setup (``w`` base OTs with the roles swapped): the extension *sender* S picks
``s <- {0,1}^w`` and receives ``k_i^{s_i}``; the extension *receiver* R holds ``(k_i^0, k_i^1)``.
Both expand ``G(k) = AES-128-CTR_k(0...)`` column by column (:class:`ColumnPrg`). For
``w = 128`` the base OTs are public-key OTs (:mod:`._base`, 2 rounds). For ``w > 128`` (KKRT's
512) they are ``w`` random OTs of a 128-wide IKNP extension, so only 128 need public-key
work: IKNP03's point (security-parameter many public-key OTs suffice for any number of
OTs) applied to KKRT16's ``w = 4 x 128`` base OTs, as libOTe does for its KKRT
(``NcoOtExtReceiver/Sender::genBaseOts`` in ``NcoOtExt.cpp`` run a semi-honest IKNP extension,
the KKRT receiver as its sender, and hand its outputs to ``setBaseOts``). With 128
public-key OTs ``(kk_i^0, kk_i^1)`` held by S and ``kk_i^{D_i}`` by R for a random ``D``::

    R: D <- {0,1}^128, Q'_j = T'_j ^ (s_j & D)          (R is the inner IKNP *sender*)
    S: choice bits s, sends U'  (w rows of 16 bytes)     (S is the inner IKNP *receiver*)
    R: k_j^0 = H'(j, Q'_j),  k_j^1 = H'(j, Q'_j ^ D);   S: k_j^{s_j} = H'(j, T'_j)

with ``H'`` the row hash under a domain of its own (from ``label``). 4x fewer scalar
multiplications than ``w`` public-key OTs, for one more round (3 in all) and ``w x 16`` bytes.
Semi-honest security is unchanged: the inner extension is a semi-honest random OT of 16-byte
strings (correlation-robust ``H'``), and OT extension is secure given any semi-honest OT for
its base OTs; R's view of the inner run (``U'``) is masked by PRG output it cannot predict.

Extending ``m`` rows, R with a code word ``c_j in {0,1}^w`` per row (IKNP: ``c_j = r_j * 1^w``
for a choice bit ``r_j``; KKRT: ``c_j = C(x_j)``, a pseudorandom code of the input)::

    R: T = rows of G(k^0)   (transpose of the w column chunks)
       U = rows of G(k^0) ^ G(k^1), then U_j ^= c_j         --- U --->   (row-major wire layout)
    S: Q = rows of G(k^{s})  (transpose),  Q_j ^= U_j & s        =>   Q_j = T_j ^ (c_j & s)

For IKNP the rows give random OTs under the correlation-robust hash ``H`` (:class:`RowHash`):
S holds ``x_j^0 = H(j, Q_j)``, ``x_j^1 = H(j, Q_j ^ s)``; R holds ``H(j, T_j) = x_j^{r_j}``.
Chosen-message OT sends ``y_j^b = m_j^b ^ x_j^b``; additive correlated OT (Gilboa
multiplication) sends ``tau_j = x_j^0 + delta_j - H(j, Q_j ^ s) mod 2^64`` so R gets
``x_j^0 + r_j delta_j``. Row indices ``j`` count across calls, so hashes never repeat a tweak.

What S sees is ``U``: every row is masked by ``G(k^0) ^ G(k^1)``, which is pseudorandom to S
because it knows only one key of each pair; so ``U`` says nothing about the code words (the
test suite checks this with a distinguisher that breaks an unmasked variant). Semi-honest only:
the KOS15 consistency check for malicious receivers is not implemented.

Both parties must extend the same numbers of rows in the same order (the streams advance).
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives import hashes, hmac

from ..ops._comm import Exchange, Step
from ._base import OtError, base_ot_receive, base_ot_send
from ._kernels import ColumnPrg, RowHash, _Scratch, transpose_bits

__all__ = [
    "ExtReceiver",
    "ExtSender",
    "cot_receive",
    "cot_send",
    "derive_keys",
    "ext_receiver_setup",
    "ext_sender_setup",
    "extend_receive",
    "extend_send",
    "mask_rows",
    "ot_receive",
    "ot_send",
    "receiver_base_keys",
    "receiver_for_session",
    "rot_receive",
    "rot_send",
    "sender_base_keys",
    "sender_for_session",
]

MAX_ROWS = 1 << 16  # rows per internal chunk (bounded buffers)
# column bytes per PRG expansion and transpose of the choice-bit paths (2^18 rows, 4 MiB of
# rows): ~1.5x faster than 2^16 rows, whose 128 keystream calls and ~30 numpy calls per
# transpose cost as much in call overhead as in work
_COLUMN_STEP = 1 << 15
_BASE_WIDTH = 128  # public-key base OTs per set-up; wider set-ups extend them (IKNP)


def mask_rows(g0: np.ndarray, g1: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The receiver's mask of its code words: ``out = g0 ^ g1`` (column chunks, in place)."""
    return np.bitwise_xor(g0, g1, out=out)


class ExtReceiver:
    """The OT-extension receiver's state: both keys' column PRGs and the row counter."""

    def __init__(self, k0: np.ndarray, k1: np.ndarray, width: int, *, session: bytes = b"") -> None:
        self.width = width
        self._keys = (np.array(k0, dtype=np.uint8), np.array(k1, dtype=np.uint8))
        self._g0 = ColumnPrg(k0)
        self._g1 = ColumnPrg(k1)
        self.rows_done = 0
        self._sc = _Scratch()
        self.hash = RowHash(b"iknp/rot" + session)

    def derive(self, session: bytes) -> ExtReceiver:
        """An independent extension instance for ``session`` (see :func:`derive_keys`): fresh
        column PRGs and row counter, and a hash domain of its own, so instances made for
        different sessions may extend rows in any order relative to each other."""
        k0, k1 = self._keys
        return receiver_for_session(k0, k1, self.width, session)

    def rows(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(U, T)`` for the next ``len(codes)`` rows (at most :data:`MAX_ROWS`).

        Args:
            codes: ``(B, w/8)`` uint8 code words, one per row.

        Returns:
            New arrays ``U`` (to send) and ``T`` (kept), both ``(B, w/8)`` uint8.
        """
        b = codes.shape[0]
        if codes.shape != (b, self.width // 8) or b > MAX_ROWS:
            raise ValueError(f"codes must be (B <= {MAX_ROWS}, {self.width // 8}), not {codes.shape}")
        nb = -(-b // 8)
        g0 = self._g0.expand(nb)
        g1 = self._g1.expand(nb)
        t = np.empty((8 * nb, self.width // 8), dtype=np.uint8)
        transpose_bits(g0, out=t, scratch=self._sc)
        x = self._sc.get("mask", self.width * nb).reshape(self.width, nb)
        mask_rows(g0, g1, x)
        u = np.empty((8 * nb, self.width // 8), dtype=np.uint8)
        transpose_bits(x, out=u, scratch=self._sc)
        u = u[:b]
        np.bitwise_xor(u, codes, out=u)
        self.rows_done += b
        return u, t[:b]

    def choice_columns(self, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IKNP rows for plain choice bits, ``U`` in column layout: ``(U_cols, T)``.

        With ``c_j = r_j * 1^w`` every column of ``U`` is ``G(k_i^0) ^ G(k_i^1) ^ r`` (``r``
        packed), so no row transpose of ``U`` is needed: one transpose (of ``T``) instead of
        two. Any number of rows; the sender takes ``U_cols`` with
        :meth:`ExtSender.rows_from_columns`.

        Returns:
            ``U_cols`` ``(w, ceil(B/8))`` uint8 (to send) and ``T`` ``(B, w/8)`` uint8 (kept).
        """
        r = np.asarray(choices, dtype=bool).reshape(-1)
        b = r.size
        nb = -(-b // 8)
        packed = np.packbits(r, bitorder="little")
        u = np.empty((self.width, nb), dtype=np.uint8)
        t = np.empty((8 * nb, self.width // 8), dtype=np.uint8)
        step = _COLUMN_STEP  # transpose in blocks (the streams do not care)
        for lo in range(0, nb, step):
            hi = min(nb, lo + step)
            g0 = self._g0.expand(hi - lo)
            transpose_bits(g0, out=t[8 * lo : 8 * hi], scratch=self._sc)
            np.bitwise_xor(g0, self._g1.expand(hi - lo), out=u[:, lo:hi])
        u ^= packed[None, :]
        self.rows_done += b
        return u, t[:b]


class ExtSender:
    """The OT-extension sender's state: ``s`` (``delta``), its keys' PRGs, the row counter."""

    def __init__(self, s_bits: np.ndarray, keys: np.ndarray, width: int, *, session: bytes = b"") -> None:
        self.width = width
        self._s_bits = np.array(s_bits, dtype=np.uint8)
        self._keys = np.array(keys, dtype=np.uint8)
        self.delta = np.packbits(self._s_bits, bitorder="little")
        self._g = ColumnPrg(keys)
        self.rows_done = 0
        self._sc = _Scratch()
        self.hash = RowHash(b"iknp/rot" + session)

    def derive(self, session: bytes) -> ExtSender:
        """The sender's half of :meth:`ExtReceiver.derive` (same ``s``, derived keys)."""
        return sender_for_session(self._s_bits, self._keys, self.width, session)

    def rows(self, u: np.ndarray) -> np.ndarray:
        """``Q`` for the next ``len(u)`` rows: ``Q_j = T_j ^ (c_j & delta)`` (a new array)."""
        b = u.shape[0]
        if u.shape != (b, self.width // 8) or u.dtype != np.uint8 or b > MAX_ROWS:
            raise OtError(f"OT extension: rows of shape {u.shape} {u.dtype}, expected (B, {self.width // 8}) uint8")
        nb = -(-b // 8)
        q = np.empty((8 * nb, self.width // 8), dtype=np.uint8)
        transpose_bits(self._g.expand(nb), out=q, scratch=self._sc)
        q = q[:b]
        q ^= u & self.delta
        self.rows_done += b
        return q

    def rows_from_columns(self, u_cols: np.ndarray, b: int) -> np.ndarray:
        """``Q`` for the next ``b`` rows from ``U`` in column layout
        (:meth:`ExtReceiver.choice_columns`): ``Q = transpose(G(k_i^{s_i}) ^ s_i U_i)``."""
        nb = -(-b // 8)
        if u_cols.shape != (self.width, nb) or u_cols.dtype != np.uint8:
            raise OtError(
                f"OT extension: columns of shape {u_cols.shape} {u_cols.dtype}, expected ({self.width}, {nb}) uint8"
            )
        sel = self._s_bits.astype(bool)
        q = np.empty((8 * nb, self.width // 8), dtype=np.uint8)
        step = _COLUMN_STEP
        for lo in range(0, nb, step):
            hi = min(nb, lo + step)
            g = self._g.expand(hi - lo)  # a view of a reused buffer: ours until the next expand
            g[sel] ^= u_cols[sel, lo:hi]
            transpose_bits(g, out=q[8 * lo : 8 * hi], scratch=self._sc)
        self.rows_done += b
        return q[:b]


def derive_keys(keys: np.ndarray, session: bytes) -> np.ndarray:
    """Per-session base-OT keys: ``k' = HMAC-SHA256(k, "mpcactors/ot/session" || session)[:16]``.

    Deriving every key of a base OT with a PRF keeps the OT correlation (the sender's derived
    ``k_i^{s_i}`` is the receiver's derived key of the same index and choice) and makes the
    column streams of different sessions independent, so one set of base OTs per job serves any
    number of extension sessions that run in any order (the session label comes from graph
    position, e.g. an op's address). The hash domain also includes the session, so row-hash
    tweaks never repeat across sessions under the one ``s``.
    """
    keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, 16)
    out = np.empty_like(keys)
    msg = b"mpcactors/ot/session\0" + session
    for i in range(keys.shape[0]):
        h = hmac.HMAC(keys[i].tobytes(), hashes.SHA256())
        h.update(msg)
        out[i] = np.frombuffer(h.finalize()[:16], dtype=np.uint8)
    return out


def ext_receiver_setup(peer: str, width: int = 128, *, label: bytes = b"") -> Step[ExtReceiver]:
    """Set up the extension receiver: the ``(k_i^0, k_i^1)`` of ``width`` base OTs.

    Width 128: ``width`` public-key base OTs as their *sender* (2 rounds). Wider (KKRT's 512):
    ``width`` random OTs from a 128-wide IKNP extension in which this party is the IKNP
    *sender* (:func:`_base_ots_by_extension_send`): 128 public-key base OTs as their receiver,
    then ``U`` from the peer (3 rounds).
    """
    k0, k1 = yield from receiver_base_keys(peer, width, label=label)
    return ExtReceiver(k0, k1, width)


def receiver_base_keys(peer: str, width: int, *, label: bytes = b"") -> Step[tuple[np.ndarray, np.ndarray]]:
    """The base OTs of :func:`ext_receiver_setup` as plain keys ``(k0, k1)``, ``(width, 16)``
    uint8 each, to keep for sessions made later by :func:`receiver_for_session`."""
    _check_width(width)
    if width == _BASE_WIDTH:
        return (yield from base_ot_send(peer, width, label=label))
    return (yield from _base_ots_by_extension_send(peer, width, label))


def ext_sender_setup(peer: str, width: int = 128, *, label: bytes = b"") -> Step[ExtSender]:
    """Set up the extension sender: random ``s``, key ``k_i^{s_i}`` of ``width`` base OTs.

    Width 128: ``width`` public-key base OTs as their receiver (2 rounds). Wider: as the
    receiver of a 128-wide IKNP extension with choice bits ``s``
    (:func:`_base_ots_by_extension_receive`; 3 rounds).
    """
    s, keys = yield from sender_base_keys(peer, width, label=label)
    return ExtSender(s, keys, width)


def sender_base_keys(peer: str, width: int, *, label: bytes = b"") -> Step[tuple[np.ndarray, np.ndarray]]:
    """The base OTs of :func:`ext_sender_setup` as ``(s bits, keys)`` (``(width,)`` and
    ``(width, 16)`` uint8), to keep for sessions made later by :func:`sender_for_session`."""
    _check_width(width)
    s = np.unpackbits(np.frombuffer(os.urandom(width // 8), dtype=np.uint8), bitorder="little")
    if width == _BASE_WIDTH:
        keys = yield from base_ot_receive(peer, s, label=label)
    else:
        keys = yield from _base_ots_by_extension_receive(peer, s, label)
    return s, keys


def receiver_for_session(k0: np.ndarray, k1: np.ndarray, width: int, session: bytes) -> ExtReceiver:
    """``ExtReceiver(k0, k1, width).derive(session)`` without building the parent's PRGs."""
    return ExtReceiver(derive_keys(k0, session), derive_keys(k1, session), width, session=session)


def sender_for_session(s_bits: np.ndarray, keys: np.ndarray, width: int, session: bytes) -> ExtSender:
    """``ExtSender(s_bits, keys, width).derive(session)`` without building the parent's PRGs."""
    return ExtSender(s_bits, derive_keys(keys, session), width, session=session)


def _inner_labels(label: bytes) -> tuple[bytes, bytes]:
    """``(base-OT label, row-hash session)`` of the inner 128-wide extension for ``label``.

    Both are length-prefixed and tagged, so they never equal a label a width-128 set-up is
    given directly, and the inner rows' hash domain differs from every outer extension's.
    """
    framed = len(label).to_bytes(2, "little") + label
    return b"\0ot/base-by-iknp/base\0" + framed, b"\0ot/base-by-iknp/rot\0" + framed


def _base_ots_by_extension_send(peer: str, n: int, label: bytes) -> Step[tuple[np.ndarray, np.ndarray]]:
    """``n`` random OTs ``(k0, k1)``, ``(n, 16)`` uint8 each, as the sender of a 128-wide IKNP.

    The IKNP sender is the receiver of the 128 public-key base OTs, with a random ``Delta``
    (2 rounds); it then receives ``U`` (1 round) and gets ``Q_j = T_j ^ (s_j * Delta)``, so
    ``k_j^0 = H(j, Q_j)`` and ``k_j^1 = H(j, Q_j ^ Delta)`` (:func:`rot_send`).
    """
    base_label, session = _inner_labels(label)
    delta = np.unpackbits(np.frombuffer(os.urandom(_BASE_WIDTH // 8), dtype=np.uint8), bitorder="little")
    keys = yield from base_ot_receive(peer, delta, label=base_label)
    inner = ExtSender(delta, keys, _BASE_WIDTH, session=session)
    k0, k1 = yield from rot_send(peer, inner, n, 16)
    return k0, k1


def _base_ots_by_extension_receive(peer: str, choices: np.ndarray, label: bytes) -> Step[np.ndarray]:
    """The receiver's half of :func:`_base_ots_by_extension_send`: ``k_j^{c_j} = H(j, T_j)``.

    The IKNP receiver is the sender of the 128 public-key base OTs (2 rounds), then sends
    ``U`` for the choice bits (1 round, ``n x 16`` bytes).
    """
    base_label, session = _inner_labels(label)
    k0, k1 = yield from base_ot_send(peer, _BASE_WIDTH, label=base_label)
    inner = ExtReceiver(k0, k1, _BASE_WIDTH, session=session)
    return (yield from rot_receive(peer, inner, choices, 16))


def _check_width(width: int) -> None:
    if width <= 0 or width % 128:
        raise ValueError(f"OT extension width must be a positive multiple of 128, not {width}")


def extend_receive(peer: str, rcv: ExtReceiver, codes: np.ndarray) -> Step[np.ndarray]:
    """Extend ``len(codes)`` rows (one round per :data:`MAX_ROWS`); returns ``T`` (m, w/8)."""
    m = codes.shape[0]
    t = np.empty((m, rcv.width // 8), dtype=np.uint8)
    for s in range(0, max(m, 1), MAX_ROWS):
        u, t[s : s + MAX_ROWS] = rcv.rows(codes[s : s + MAX_ROWS])
        yield Exchange(send={peer: u})
    return t


def extend_send(peer: str, snd: ExtSender, m: int) -> Step[np.ndarray]:
    """The sender's side of :func:`extend_receive`; returns ``Q`` (m, w/8)."""
    q = np.empty((m, snd.width // 8), dtype=np.uint8)
    for s in range(0, max(m, 1), MAX_ROWS):
        got = yield Exchange(recv=frozenset({peer}))
        u = got[peer]
        b = min(MAX_ROWS, m - s)
        if not isinstance(u, np.ndarray) or u.shape != (b, snd.width // 8):
            raise OtError(f"OT extension: expected {b} rows from {peer!r}, got {_shape(u)}")
        q[s : s + b] = snd.rows(u)
    return q


def _shape(x: object) -> str:
    return f"an array {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def _choice_codes(choices: np.ndarray, width: int) -> np.ndarray:
    r = np.asarray(choices).astype(bool).reshape(-1)
    return np.where(r[:, None], np.uint8(0xFF), np.uint8(0)).astype(np.uint8).repeat(width // 8, axis=1)


def rot_receive(peer: str, rcv: ExtReceiver, choices: np.ndarray, nbytes: int = 16) -> Step[np.ndarray]:
    """Random OT, receiver: ``(m, nbytes)`` uint8, the message ``x_j^{r_j}`` of each OT."""
    first = rcv.rows_done
    codes = _choice_codes(choices, rcv.width)
    t = yield from extend_receive(peer, rcv, codes)
    return _hash(rcv.hash, t, first, nbytes)


def rot_send(peer: str, snd: ExtSender, m: int, nbytes: int = 16) -> Step[tuple[np.ndarray, np.ndarray]]:
    """Random OT, sender: ``(x0, x1)``, each ``(m, nbytes)`` uint8."""
    first = snd.rows_done
    q = yield from extend_send(peer, snd, m)
    return _hash(snd.hash, q, first, nbytes), _hash(snd.hash, q ^ snd.delta, first, nbytes)


def _hash(h: RowHash, rows: np.ndarray, first: int, nbytes: int) -> np.ndarray:
    idx = np.arange(first, first + rows.shape[0], dtype=np.uint64)
    return h(rows, idx, -(-nbytes // 16))[:, :nbytes]


def ot_send(peer: str, snd: ExtSender, m0: np.ndarray, m1: np.ndarray) -> Step[None]:
    """Chosen-message 1-out-of-2 OT, sender: ``m0``, ``m1`` are ``(m, L)`` uint8 messages."""
    m0 = np.asarray(m0, dtype=np.uint8)
    m1 = np.asarray(m1, dtype=np.uint8)
    if m0.ndim != 2 or m0.shape != m1.shape:
        raise ValueError(f"m0 and m1 must be (m, L) of one shape, not {m0.shape} and {m1.shape}")
    x0, x1 = yield from rot_send(peer, snd, m0.shape[0], m0.shape[1])
    yield Exchange(send={peer: np.stack([x0 ^ m0, x1 ^ m1])})


def ot_receive(peer: str, rcv: ExtReceiver, choices: np.ndarray, nbytes: int) -> Step[np.ndarray]:
    """Chosen-message OT, receiver: returns ``(m, nbytes)``, row j = ``m_j^{r_j}``."""
    r = np.asarray(choices).astype(bool).reshape(-1)
    x = yield from rot_receive(peer, rcv, r, nbytes)
    got = yield Exchange(recv=frozenset({peer}))
    y = got[peer]
    if not isinstance(y, np.ndarray) or y.shape != (2, r.size, nbytes) or y.dtype != np.uint8:
        raise OtError(f"OT: expected (2, {r.size}, {nbytes}) uint8 from {peer!r}, got {_shape(y)}")
    return np.where(r[:, None], y[1], y[0]) ^ x


def cot_send(peer: str, snd: ExtSender, delta: np.ndarray) -> Step[np.ndarray]:
    """Additive correlated OT over Z_2^64, sender: returns ``x0``; the receiver gets ``x0 + r delta``."""
    d = np.asarray(delta, dtype=np.uint64).reshape(-1)
    x0, x1 = yield from rot_send(peer, snd, d.size, 8)
    a = x0.view(np.uint64).reshape(-1)
    tau = a + d - x1.view(np.uint64).reshape(-1)
    yield Exchange(send={peer: tau})
    return a


def cot_receive(peer: str, rcv: ExtReceiver, choices: np.ndarray) -> Step[np.ndarray]:
    """Additive correlated OT, receiver: ``x0_j + r_j delta_j`` as uint64."""
    r = np.asarray(choices).astype(bool).reshape(-1)
    x = yield from rot_receive(peer, rcv, r, 8)
    got = yield Exchange(recv=frozenset({peer}))
    tau = got[peer]
    if not isinstance(tau, np.ndarray) or tau.shape != (r.size,) or tau.dtype != np.uint64:
        raise OtError(f"correlated OT: expected {r.size} uint64 from {peer!r}, got {_shape(tau)}")
    return x.view(np.uint64).reshape(-1) + np.where(r, tau, np.uint64(0))
