"""Shard runners: where the KKRT work of one shard of a PSI job runs (threads, worker processes).

Theory of operation
-------------------
A KKRT PSI job splits both parties' items into ``S`` shards by a keyed hash both parties agree
on (:mod:`._kkrt_job`); shard ``s`` of one party only meets shard ``s`` of the other, so the
shards are independent KKRT runs, each on its own channel of the one link (``kkrt<s>``). A
:class:`ShardRunner` runs one shard's sans-IO step (:func:`shard_step`, built from a picklable
:class:`ShardTask` whose items live in files) and relays its ``Exchange`` rounds over the
channel it is given. The runner decides *where* the step computes; the job decides nothing else:

- :class:`ThreadShards`: in this process, each round's numpy work in a worker thread.
- :class:`ProcessShards`: in a worker process per shard (``forkserver`` processes, so a start
  costs a fork, not an interpreter), the parent relaying rounds over a pipe, big arrays
  through shared memory (:mod:`._relay`). Both cores work
  on one job, and the Python parts of two shards do not share a GIL. The fork server imports
  this module (numpy, the OT code) once, when it starts; :func:`start_shard_server` starts it
  early, while the job prepares its input, so a shard's start costs a fork and no imports
  (importing ``mpcactors.psi`` in each shard process was ~0.5 CPU s per shard).

A distributed engine plugs in as another runner: a task is plain data (role, party names, file
paths, sizes), so a runner can ship the shard's item files to another machine, run
:func:`shard_step` there and relay its rounds back over the job's channel (or give the remote
worker a channel of its own); docs/PSI.md says more.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

import anyio
import anyio.to_thread
import numpy as np

from .._errors import PsiError
from ..link._abc import JobChannel
from ..ops._comm import Step
from ..ot._kkrt import KkrtBase
from ._kkrt import KkrtReceiverResult, KkrtSenderResult, psi_receive, psi_send
from ._kkrt_shell import Advance, drive_rounds, local_advance
from ._relay import MIN_ARRAY_BYTES, LaneNames, ShardLanes

__all__ = ["ProcessShards", "ShardRunner", "ShardTask", "ThreadShards", "shard_step", "start_shard_server"]

# what the fork server imports before it forks shard processes ("__main__" is multiprocessing's
# default: without it every child would re-run the main script)
_PRELOAD = ["__main__", __name__]


def start_shard_server() -> None:
    """Start the fork server of :class:`ProcessShards` with this module preloaded, and return
    once it has imported it (blocking: call it in a thread; cheap when it runs already).

    The preload list is the process's one forkserver setting; if some other code started the
    server first, shards still work, each importing what it needs.
    """
    global _server_ready
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    forkserver.ensure_running()
    if _server_ready:
        return
    # The server imports the preload list before it serves its first fork: one fork of a
    # process that does nothing returns after that import, so "started" means "ready" (a
    # caller that starts the server ahead of a job does not pay the import inside it).
    probe = ctx.Process(target=_ready_probe, daemon=True, name="mpcactors-psi-shard-probe")
    probe.start()
    probe.join(60.0)
    _server_ready = True


_server_ready = False


def _ready_probe() -> None:
    """The no-op child :func:`start_shard_server` forks to wait for the server's imports."""

ShardResult = KkrtReceiverResult | KkrtSenderResult


@dataclasses.dataclass(frozen=True, slots=True)
class ShardTask:
    """One shard of a KKRT job, as picklable values.

    Attributes:
        index: the shard's number (its channel is ``kkrt<index>``).
        receiver: True at the party that learns the intersection.
        peer: the other party's name.
        items_path: ``(n, 16)`` uint8 item hashes of this shard, a flat file.
        positions_path: ``(n,)`` little-endian uint32 stream positions of those items.
        peer_limit: the receiver's bound on the positions the sender reports (its input size).
        bases: the OT bases this node keeps for the peer (a shared one saves the base OTs).
    """

    index: int
    receiver: bool
    peer: str
    items_path: str
    positions_path: str
    peer_limit: int
    bases: tuple[KkrtBase, ...] = ()


