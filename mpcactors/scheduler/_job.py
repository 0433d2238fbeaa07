"""The program-facing job: ``job.input``, ``await job.reveal``, ``job.statistics()``.

Theory of operation
-------------------
A program is ``async def program(job)``; every party runs it. ``job.input(owner, value)`` adds an
input op whose value (or loader callable) is used only at ``owner``; secret tensor operations add
ops; ``await job.reveal(x)`` adds a reveal op and waits for it. Ops are submitted to the node's
executor the moment they are created, so independent work overlaps without being asked.

Op 0 of every job is its set-up: in one round the parties check that they run the same job
(protocol, parties, dealer, fixed-point bits, program) and agree fresh pairwise PRG seeds with
X25519. Every other op depends on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import numpy as np

from .._errors import JobError
from .._pytree import flatten, unflatten
from ..link._abc import JobLink
from ..ops._comm import Exchange, Step, gather
from ..ops._protocol import Protocol, Share
from ..ops._ring import decode
from ._executor import Executor, JobState, JobStatistics, PeerJobStatistics
from ._fingerprint import end_fingerprint
from ._graph import LOADER_COST, OpNode
from ._input import InputTree, SecretInput, bare_step, encode_input, is_bare
from ._tensor import SecretTensor, encode_public

__all__ = ["Job", "JobSettings"]


@dataclasses.dataclass(frozen=True, slots=True)
class JobSettings:
    """What every party of a job must agree on (checked in the set-up round)."""

    job: str
    protocol: str
    parties: tuple[str, ...]
    dealer: str | None
    fxp_bits: int
    program: str
    softspoken_k: int | None = None  # semi2k without a dealer: the OT extension's bits per small VOLE
    matrix_triples: str | None = None  # semi2k without a dealer: "ot", "he" or "auto" (TenSEAL here)
    mul_triples: str | None = None  # the same for elementwise triples

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "protocol": self.protocol,
            "parties": list(self.parties),
            "dealer": self.dealer,
            "fxp_bits": self.fxp_bits,
            "program": self.program,
            "softspoken_k": self.softspoken_k,
            "matrix_triples": self.matrix_triples,
            "mul_triples": self.mul_triples,
        }


def _check_settings(party: str, peers: Sequence[str], settings: JobSettings) -> Step[None]:
    mine = settings.as_dict()
    got = yield Exchange(send={p: mine for p in peers}, recv=frozenset(peers))
    for peer in peers:
        theirs = got[peer]
        if not isinstance(theirs, Mapping):
            raise JobError(f"party {peer!r} sent malformed job settings", job=settings.job)
        diff = {k: (mine[k], theirs.get(k)) for k in mine if theirs.get(k) != mine[k]}
        if diff:
            detail = ", ".join(f"{k}: {party}={a!r} vs {peer}={b!r}" for k, (a, b) in diff.items())
            raise JobError(f"job {settings.job!r}: parties disagree on {detail}", job=settings.job)


# The secure aggregation a job's secure_sum runs (``secagg.secure_sum``), given by whoever opens
# the job (the runtime): the scheduler does not import secagg, a job of its own over the link.
SecureSum = Callable[..., Awaitable[Any]]

class Job:
    """What a program sees of its job (see module doc). Made by ``node.run`` / ``simulate``."""

    check_ranges = False  # node.run(check_ranges=True): products are checked (development aid)

    def __init__(
        self,
        state: JobState,
        executor: Executor,
        link: JobLink,
        settings: JobSettings,
        aggregate: SecureSum | None = None,
    ) -> None:
        self._state = state
        self._executor = executor
        self._link = link
        self._settings = settings
        self._aggregate = aggregate
        self._aggregations = 0  # secure_sum calls so far: each gets its own channel tag
        self._setup = self._add_setup()

    # ---- identity ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._state.id

    @property
    def party(self) -> str:
        return self._state.party

    @property
    def parties(self) -> tuple[str, ...]:
        return self._state.parties

    @property
    def protocol(self) -> Protocol:
        return self._state.protocol

    @property
    def fxp_bits(self) -> int:
        return self._state.protocol.fxp_bits

    @property
    def holders(self) -> tuple[str, ...]:
        """The parties holding shares (all but a dealer)."""
        return self._state.protocol.holders

    @property
    def link(self) -> JobLink:
        """The node's link (channels for custom protocols: ``job.link.channel(peer, job.id, name)``)."""
        return self._link

    # ---- graph building ----------------------------------------------------------------------
    def _add_setup(self) -> OpNode:
        from ..ops._seeds import agree_seeds

        state = self._state
        settings = self._settings

        def setup(ctx: Any, ins: list[Any]) -> Any:
            steps = [
                _check_settings(state.party, state.peers, settings),
                agree_seeds(state.party, state.parties, state.id.encode()),
            ]
            extra = state.protocol.job_setup(ctx, state.id.encode())  # e.g. semi2k's base OTs
            if extra is not None:
                steps.append(extra)
            _, seeds, *_ = yield from gather(steps)
            state.seeds = seeds
            return None

        node = state.graph.add("setup", [], setup)
        return self._executor.submit(node)

    def op(
        self,
        name: str,
        inputs: Sequence[SecretTensor],
        factory: Callable[[Any, list[Share]], Any],
        shape: tuple[int, ...] | None,
        fxp: bool,
        prepare: Callable[[Any], Any] | None = None,
        public: bool | None = None,
    ) -> SecretTensor:
        """Add an op over ``inputs`` (secret tensors of this job); used by the op builders.

        ``prepare(ctx)``: a step that makes the op's correlations from shapes alone
        (``Semi2k.prepare``). It becomes an op of its own that runs ahead while the inputs are
        still being computed (its rounds merge with theirs): it waits for the ops
        :data:`PREPARE_AHEAD` inputs above the op's inputs, so it starts that many ops before
        its product could, and a long program does not hold every product's correlations at
        once.
        Its result is the op's last input.

        ``public``: whether every party knows ``shape`` here (default: when every input's shape
        is public, ``SecretTensor.public_shape``); builders that decide on shapes use only those.
        """
        nodes = [t.node for t in inputs] or [self._setup]
        if prepare is not None:
            after = _ancestors(nodes, PREPARE_AHEAD)
            prep = self._state.graph.add(name + ".prepare", after, lambda ctx, ins: prepare(ctx), _cost(shape, inputs))
            self._executor.submit(prep)
            nodes = nodes + [prep]
        node = self._state.graph.add(name, nodes, factory, _cost(shape, inputs))
        node.detail = "fxp" if fxp else "int"
        self._executor.submit(node)
        if public is None:
            public = all(t.public for t in inputs)
        return SecretTensor(self, node, shape, fxp, public)

    def input(
        self,
        owner: str,
        value: Any,
        *,
        dtype: Any = None,
        shape: Sequence[int] | None = None,
        binary: bool = False,
    ) -> SecretInput:
        """Secret-share a value that only ``owner`` knows: an array, or a pytree of them.

        Args:
            owner: the party whose value it is.
            value: an array-like or number, or a pytree of them (nested dicts, lists, tuples),
                or a callable returning one; a callable runs only at the owner (e.g. ``lambda:
                np.load("x.npy")``). Ignored at other parties.
            dtype: ``float`` (a fixed-point real) or ``int`` (an integer; products with it are
                not truncated), for every leaf; every party must pass the same. Default: a bare
                array is fixed point; in a pytree, integer and bool leaves are integers and
                float leaves fixed point (the owner's kinds travel with the structure).
            shape: optional, for a bare array: lets other parties use ``x.shape`` before the
                value arrives, and is checked at the owner.
            binary: the owner declares that every element of every leaf is 0 or 1 (0/1
                labels, one-hot classes, masks), checked at the owner; every party must pass
                the same. A public fact, like the shape: the value stays secret, but the
                parties learn that it is binary. ``mpcactors.jit`` uses it to split an
                expression into its two cases (docs/JIT.md): the guide's logistic regression
                then needs no secure division. Tensors made from it do not carry it.

        Returns:
            A :class:`SecretInput`: a SecretTensor usable at once when the value is a bare
            array. ``await`` it for the value's pytree of SecretTensors (the SecretTensor
            itself for a bare array) with every leaf's shape known at every party: the owner
            sends the structure and all leaf shapes once, in the round that shares the values.

        Raises:
            ValueError: ``owner`` is not a party of the job.
            TypeError (at the owner, aborting the job): a leaf is not numeric; the error names
                its path, e.g. ``[0]["name"]``.
            ValueError (at the owner, aborting the job): ``binary=True`` and a leaf holds a value
                other than 0 and 1; the error names the leaf, the index and the value.
        """
        if owner not in self.parties:
            raise ValueError(f"input owner {owner!r} is not a party of job {self.id!r}: {list(self.parties)}")
        declared_kind = None if dtype is None else ("i" if np.dtype(dtype).kind in "biu" else "f")
        fxp = declared_kind != "i"
        declared = tuple(int(s) for s in shape) if shape is not None else None
        proto = self.protocol
        bits = self.fxp_bits
        is_owner = self.party == owner
        others = [p for p in self.parties if p != owner]

        def send_spec(spec: dict[str, Any]) -> Step[None]:
            yield Exchange(send={p: spec for p in others})

        def recv_spec() -> Step[Any]:
            got = yield Exchange(recv=frozenset({owner}))
            return got[owner]

        def step(ctx: Any, ins: list[Any]) -> Any:
            ring = None
            if is_owner:
                raw = value() if callable(value) else value
                spec, ring = encode_input(owner, raw, declared_kind, declared, bits, binary)
                _, share = yield from gather([send_spec(spec), proto.share(ctx, owner, ring, ring.shape)])
            else:
                spec, share = yield from gather([recv_spec(), proto.share(ctx, owner, None, None)])
            return InputTree.decode(owner, spec, share, declared, declared_kind)

        raw_node = self.op(f"input[{owner}]", [], step, None, fxp)
        if is_owner and not callable(value) and is_bare(value):
            known: tuple[int, ...] | None = np.shape(value)
        else:
            known = declared
        # a loader is user code (a file parse), and a value of unknown size may be big (its
        # shares come from a PRG): both step off the event loop; known sizes decide as usual
        raw_node.node.cost = LOADER_COST if callable(value) or known is None else _cost(known, [])
        bare = self.op(f"input[{owner}]", [raw_node], bare_step, known, fxp)
        return SecretInput(self, bare.node, known, fxp, raw_node, owner, bool(binary), declared is not None)

    def constant(self, value: Any, *, fxp: bool | None = None) -> SecretTensor:
        """A public value as a (trivially shared) secret tensor."""
        arr = np.asarray(value)
        if fxp is None:
            fxp = arr.dtype.kind == "f"
        ring = encode_public(arr, fxp, self.fxp_bits)
        proto = self.protocol
        return self.op("constant", [], lambda ctx, ins: proto.public(ring), ring.shape, fxp)

    # ---- running -----------------------------------------------------------------------------
    async def wait(self, node: OpNode) -> Any:
        return await self._executor.wait(node)

    async def reveal(self, x: Any, to: str | None = None) -> Any:
        """Open the secret tensors of a pytree ``x`` (a tensor, or nested dicts, lists and
        tuples of them) to all parties or to ``to``.

        All tensors passed at once are opened concurrently (one round). Returns the same
        structure with numpy arrays (float64 for fixed point, int64 for integers) where revealed,
        None at parties that get nothing; other leaves (public values) pass through unchanged.
        A pytree input not yet awaited is opened whole.
        """
        if to is not None and to not in self.parties:
            raise ValueError(f"reveal to {to!r}: not a party of job {self.id!r}")
        leaves, treedef = flatten(x)
        if any(isinstance(v, SecretInput) for v in leaves):
            leaves, treedef = flatten(unflatten(treedef, [await v if isinstance(v, SecretInput) else v for v in leaves]))
        nodes = [self._reveal_op(v, to) if isinstance(v, SecretTensor) else None for v in leaves]
        values = [v if n is None else await self._executor.wait(n) for v, n in zip(leaves, nodes, strict=True)]
        return unflatten(treedef, values)

    def _reveal_op(self, x: SecretTensor, to: str | None) -> OpNode:
        proto = self.protocol
        f = self.fxp_bits if x.fxp else 0

        def step(ctx: Any, ins: list[Share]) -> Any:
            ring = yield from proto.reveal(ctx, ins[0], to)
            return None if ring is None else decode(ring, f)

        node = self._state.graph.add("reveal", [x.node], step, _cost(x.known_shape, [x]))
        node.detail = f"to {to}" if to is not None else "to all"
        return self._executor.submit(node)

    async def drain(self) -> None:
        """Wait until every op of the job has finished (peers may need their messages)."""
        while self._state.unfinished:
            await self._state.idle.wait()
            await anyio.lowlevel.checkpoint()

    async def finish(self) -> None:
        """The job's last round: every party ran as many ops as we did, and the same ones.

        Its fingerprint carries the op count and a digest of every op's fingerprint, so a party
        with an extra op (or one fewer) aborts the job everywhere before anyone returns.
        """
        state = self._state
        if not state.peers:
            return
        peers = frozenset(state.peers)

        def end(ctx: Any, ins: list[Any]) -> Step[None]:
            # Nothing goes to a peer whose link has ended. It is still expected: its message may
            # be here already (it finished, then closed its node); if not, the executor stops
            # waiting for it (Executor._end_without_gone), so a crashed party that the program
            # carried on without (a dropped FL client) does not fail the job at its end.
            yield Exchange(send={p: None for p in peers if p not in state.gone}, recv=peers)

        nodes = list(state.graph.nodes)
        node = state.graph.add("end", [], end)
        node.fingerprint = end_fingerprint(nodes)
        await self._executor.wait(self._executor.submit(node))

    def statistics(self) -> JobStatistics:
        """Rounds, frames and bytes this job has sent so far, in total and per peer."""
        state = self._state
        link_stats = self._link.statistics()
        peers: dict[str, PeerJobStatistics] = {}
        total_bytes = total_frames = total_queued = 0
        for peer in state.peers:
            js = _job_link_stats(link_stats, peer, state.id)
            b = getattr(js, "bytes_sent", 0) if js is not None else 0
            fr = getattr(js, "frames_sent", 0) if js is not None else 0
            peers[peer] = PeerJobStatistics(state.peer_rounds.get(peer, 0), state.peer_messages.get(peer, 0), b, fr)
            total_bytes += b
            total_frames += fr
            total_queued += getattr(js, "queued_bytes", 0) if js is not None else 0
        return JobStatistics(
            state.id, state.party, state.rounds, state.flushes, len(state.graph.nodes), total_bytes, total_frames, peers,
            total_queued,
        )

    async def secure_sum(self, vector: Any, *, server: str, threshold: int | None = None, **options: Any) -> Any:
        """Secure aggregation (Bonawitz et al. 2017, SecAgg+): the clients' vectors summed at ``server``.

        Every party of the job calls it; the server passes None (or its own vector), the other
        parties are the clients. Returns the sum at the server and None elsewhere; the server
        learns nothing else. Clients that drop out after sending their masked input are still
        counted; fewer than ``threshold`` survivors abort with AggregationError and reveal
        nothing.

        Args:
            vector: this client's float vector, or a pytree of them (every client the same
                structure); None at the server, which gets the sum in that structure.
            server: the aggregating party.
            threshold: survivors needed (default: a majority of the clients, at least 2).
            **options: clip, frac_bits, ring_bits, neighbours, consistency_check,
                stage_timeout_s (see ``mpcactors.secagg.secure_sum``).
        """
        if self._aggregate is None:
            raise RuntimeError(f"job {self.id!r} was opened without secure aggregation")
        if server not in self.parties:
            raise ValueError(f"secure_sum server {server!r} is not a party of job {self.id!r}")
        clients = [p for p in self.parties if p != server]
        if threshold is None:
            threshold = max(2, len(clients) // 2 + 1)
        self._aggregations += 1
        return await self._aggregate(
            self._link,
            job=self.id,
            tag=f"secagg{self._aggregations}",
            vector=vector,
            server=server,
            clients=clients,
            threshold=threshold,
            **options,
        )


def _job_link_stats(stats: Any, peer: str, job: str) -> Any:
    jobs = getattr(stats, "jobs", None)
    if jobs is None:
        return None
    return jobs.get((peer, job))



# How many ops a product's preparation may start before the product (Job.op(prepare=...)): two
# cover a preparation's two OT rounds behind a chain of integer products (one round each); the
# correlations held at once are those of the products within this distance of the frontier.
PREPARE_AHEAD = 2


def _ancestors(nodes: Sequence[OpNode], hops: int) -> list[OpNode]:
    """The ops ``hops`` inputs above ``nodes`` (a path that ends sooner, at an op with no inputs,
    ends there), in graph order: the same at every party. Other products' preparations are not
    followed: waiting for them would run the preparations of a chain one after another."""
    level = {n.op_id: n for n in nodes}
    for _ in range(hops):
        up: dict[int, OpNode] = {}
        for n in level.values():
            above = [i for i in n.inputs if not i.name.endswith(".prepare")] or [n]
            up.update((i.op_id, i) for i in above)
        level = up
    return [level[k] for k in sorted(level)]


def _cost(shape: tuple[int, ...] | None, inputs: Sequence[SecretTensor]) -> int:
    """Elements an op's local work touches: its output plus its inputs (shapes known so far).

    An estimate for the executor's inline-or-thread choice only; a matmul's inputs make a big
    product costly even when its output is small.
    """
    total = math.prod(shape) if shape is not None else 0
    for t in inputs:
        known = t.known_shape
        if known is not None:
            total += math.prod(known)
    return total
