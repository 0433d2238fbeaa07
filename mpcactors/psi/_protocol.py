"""The ECDH-PSI exchange between two parties over one job's channels.

Theory of operation
-------------------
Roles: the *matcher* M is the receiver, or (result to both) the party whose name sorts first;
the other party is O. Each holds a secret scalar (``k_M``, ``k_O``) and a prepared stream of
distinct key hashes (:mod:`._prepare`), cut into chunks of ``chunk_size`` positions.

Messages (channel ``ctl`` unless noted; every message is a msgpack map with a type ``t``)::

    both:  hello {settings, checkpoint session offer, nonce}      -> settings must agree
    both:  ready {n distinct keys, chunk size, [M: chunks it already holds]}
    M -> O on "s": {c, v = k_M * H(own chunk c)}          O -> M on "d": {c, v = k_O * v}[:16]
        (H: hash to the prime-order group, :mod:`._ecdh`)
    O -> M on "s": {c, v = k_O * H(own chunk c)}          M computes k_M * v, keeps [:16]
    M matches (``_match``); result to both: M -> O align {peer positions, M's multiplicities},
        O -> M align {O's multiplicities} (no multiplicities in a difference join); then
        align_end both ways, carrying the sender's own-only row count only when the receiver
        pads for those rows (left/right/full; see ``_csvjoin.sends_own_only``)
    both:  fin

The chunk streams run as concurrent tasks; each direction is drained by its own task, and every
task that blinds holds a slot of a per-stream semaphore (at most ``inflight`` chunks of ``32 *
chunk_size`` bytes per stream in memory), so a slow stream never stalls another: no cycle of
waits exists between flow-control windows and semaphores (M's receive tasks only need the CPU
and the disk). EC work runs in worker processes (:class:`EcPool`). Chunks are addressed by index,
so they may arrive in any order, and the matcher writes each one as a file (:mod:`._checkpoint`):
a resumed run streams only the chunks the matcher does not hold yet.

Security (semi-honest, as SPU's ECDH-PSI): O learns M's number of distinct keys and nothing
else; M learns the intersection (and O's number of distinct keys); with the result to both, O
also learns the intersection, and each party learns exactly the sizes its aligned output needs
(multiplicities of common keys except in a difference join, the peer's one-sided row count
only where it pads for them; docs/PSI.md lists them per join). Stream orders are secret
pseudo-random orders (see ``_prepare``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread
import numpy as np

from .._errors import PsiError
from ..link._abc import JobChannel, JobLink

# Worker processes import the main module: unguarded top-level code runs again in each of them.
WORKER_HINT = (
    " (worker processes import your main module: if it starts mpcactors at import time, put that"
    ' under `if __name__ == "__main__":`; or pass workers=0 to use threads)'
)
from ._checkpoint import Workspace
from ._ecdh import POINT_BYTES, blind_batch, blind_own_batch
from ._match import D_BYTES
from ._prepare import PreparedFiles
from ._progress import ProgressReporter

__all__ = ["JOINS", "PROTOCOLS", "VERSION", "EcPool", "PsiSettings", "StreamPlan", "Wire", "exchange"]

VERSION = 2  # 2: ids hashed to the prime-order group (v1: digest read as a u-coordinate)
JOINS = ("inner", "left", "right", "full", "difference")
PROTOCOLS = ("kkrt", "ecdh")  # the first is the default (docs/PSI.md compares them)


@dataclasses.dataclass(frozen=True, slots=True)
class PsiSettings:
    """What both parties of a PSI job must agree on; exchanged and compared in ``hello``."""

    keys: int  # number of key columns
    join: str
    receiver: str | None
    left: str  # the party whose table is the left one of the join
    protocol: str = PROTOCOLS[0]  # kkrt (OT extension, _kkrt_job) or ecdh (this module)
    version: int = VERSION

    def to_msg(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_against(self, theirs: dict[str, Any], *, me: str, peer: str, job: str) -> None:
        """Raise PsiError naming every setting whose values differ, with both parties' values."""
        diffs = []
        for f in dataclasses.fields(self):
            mine, other = getattr(self, f.name), theirs.get(f.name)
            if mine != other:
                what = "number of key columns" if f.name == "keys" else f.name
                diffs.append(f"{what}: {me} has {mine!r}, {peer} has {other!r}")
        if diffs:
            raise PsiError(f"PSI job {job!r}: the parties' settings differ: " + "; ".join(diffs))


class EcPool:
    """Runs :func:`blind_batch` in worker processes (or threads when ``workers == 0``).

    ``workers=None`` shares anyio's process pool (one worker per CPU) with every other job of
    this process; an int caps this job at that many concurrent workers.
    """

    def __init__(self, workers: int | None) -> None:
        self.threads = workers == 0
        self.limiter = anyio.CapacityLimiter(workers) if workers else None
        self.size = int(workers or anyio.to_process.current_default_process_limiter().total_tokens)

    async def blind(self, secret: bytes, points: bytes) -> bytes:
        if not points:
            return b""
        if self.threads:
            return await anyio.to_thread.run_sync(blind_batch, secret, points)
        try:
            return await anyio.to_process.run_sync(
                blind_batch, secret, points, limiter=self.limiter
            )
        except anyio.BrokenWorkerProcess as exc:
            raise PsiError(f"an elliptic-curve worker process died: {exc}{WORKER_HINT}") from exc

    async def blind_own(self, secret: bytes, key: bytes, sealed: bytes) -> bytes:
        """Open, hash to the group and blind our own sealed digests (:func:`blind_own_batch`)."""
        if not sealed:
            return b""
        if self.threads:
            return await anyio.to_thread.run_sync(blind_own_batch, secret, key, sealed)
        try:
            return await anyio.to_process.run_sync(
                blind_own_batch, secret, key, sealed, limiter=self.limiter
            )
        except anyio.BrokenWorkerProcess as exc:
            raise PsiError(f"an elliptic-curve worker process died: {exc}{WORKER_HINT}") from exc

    async def run(self, fn: Any, *args: Any) -> Any:
        """A long local function (preparation) in a worker process, or a thread."""
        if self.threads:
            return await anyio.to_thread.run_sync(fn, *args)
        try:
            return await anyio.to_process.run_sync(fn, *args, cancellable=True)
        except anyio.BrokenWorkerProcess as exc:
            raise PsiError(f"a PSI worker process died: {exc}{WORKER_HINT}") from exc