def shard_step(task: ShardTask) -> Step[Any]:
    """The sans-IO KKRT step of ``task`` (loads its items from the files)."""
    items = np.fromfile(task.items_path, dtype=np.uint8).reshape(-1, 16)
    if task.receiver:
        return psi_receive(task.peer, items, peer_limit=task.peer_limit, bases=task.bases)
    positions = np.fromfile(task.positions_path, dtype="<u4")
    return psi_send(task.peer, items, positions=positions, bases=task.bases)


class ShardRunner(Protocol):
    """Runs one shard's KKRT step against the peer over ``channel``; returns its result.

    ``on_round`` is called after every round (progress). Errors: :class:`PsiError` for a
    malformed peer message or a failed worker; link errors pass through.
    """

    async def run(self, task: ShardTask, channel: JobChannel,
                  on_round: Callable[[], None] | None = None) -> ShardResult: ...


class ThreadShards:
    """Every shard in this process; the numpy work of each round in a worker thread."""

    async def run(self, task: ShardTask, channel: JobChannel,
                  on_round: Callable[[], None] | None = None) -> ShardResult:
        step = await anyio.to_thread.run_sync(shard_step, task)
        return await drive_rounds(local_advance(step), channel, task.peer, on_round)  # type: ignore[no-any-return]


class ProcessShards:
    """Each shard in a worker process of its own, for as long as the shard runs.

    No cap on concurrent processes here, on purpose: a shard holds its process while it waits
    for the peer, so a cap shared by concurrent jobs could deadlock two nodes (job A holding
    every slot here while waiting for its shard at the peer, where job B holds every slot). The
    job bounds its own shard count by the CPU count instead (``_kkrt_job.shard_count``).
    """

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")

    async def run(self, task: ShardTask, channel: JobChannel,
                  on_round: Callable[[], None] | None = None) -> ShardResult:
        await anyio.to_thread.run_sync(start_shard_server)
        lanes = ShardLanes.create(min_bytes=MIN_ARRAY_BYTES)
        here, there = self.context.Pipe()
        proc = self.context.Process(target=serve_shard, args=(there, task, lanes and lanes.names),
                                    daemon=True, name=f"mpcactors-psi-shard{task.index}")
        try:
            await anyio.to_thread.run_sync(proc.start)
        except BaseException:
            here.close()
            there.close()
            if lanes is not None:
                lanes.close()
            raise
        there.close()
        try:
            return await drive_rounds(_remote_advance(here, task, lanes), channel, task.peer,  # type: ignore[no-any-return]
                                      on_round, abandon_on_cancel=True)
        finally:
            here.close()
            if proc.is_alive():
                proc.kill()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(proc.join, 5.0)
            if lanes is not None:
                lanes.close()


def _remote_advance(conn: Connection, task: ShardTask, lanes: ShardLanes | None = None) -> Advance:
    """An ``Advance`` that forwards each reply to the shard's process and reads its next round
    (big arrays through the shared-memory ``lanes`` when there are some, see :mod:`._relay`)."""
    started = [False]

    def advance(reply: Any) -> tuple[bool, Any]:
        try:
            if started[0]:
                conn.send(lanes.to_child.pack(reply) if lanes is not None else reply)
            started[0] = True
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            raise PsiError(f"the worker process of KKRT shard {task.index} died: {exc!r}") from None
        if kind == "error":
            raise PsiError(f"KKRT shard {task.index}: {value}")
        return kind == "done", lanes.to_parent.unpack(value) if lanes is not None else value

    return advance


def serve_shard(conn: Connection, task: ShardTask, names: LaneNames | None = None) -> None:
    """A shard worker's main: run the step, one round per message pair with the parent."""
    lanes: ShardLanes | None = None
    try:
        lanes = ShardLanes.attach(names) if names is not None else None
        advance = local_advance(shard_step(task))
        reply: Any = None
        while True:
            done, value = advance(reply)
            if lanes is not None:
                value = lanes.to_parent.pack(value)
            conn.send(("done" if done else "round", value))
            if done:
                return
            reply = conn.recv()
            if lanes is not None:
                reply = lanes.to_child.unpack(reply)
    except (EOFError, BrokenPipeError):  # the parent went away (cancelled job): just stop
        return
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it typed
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        if lanes is not None:
            lanes.close()
        conn.close()
