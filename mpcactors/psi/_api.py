"""``run_psi``: one PSI job (KKRT or ECDH) between this node and one peer, from input to result.

Theory of operation
-------------------
A job is a sequence of phases (``_progress.PHASES``), each a function of the previous one's
files, which is what makes it resumable::

    check input -> hello (settings + checkpoint offer) -> prepare (or reuse) -> ready
      -> exchange: ECDH chunk streams (skipping chunks the checkpoint holds), or KKRT shards
         (skipped when the matcher's checkpoint holds the pairs) -> match / align / write
      -> fin -> rename output into place, delete checkpoint

Both protocols share everything but the exchange: preparation, the ``ready`` sizes, the
matching groups ``(own positions, peer positions)``, alignment, joins and output.

Any number of jobs run at once on one node: a job touches only its own channels (addressed by
its job id), its own folder and the shared worker pool, so jobs never read each other's messages
(the failure of SPU's per-context message counter, secretflow#1818). A job that fails aborts
itself at the peer (``node.abort_job``) so the peer fails fast with the cause instead of waiting;
its temp output is removed, its checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from cryptography.hazmat.primitives import hashes

from .._errors import JobAborted, MpcError, PeerLost, PsiError, PsiInputError
from .._log import get_logger
from ..link._abc import JobLink
from ._checkpoint import Workspace, resume_agreed
from ._csvjoin import OutputSink, matcher_result, other_result
from ._ecdh import new_secret
from ._kkrt_job import (
    MAX_SHARDS,
    SHARD_MIN_ITEMS,
    has_pairs,
    kkrt_exchange,
    load_pairs,
    shard_count,
)
from ._match import GROUP_TARGET, match_group, n_groups, partition
from ._prepare import Prepared, PreparedFiles, prepare
from ._progress import ProgressReporter, PsiProgress
from ._protocol import JOINS, PROTOCOLS, EcPool, PsiSettings, StreamPlan, Wire, exchange
from ._shards import ProcessShards, ShardRunner, ThreadShards, start_shard_server
from ._source import CsvSpec, open_source

__all__ = ["DEFAULT_CHUNK_SIZE", "PsiResult", "run_psi"]

DEFAULT_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class PsiResult:
    """What one party gets from a PSI job.

    Attributes:
        job, party, peer, receiver, join: the job's identity and settings.
        own_rows: data rows of this party's input; own_keys / peer_keys: distinct keys.
        intersection: distinct keys in common, or None at a party that gets no result.
        rows: rows of this party's output (see docs/PSI.md for what they hold), or None.
        ids: with ``ids=`` input: this party's output as a list (None in rows that come from the
            other side only), else None.
        output: the CSV written, or None.
        resumed: True when the job continued from a checkpoint.
        ec_ops: X25519 operations this run performed (fewer than own_keys + peer_keys when
            resumed; 0 with KKRT).
        seconds: wall time of the job at this party.
        protocol: "kkrt" or "ecdh".
        oprf_rows: KKRT OPRF rows (cuckoo bins) this run computed (0 with ECDH, or when a
            resumed job's checkpoint held the exchange's result).
        shards: KKRT shards the exchange ran in (0 with ECDH or when skipped).
        bytes_sent: payload bytes of the exchange this party sent (KKRT; 0 with ECDH).
    """

    job: str
    party: str
    peer: str
    receiver: str | None
    join: str
    own_rows: int
    own_keys: int
    peer_keys: int
    intersection: int | None
    rows: int | None
    ids: list[Any] | None
    output: Path | None
    resumed: bool
    ec_ops: int
    seconds: float
    protocol: str = PROTOCOLS[0]
    oprf_rows: int = 0
    shards: int = 0
    bytes_sent: int = 0


async def run_psi(
    node: JobLink,
    *,
    peer: str,
    job: str,
    ids: Sequence[str | bytes] | None = None,
    input: str | os.PathLike[str] | None = None,
    keys: str | Sequence[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    receiver: str | None = None,
    join: str = "inner",
    progress: Callable[[PsiProgress], Any] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
    left: str | None = None,
    start_timeout: float = 60.0,
    protocol: str = PROTOCOLS[0],
) -> PsiResult:
    """Run one PSI job with ``peer`` (both parties call this with the same job id).

    Args:
        node: an open node (``mpcactors.link.open_node``).
        peer: the other party's name.
        job: the job id, the same at both parties and unique among concurrent jobs.
        ids: this party's ids (str or bytes) -- or:
        input: a CSV file with a header, and keys: its key column names (``"a,b"`` or a list).
        output: write this party's output CSV here (temp file, renamed when complete).
        receiver: the party that gets the result, or None for both.
        join: inner, left, right, full or difference (see docs/PSI.md for each party's output).
        progress: called with :class:`PsiProgress` events (in the event loop; must not block).
        checkpoint_dir: keep resumable state here; rerun with the same job id after a crash.
        chunk_size: ECDH: ids per streamed chunk (memory and progress granularity).
        workers: worker processes: None uses one per CPU (ECDH: shared with all jobs; KKRT: a
            large job runs that many shards in worker processes); 0 runs in threads.
        left: the party whose table is the left one (default: the name that sorts first).
        start_timeout: seconds to wait for the peer to start the same job.
        protocol: "kkrt" (default: OT-extension PSI, Kolesnikov et al. CCS 2016) or "ecdh"
            (X25519 Diffie-Hellman PSI); both parties must choose the same.

    Returns:
        A :class:`PsiResult`.

    Raises:
        PsiError: bad arguments or input, settings that differ between the parties, a peer that
            does not start the job within ``start_timeout``, a malformed peer message.
        JobAborted: the peer's side of the job failed (its cause is in the message).
        PeerLost, PeerUnavailable: the link to the peer failed.
    """
    me = node.party
    if peer == me or peer not in tuple(node.peers):
        raise PsiError(f"peer {peer!r} is not another party of this node ({me!r}): {list(node.peers)}")
    if join not in JOINS:
        raise PsiError(f"join must be one of {list(JOINS)}, not {join!r}")
    if receiver not in (None, me, peer):
        raise PsiError(f"receiver must be {me!r}, {peer!r} or None (both), not {receiver!r}")
    if receiver is not None and join in ("left", "right", "full"):
        raise PsiError(f"join {join!r} aligns both parties' outputs: it needs receiver=None")
    if left not in (None, me, peer):
        raise PsiError(f"left must be {me!r} or {peer!r}, not {left!r}")
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise PsiError(f"chunk_size must be an int in [1, {MAX_CHUNK_SIZE}], not {chunk_size!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise PsiError(f"workers must be None or an int >= 0, not {workers!r}")
    if protocol not in PROTOCOLS:
        raise PsiError(f"protocol must be one of {list(PROTOCOLS)}, not {protocol!r}")
    spec = open_source(ids, input, keys)
    out_path = Path(output) if output is not None else None
    if out_path is not None and not out_path.parent.is_dir():
        raise PsiError(f"output folder {str(out_path.parent)!r} does not exist")
    if out_path is not None and isinstance(spec, CsvSpec) and out_path.resolve() == Path(spec.path).resolve():
        raise PsiError(f"output {str(out_path)!r} would overwrite the input")
    settings = PsiSettings(
        keys=spec.n_keys, join=join, receiver=receiver, left=left or min(me, peer),
        protocol=protocol,
    )
    job_ctx = _Job(node, me, peer, job, spec, settings, out_path, progress, checkpoint_dir,
                   chunk_size, workers, start_timeout)
    return await job_ctx.run()


@dataclasses.dataclass(frozen=True, slots=True)
class _Ready:
    """KKRT's part of the agreed ``ready``: the matcher holds the pairs; the shard count."""

    pairs: bool
    shards: int


class _Job:
    """The state of one run of one job at this party (see the module doc for the phases)."""

    def __init__(self, node: JobLink, me: str, peer: str, job: str, spec: Any, settings: PsiSettings,
                 out_path: Path | None, progress: Any, checkpoint_dir: Any, chunk_size: int,
                 workers: int | None, start_timeout: float) -> None:
        self.node, self.me, self.peer, self.job = node, me, peer, job
        self.spec, self.settings, self.out_path = spec, settings, out_path
        self.checkpoint_dir, self.chunk_size, self.workers = checkpoint_dir, chunk_size, workers
        self.start_timeout = start_timeout
        self.reporter = ProgressReporter(job, me, progress)
        self.log = get_logger(party=me, peer=peer, job=job, op="psi")
        self.matcher = (settings.receiver or min(me, peer)) == me
        self.gets_result = settings.receiver in (None, me)

    async def run(self) -> PsiResult:
        t0 = time.monotonic()
        ws = Workspace(self.checkpoint_dir, self.job, self.me)
        sink: OutputSink | None = None
        ok = False
        try:
            wire = Wire(self.node, self.peer, self.job)
            self.reporter.start("handshake")
            header = await anyio.to_thread.run_sync(self.spec.check)
            fingerprint = (
                await anyio.to_thread.run_sync(self.spec.fingerprint) if ws.persistent else None
            )
            manifest, resumed = await self._hello(wire, ws, fingerprint)
            pool = EcPool(self.workers)
            kkrt = self.settings.protocol == "kkrt"
            async with anyio.create_task_group() as tg:
                if kkrt and not pool.threads and self.spec.estimate_rows() >= SHARD_MIN_ITEMS:
                    # the shard processes' fork server imports while the input is prepared
                    tg.start_soon(anyio.to_thread.run_sync, start_shard_server)
                prepared = await self._prepare(ws, manifest, pool)
            files = PreparedFiles(ws.prep_dir, prepared)
            if tuple(prepared.header) != tuple(header):
                raise PsiError(f"the header of {self.spec.path!r} changed since the checkpoint")
            mine = StreamPlan(prepared.n_unique, int(manifest["chunk_size"]))
            prefer = shard_count(mine.n, pool.size) if kkrt and not pool.threads else 1
            theirs, need_m, need_o, ready = await self._ready(wire, ws, manifest, mine, resumed, prefer)
            plan_m, plan_o = (mine, theirs) if self.matcher else (theirs, mine)
            total = mine.n + theirs.n
            ec_ops = oprf_rows = shards = sent = 0
            if kkrt:
                # An empty side has an empty intersection: no exchange at all.
                skip = ready.pairs or mine.n == 0 or theirs.n == 0
                self.reporter.start("exchange", total=total, done=total if skip else 0)
                if not skip:
                    shards = ready.shards
                    outcome = await kkrt_exchange(
                        self.node, ws, files, self._runner(pool, mine.n, theirs.n), peer=self.peer,
                        job=self.job, session=manifest["session"], shards=shards,
                        matcher=self.matcher, n_own=mine.n, n_peer=theirs.n, reporter=self.reporter,
                    )
                    oprf_rows, sent = outcome.oprf_rows, outcome.bytes_sent
            else:
                done = total - plan_m.items(need_m) - plan_o.items(need_o)
                self.reporter.start("exchange", total=total, done=done)
                ec_ops = await exchange(wire, ws, files, pool, bytes.fromhex(manifest["secret"]),
                                        matcher=self.matcher, mine=mine, theirs=theirs,
                                        need_m=need_m, need_o=need_o, reporter=self.reporter)
            if self.gets_result:  # (without an output path a CSV job only counts its rows)
                sink = OutputSink(self.spec, files, self.out_path, header)
            inter: int | None = None
            left = self.settings.left == self.me
            both = self.settings.receiver is None
            if self.matcher:
                self.reporter.start("match")
                groups = self._pairs(ws) if kkrt else self._groups(ws, mine, theirs)
                inter = await matcher_result(wire, files, sink, groups,
                                             both=both, join=self.settings.join, left=left)
            elif both and sink is not None:  # (result to both: this party has a sink)
                self.reporter.start("output")
                inter = await other_result(wire, files, sink, join=self.settings.join, left=left)
            await wire.send("fin")
            try:
                await wire.recv("fin")  # the peer got everything we sent: now we may close
            except PeerLost as exc:
                # Everything this party needs has arrived and its output is complete; only the
                # peer's confirmation is missing (the peer may have closed its node before its
                # "fin" got through). Our result stands; the peer's side reports its own.
                self.log.warning("psi.peer_left_at_fin", error=str(exc))
            output = sink.commit() if sink is not None else None
            ok = True
            self.reporter.start("done")
            result = PsiResult(
                job=self.job, party=self.me, peer=self.peer, receiver=self.settings.receiver,
                join=self.settings.join, own_rows=prepared.n_rows, own_keys=mine.n,
                peer_keys=theirs.n, intersection=inter if self.gets_result else None,
                rows=sink.rows if sink is not None else None,
                ids=sink.ids if sink is not None else None, output=output, resumed=resumed,
                ec_ops=ec_ops, seconds=time.monotonic() - t0, protocol=self.settings.protocol,
                oprf_rows=oprf_rows, shards=shards, bytes_sent=sent,
            )
            self.log.info("psi.done", intersection=result.intersection, rows=result.rows,
                          resumed=resumed, ec_ops=ec_ops, protocol=self.settings.protocol,
                          oprf_rows=oprf_rows, shards=shards, seconds=round(result.seconds, 3))
            return result
        except BaseException as exc:
            if sink is not None:
                sink.discard()
            error = _plain(exc)
            await self._abort(error)
            if error is exc:
                raise
            raise error from exc
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled job still cleans up
                if ok or not ws.persistent:
                    await anyio.to_thread.run_sync(ws.remove)
                await _maybe_await(getattr(self.node, "close_job", None), self.job)

    async def _hello(self, wire: Wire, ws: Workspace, fingerprint: str | None) -> tuple[dict[str, Any], bool]:
        """Exchange and check settings; decide resume vs fresh; returns (manifest, resumed)."""
        manifest = ws.load_manifest() if ws.persistent else None
        settings = self.settings.to_msg()
        if manifest is not None and not (
            manifest.get("job") == self.job and manifest.get("party") == self.me
            and manifest.get("peer") == self.peer and manifest.get("settings") == settings
            and manifest.get("fingerprint") == fingerprint and manifest.get("session")
        ):
            manifest = None
        offer = manifest["session"] if manifest is not None else None
        nonce = os.urandom(16).hex()
        try:
            with anyio.move_on_after(self.start_timeout) as scope:
                await wire.send("hello", party=self.me, job=self.job, settings=settings,
                                session=offer, nonce=nonce)
                theirs = await wire.recv("hello")
        except JobAborted as exc:
            if exc.party != self.me:
                raise
            # Our own link refused the job before we said anything: the id was used here.
            raise PsiError(
                f"job id {self.job!r} was already used on this node: a job id names one run "
                "(the link keeps closed jobs closed). Use a new job id; to resume from a "
                "checkpoint, rerun both parties with this id on fresh nodes (e.g. restarted "
                "processes)"
            ) from exc
        if scope.cancelled_caught:
            raise PsiError(
                f"peer {self.peer!r} did not start PSI job {self.job!r} within "
                f"{self.start_timeout:g} s"
            )
        their_settings = theirs.get("settings")
        if not isinstance(their_settings, dict) or not isinstance(theirs.get("nonce"), str):
            raise wire.bad(f"hello without settings: {theirs!r:.100}")
        self.settings.check_against(their_settings, me=self.me, peer=self.peer, job=self.job)
        if resume_agreed(offer, theirs.get("session")) and manifest is not None:
            self.log.info("psi.resume", session=offer)
            return manifest, True
        if ws.persistent:
            await anyio.to_thread.run_sync(ws.reset)
        h = hashes.Hash(hashes.SHA256())
        for n in sorted([nonce, theirs["nonce"]]):
            h.update(n.encode())
        manifest = {
            "job": self.job, "party": self.me, "peer": self.peer, "settings": settings,
            "fingerprint": fingerprint, "session": h.finalize().hex()[:32],
            "secret": new_secret().hex(), "seed": os.urandom(32).hex(),
            "chunk_size": self.chunk_size, "prepared": None, "peer_plan": None,
        }
        ws.save_manifest(manifest)
        return manifest, False

    async def _prepare(self, ws: Workspace, manifest: dict[str, Any], pool: EcPool) -> Prepared:
        if manifest.get("prepared"):
            return Prepared.from_json(manifest["prepared"])
        self.reporter.start("prepare")
        seed = bytes.fromhex(manifest["seed"])
        if isinstance(self.spec, CsvSpec):
            prepared = await pool.run(prepare, self.spec, str(ws.prep_dir), seed)
        else:
            prepared = await anyio.to_thread.run_sync(prepare, self.spec, str(ws.prep_dir), seed)
        manifest["prepared"] = prepared.to_json()
        ws.save_manifest(manifest)
        return prepared

    async def _ready(self, wire: Wire, ws: Workspace, manifest: dict[str, Any], mine: StreamPlan,
                     resumed: bool, prefer: int) -> tuple[StreamPlan, list[int], list[int], _Ready]:
        """Exchange stream sizes (and, from the matcher, the chunks it holds; with KKRT whether
        it holds the exchange's pairs, and each party's preferred shard count)."""
        have_m: Any = []
        have_o: Any = []
        pairs = False
        if self.matcher and resumed:
            have_m = sorted(ws.chunks_present("d_own"))
            have_o = sorted(ws.chunks_present("d_peer"))
            pairs = has_pairs(ws)
        await wire.send("ready", n=mine.n, cs=mine.cs, have_m=have_m, have_o=have_o,
                        pairs=pairs, shards=prefer)
        msg = await wire.recv("ready")
        n, cs = msg.get("n"), msg.get("cs")
        if not isinstance(n, int) or n < 0 or not isinstance(cs, int) or not 1 <= cs <= MAX_CHUNK_SIZE:
            raise wire.bad(f"ready with n={n!r}, cs={cs!r}")
        their_pairs, their_shards = msg.get("pairs", False), msg.get("shards", 1)
        if not isinstance(their_pairs, bool) or (their_pairs and self.matcher):
            raise wire.bad(f"ready.pairs={their_pairs!r}")
        if not isinstance(their_shards, int) or isinstance(their_shards, bool) or not 1 <= their_shards <= MAX_SHARDS:
            raise wire.bad(f"ready.shards={their_shards!r} is not in [1, {MAX_SHARDS}]")
        ready = _Ready(pairs or their_pairs, max(prefer, their_shards))
        theirs = StreamPlan(n, cs)
        stored = manifest.get("peer_plan")
        if resumed and stored is not None and stored != [n, cs]:
            raise PsiError(f"PSI job {self.job!r}: {self.peer!r}'s input changed since the checkpoint")
        manifest["peer_plan"] = [n, cs]
        ws.save_manifest(manifest)
        if not self.matcher:
            have_m, have_o = msg.get("have_m"), msg.get("have_o")
            plan_m, plan_o = theirs, mine
        else:
            plan_m, plan_o = mine, theirs
        for name, have, plan in (("have_m", have_m, plan_m), ("have_o", have_o, plan_o)):
            if not isinstance(have, list) or any(
                not isinstance(c, int) or not 0 <= c < plan.chunks for c in have
            ):
                raise wire.bad(f"ready.{name} is not a list of chunk indices")
        need_m = sorted(set(range(plan_m.chunks)) - set(have_m))
        need_o = sorted(set(range(plan_o.chunks)) - set(have_o))
        return theirs, need_m, need_o, ready

    def _runner(self, pool: EcPool, n_own: int, n_peer: int) -> ShardRunner:
        """Threads for small jobs and ``workers=0``; worker processes otherwise."""
        if pool.threads or max(n_own, n_peer) < SHARD_MIN_ITEMS:
            return ThreadShards()
        return ProcessShards()

    async def _pairs(self, ws: Workspace) -> AsyncIterator[Any]:
        """KKRT: the stored pairs as ``(own_pos, peer_pos, last)`` groups (at least one)."""
        if has_pairs(ws):
            own, peer = await anyio.to_thread.run_sync(load_pairs, ws)
        else:  # an empty side: nothing in common
            own = peer = np.empty(0, dtype=np.int64)
        self.reporter.start("output")
        n = len(own)
        for s in range(0, max(n, 1), GROUP_TARGET):
            yield own[s : s + GROUP_TARGET], peer[s : s + GROUP_TARGET], s + GROUP_TARGET >= n

    async def _groups(self, ws: Workspace, mine: StreamPlan, theirs: StreamPlan) -> AsyncIterator[Any]:
        """Yield ``(own_pos, peer_pos, last)`` per group (files work in a thread)."""
        groups = n_groups(mine.n, theirs.n)
        own_dir = await anyio.to_thread.run_sync(partition, ws, "d_own", mine.n, mine.cs, groups)
        peer_dir = await anyio.to_thread.run_sync(partition, ws, "d_peer", theirs.n, theirs.cs, groups)
        self.reporter.start("output")
        for g in range(groups):
            own_pos, peer_pos = await anyio.to_thread.run_sync(match_group, own_dir, peer_dir, g)
            yield own_pos, peer_pos, g == groups - 1

    async def _abort(self, exc: BaseException) -> None:
        if isinstance(exc, (JobAborted, PeerLost)):
            return
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.log.warning("psi.failed", error=reason)
        if isinstance(exc, (PsiInputError, OSError, UnicodeError)):
            # our file names, headers and columns stay here: the peer learns the kind only
            reason = f"{type(exc).__name__}: the input at {self.me!r} is not usable (the details stay there)"
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await _maybe_await(getattr(self.node, "abort_job", None), self.job, reason)


def _plain(exc: BaseException) -> BaseException:
    """The one error a user should see for an exception group from the job's task groups.

    A group whose leaves are all ``Exception`` (no cancellation, no KeyboardInterrupt) becomes
    its first :class:`MpcError` leaf (else its first leaf); anything else is left as it is.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    if not leaves or not all(isinstance(e, Exception) for e in leaves):
        return exc
    for e in leaves:
        if isinstance(e, MpcError):
            return e
    return leaves[0]


async def _maybe_await(fn: Any, *args: Any) -> None:
    """Call a node method that may be sync or async (best effort: errors are logged)."""
    if fn is None:
        return
    try:
        res = fn(*args)
        if inspect.isawaitable(res):
            await res
    except Exception as exc:  # noqa: BLE001 - cleanup must not mask the job's own outcome
        get_logger().debug("psi.cleanup_failed", call=getattr(fn, "__name__", "?"), error=repr(exc))