class Wire:
    """The job's three channels to the peer, with typed message checks."""

    def __init__(self, node: JobLink, peer: str, job: str) -> None:
        self.peer = peer
        self.job = job
        self.ctl = node.channel(peer, job, "ctl")
        self.s = node.channel(peer, job, "s")
        self.d = node.channel(peer, job, "d")

    async def send(self, t: str, **fields: Any) -> None:
        await self.ctl.send({"t": t, **fields})

    async def recv(self, t: str) -> dict[str, Any]:
        msg = await self.ctl.receive()
        if not isinstance(msg, dict) or msg.get("t") != t:
            raise PsiError(
                f"PSI job {self.job!r}: expected a {t!r} message from {self.peer!r}, "
                f"got {_short(msg)}"
            )
        return msg

    def bad(self, what: str) -> PsiError:
        return PsiError(f"PSI job {self.job!r}: malformed message from {self.peer!r}: {what}")


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) < 120 else text[:117] + "..."


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPlan:
    """Sizes of one party's stream: ``n`` positions in chunks of ``cs``."""

    n: int
    cs: int

    @property
    def chunks(self) -> int:
        return -(-self.n // self.cs)

    def size(self, c: int) -> int:
        return min(self.cs, self.n - c * self.cs)

    def items(self, chunks: Any) -> int:
        return sum(self.size(c) for c in chunks)


async def exchange(
    wire: Wire,
    ws: Workspace,
    files: PreparedFiles,
    pool: EcPool,
    secret: bytes,
    *,
    matcher: bool,
    mine: StreamPlan,
    theirs: StreamPlan,
    need_m: list[int],
    need_o: list[int],
    reporter: ProgressReporter,
) -> int:
    """Run the chunk streams (see the module doc); returns the EC operations done here.

    ``need_m`` / ``need_o`` are the chunks of M's / O's stream the matcher does not hold yet.
    """
    inflight = max(2, pool.size)
    own_need, peer_need = (need_m, need_o) if matcher else (need_o, need_m)
    count = [0]

    async def blind(points: bytes, own: bool = False) -> bytes:
        if own:
            out = await pool.blind_own(secret, files.prepared.seal_key, points)
        else:
            out = await pool.blind(secret, points)
        n = len(points) // POINT_BYTES
        count[0] += n
        reporter.advance(n)
        return out

    async def send_own() -> None:
        sem = anyio.Semaphore(inflight)

        async def one(c: int) -> None:
            try:
                start = c * mine.cs
                v = await blind(files.hashes(start, start + mine.size(c)), own=True)
                await wire.s.send({"c": c, "v": v})
            finally:
                sem.release()

        async with anyio.create_task_group() as tg:
            for c in own_need:
                await sem.acquire()
                tg.start_soon(one, c)

    async def take(ch: JobChannel, plan: StreamPlan, pending: set[int], width: int) -> tuple[int, bytes]:
        msg = await ch.receive()
        if not isinstance(msg, dict):
            raise wire.bad(f"expected a chunk, got {_short(msg)}")
        c, v = msg.get("c"), msg.get("v")
        if not isinstance(c, int) or c not in pending:
            raise wire.bad(f"unexpected chunk index {c!r}")
        if not isinstance(v, bytes) or len(v) != width * plan.size(c):
            raise wire.bad(f"chunk {c} has {len(v) if isinstance(v, bytes) else v!r} bytes")
        pending.discard(c)
        return c, v

    async def receive_peer() -> None:
        """S chunks of the peer's stream: M stores k_M*v, O returns k_O*v."""
        pending = set(peer_need)
        sem = anyio.Semaphore(inflight)

        async def one(c: int, v: bytes) -> None:
            try:
                try:
                    d = _truncate(await blind(v))
                except PsiError as exc:  # a low-order point: only a malformed message has one
                    raise wire.bad(f"chunk {c}: {exc}") from None
                if matcher:
                    await anyio.to_thread.run_sync(ws.write_chunk, "d_peer", c, d)
                else:
                    await wire.d.send({"c": c, "v": d})
            finally:
                sem.release()

        async with anyio.create_task_group() as tg:
            for _ in range(len(peer_need)):
                c, v = await take(wire.s, theirs, pending, POINT_BYTES)
                await sem.acquire()
                tg.start_soon(one, c, v)

    async def receive_returns() -> None:
        """M only: the double-blinded values of its own stream, returned by O."""
        pending = set(own_need)
        for _ in range(len(own_need)):
            c, v = await take(wire.d, mine, pending, D_BYTES)
            await anyio.to_thread.run_sync(ws.write_chunk, "d_own", c, v)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_own)
        tg.start_soon(receive_peer)
        if matcher:
            tg.start_soon(receive_returns)
    return count[0]


def _truncate(points: bytes) -> bytes:
    """The first D_BYTES of each 32-byte value (what matching compares)."""
    arr = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)
    return np.ascontiguousarray(arr[:, :D_BYTES]).tobytes()
