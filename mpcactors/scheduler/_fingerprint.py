"""Op fingerprints: parties that run diverged programs abort at the first differing op.

Theory of operation
-------------------
Messages are addressed by (job, op id, round), and op ids are positions in each party's graph; so
two parties whose programs differ would pair unrelated ops and compute garbage (or wait forever).
Every op therefore gets a short *fingerprint* when its step starts, when its inputs are done and
their shapes are known at every party alike::

    mul(#3 input[alice] (4, 2), #5 input[bob] (4, 2)) fxp @1f0c9a2e

the op's kind, its inputs (op id, kind, shape), its attributes (``axis=1``, ``to=alice``,
fixed-point or integer) and, after ``@``, a hash chained over the inputs' fingerprints, so an
op whose inputs were computed by different local ops (which send nothing) differs too.

The first message of an op to each peer carries the fingerprint (DESIGN.md section 12). The
receiver compares it with its own op of that id, now or when that op starts; a mismatch aborts
the job at every party with :class:`JobAborted` naming the op and what each side ran. An op
blocked on a peer with nothing moving sends that peer its fingerprint alone (a *probe*), so
programs that wait on each other's different ops meet too. The job's last op, ``end``, carries
the op count and a digest of every op's fingerprint, so an extra op or reveal at one party is
reported the same way, before any party returns.

Public operand values are not part of a fingerprint (float noise between machines must not
abort a job); their shapes are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .._errors import JobAborted
from ._graph import OpNode

__all__ = ["MAX_FINGERPRINT_CHARS", "PROBE_ROUND", "diverged", "end_fingerprint", "fingerprint"]

MAX_FINGERPRINT_CHARS = 512  # a peer's fingerprint longer than this is malformed
PROBE_ROUND = -1  # the round of an entry that carries only a fingerprint (no payload)


def _chain(text: str, parts: Sequence[str]) -> str:
    h = hashlib.blake2b(text.encode(), digest_size=4)
    for p in parts:
        h.update(b"\x00" + p.encode())
    return h.hexdigest()


def fingerprint(node: OpNode) -> str:
    """The fingerprint of ``node`` (its inputs must be done: their shapes are part of it)."""
    ins = []
    for i in node.inputs:
        shape = getattr(i.result, "shape", None)
        ins.append(f"#{i.op_id} {i.name}" + (f" {tuple(shape)}" if shape is not None else ""))
    desc = f"{node.name}({', '.join(ins)})" + (f" {node.detail}" if node.detail else "")
    if len(desc) > MAX_FINGERPRINT_CHARS - 12:
        desc = desc[: MAX_FINGERPRINT_CHARS - 15] + "..."
    return f"{desc} @{_chain(desc, [i.fingerprint or i.name for i in node.inputs])}"


def end_fingerprint(nodes: Sequence[OpNode]) -> str:
    """The fingerprint of a job's closing op: how many ops ran, and a digest of all of them."""
    desc = f"end of the program after {len(nodes)} ops"
    return f"{desc} @{_chain(desc, [n.fingerprint or n.name for n in nodes])}"


def diverged(job: str, party: str, peer: str, op_id: int, mine: str, theirs: str) -> JobAborted | None:
    """The error when ``peer``'s op ``op_id`` is not ours (None when the fingerprints agree)."""
    if mine == theirs:
        return None
    theirs = "".join(c if c.isprintable() else "?" for c in theirs)  # a peer's text, shown to people
    m = mine.rpartition(" @")[0] or mine
    t = theirs.rpartition(" @")[0] or theirs
    if m == t:
        cause = (
            f"the programs diverged before op {op_id} ({m}): its inputs were computed by "
            f"different ops at {party!r} and {peer!r} (ops that send no messages differ)"
        )
    else:
        cause = f"the programs diverged at op {op_id}: {party!r} ran {m}, {peer!r} ran {t}"
    return JobAborted(job, party, cause)
