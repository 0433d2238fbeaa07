"""Reading job traces: merge several processes' traces into one timeline; summarize a trace.

Theory of operation
-------------------
A trace file (``_trace.py``) holds one process's events, timed in microseconds from a zero
whose wall-clock time is ``otherData.mpcactors.parties[party].epoch_us``. Files of different
processes (different machines) have different clocks, so :func:`merge_traces` aligns them:

1. Every event first moves to its party's wall clock (``epoch_us + ts``).
2. The link does not measure clock offsets (PING/PONG gives the round-trip time only), so the
   offsets are estimated from the traces themselves, NTP-style: a DATA frame appears at its
   sender (packed, with its session sequence number) and at its receiver (decoded). For two
   files A and B, ``d_AB`` is the smallest (receive - send) over frames from A to B, and
   ``d_BA`` the other way; with equal smallest one-way delays the offset of B's clock is
   ``(d_AB - d_BA) / 2`` (its error is at most half the difference of the two directions'
   smallest delays). A wall clock that no frame contradicts (every frame arrives after it left,
   both ways: clocks of one host, or well synchronized ones) is kept as it is; only one that a
   frame contradicts is moved to that estimate. Offsets are chained from the first file over
   pairs that exchanged frames both ways; a file with no such pair keeps its wall clock (the
   output says which).
3. Processes (parties) and threads (tracks) are renumbered by name, and time starts at 0.

:func:`summarize` reads one trace (merged or not) and computes, per job and party, the wall
time, the time in op steps and waiting for peers, the critical-path rounds and the ops on that
path, frames and bytes per peer, and how many ops' and messages each frame carried.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["JobSummary", "format_summary", "merge_traces", "summarize"]

WALL_OK = "wall clock (consistent with the frames both ways)"
FRAMES = "frames (smallest one-way delays both ways)"


def _meta(doc: dict[str, Any], where: str) -> dict[str, Any]:
    meta = doc.get("otherData", {}).get("mpcactors") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(doc.get("traceEvents"), list):
        raise ValueError(f"{where} is not an mpcactors trace (no traceEvents / otherData.mpcactors)")  # noqa: TRY004 - a bad file, not a bad argument
    return meta


def _names(events: Iterable[dict[str, Any]]) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    """Process names by pid and thread names by (pid, tid), from the metadata events."""
    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    return procs, threads


def _offsets(docs: Sequence[dict[str, Any]], procs: Sequence[dict[int, str]]) -> tuple[list[float], list[str], dict[str, float]]:
    """Clock offset (µs, to subtract) of each file, how it was found, and the pair delays."""
    epochs = [doc["otherData"]["mpcactors"]["parties"] for doc in docs]
    sent: dict[tuple[str, str, int], set[float]] = defaultdict(set)
    got: dict[tuple[str, str, int], set[float]] = defaultdict(set)
    file_of: dict[str, int] = {}
    for i, doc in enumerate(docs):
        for e in doc["traceEvents"]:
            party = procs[i].get(e.get("pid", -1))
            if party is None or e.get("cat") not in ("frame", "frame_rx"):
                continue
            file_of.setdefault(party, i)
            wall = epochs[i][party]["epoch_us"] + e["ts"]
            a = e["args"]
            if e["cat"] == "frame":
                sent[(party, a["peer"], a["seq"])].add(wall)
            else:
                got[(a["peer"], party, a["seq"])].add(wall)
    delay: dict[tuple[int, int], float] = {}
    for key, ts in sent.items():
        rx = got.get(key)
        if rx is None or len(ts) != 1 or len(rx) != 1 or key[0] not in file_of or key[1] not in file_of:
            continue  # a frame not seen at both ends, or a sequence number reused (new session)
        pair = (file_of[key[0]], file_of[key[1]])
        if pair[0] != pair[1]:
            d = next(iter(rx)) - next(iter(ts))
            delay[pair] = min(delay.get(pair, d), d)
    offset: list[float | None] = [None] * len(docs)
    how = ["wall clock"] * len(docs)
    offset[0] = 0.0
    how[0] = "reference"
    todo = [0]
    while todo:
        a = todo.pop()
        for b in range(len(docs)):
            if offset[b] is None and (a, b) in delay and (b, a) in delay:
                base = offset[a]
                assert base is not None  # set before a was queued
                if -delay[(b, a)] <= -base <= delay[(a, b)]:
                    offset[b] = 0.0  # b's own wall clock: no frame either way arrives before it left
                    how[b] = WALL_OK
                else:
                    offset[b] = base + (delay[(a, b)] - delay[(b, a)]) / 2
                    how[b] = FRAMES
                todo.append(b)
    delays = {f"{a}->{b}": round(d, 3) for (a, b), d in sorted(delay.items())}
    return [o if o is not None else 0.0 for o in offset], how, delays


def merge_traces(docs: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """One timeline from several processes' trace documents (see module doc).

    Args:
        docs: parsed trace files (``json.load``), each written by ``trace=`` or ``--trace``.
        names: how to call each input in the alignment report (default: its index).

    Returns:
        A trace document (``traceEvents``, ``otherData``) with every input's events.

    Raises:
        ValueError: an input is not an mpcactors trace.
    """
    labels = list(names) if names is not None else [str(i) for i in range(len(docs))]
    for doc, label in zip(docs, labels, strict=True):
        _meta(doc, label)
    procs = [_names(doc["traceEvents"])[0] for doc in docs]
    offsets, how, delays = _offsets(docs, procs)
    pids: dict[str, int] = {}
    tids: dict[tuple[str, str], int] = {}
    meta_out: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    parties: dict[str, Any] = {}
    jobs: list[Any] = []
    base = min(p["epoch_us"] for doc in docs for p in doc["otherData"]["mpcactors"]["parties"].values())
    for i, doc in enumerate(docs):
        info = doc["otherData"]["mpcactors"]
        jobs.extend(info.get("jobs", []))
        # one shift per party, rounded to the ns: events keep their own rounding and nesting
        # (an epoch in µs since 1970 has a resolution of 0.25 µs as a float; differences are exact)
        shift = {party: round(p["epoch_us"] - base - offsets[i], 3) for party, p in info["parties"].items()}
        threads = _names(doc["traceEvents"])[1]
        for party, p in info["parties"].items():
            parties.setdefault(party, {"epoch_us": 0.0, "rtt_ms": {}})["rtt_ms"].update(p.get("rtt_ms", {}))
        for e in doc["traceEvents"]:
            party = procs[i].get(e.get("pid", -1))
            if party is None or e.get("ph") == "M":
                continue
            if party not in pids:
                pid = pids[party] = len(pids) + 1
                meta_out.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": party}})
                meta_out.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
            out = dict(e, pid=pids[party], ts=e["ts"] + shift[party])
            if "tid" in e:
                track = threads.get((e["pid"], e["tid"]), str(e["tid"]))
                tid = tids.get((party, track))
                if tid is None:
                    tid = tids[(party, track)] = len(tids) + 1
                    meta_out.append({"name": "thread_name", "ph": "M", "pid": out["pid"], "tid": tid, "args": {"name": track}})
                    meta_out.append({"name": "thread_sort_index", "ph": "M", "pid": out["pid"], "tid": tid, "args": {"sort_index": tid}})
                out["tid"] = tid
            events.append(out)
    t0 = round(min((e["ts"] for e in events), default=0.0), 3)
    for e in events:
        e["ts"] = round(e["ts"] - t0, 3)
    for p in parties.values():
        p["epoch_us"] = base + t0
    alignment = {labels[i]: {"offset_us": round(offsets[i], 3), "method": how[i]} for i in range(len(docs))}
    return {
        "traceEvents": meta_out + events,
        "displayTimeUnit": "ms",
        "otherData": {"mpcactors": {"format": 1, "clock": "merged", "parties": parties, "jobs": jobs,
                                    "alignment": alignment, "min_delay_us": delays}},
    }  # fmt: skip


# ---- summary ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class PeerSummary:
    """One job's frames with one peer, at one party."""

    frames_sent: int
    bytes_sent: int  # the job's chunk bytes in those frames
    frames_received: int
    bytes_received: int


@dataclasses.dataclass(frozen=True, slots=True)
class JobSummary:
    """What one job did at one party (see :func:`summarize`)."""

    party: str
    job: str
    kind: str
    wall_ms: float
    compute_ms: float  # union of the job's op steps (inline and worker threads)
    waiting_ms: float  # some op waited for a peer and no step of the job ran
    rounds: int  # the job's critical-path rounds (job.statistics().rounds)
    peers: dict[str, PeerSummary]
    critical_path: list[dict[str, Any]]  # ops from the start, each {op_id, op, depth, rounds}
    ops_per_frame: dict[int, int]  # ops with entries in a frame (all jobs) -> frames
    messages_per_frame: dict[int, int]  # chunks in a frame (all jobs) -> frames
    phases: dict[str, float]  # PSI jobs: ms in each phase (from their progress events)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _length(intervals: Iterable[tuple[float, float]]) -> float:
    return sum(b - a for a, b in intervals)


def _minus(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the (disjoint, sorted) intervals ``a`` outside the (disjoint, sorted) ``b``."""
    total = _length(a)
    for x0, x1 in a:
        for y0, y1 in b:
            total -= max(0.0, min(x1, y1) - max(x0, y0))
    return total


def _critical_path(ops: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The chain of ops that ends at the deepest op (not the closing ``end`` op), through the
    deepest input each time; each with the rounds it added."""
    candidates = [o for o in ops.values() if o["op"] != "end"] or list(ops.values())
    if not candidates:
        return []
    node: dict[str, Any] | None = max(candidates, key=lambda o: (o["depth"], -o["op_id"]))
    path: list[dict[str, Any]] = []
    while node is not None:
        inputs = [ops[i] for i in node.get("inputs", []) if i in ops]
        deepest = max(inputs, key=lambda o: (o["depth"], -o["op_id"]), default=None)
        before = deepest["depth"] if deepest is not None else 0
        path.append({"op_id": node["op_id"], "op": node["op"], "depth": node["depth"], "rounds": node["depth"] - before})
        node = deepest
    return path[::-1]


def summarize(doc: dict[str, Any]) -> list[JobSummary]:
    """Per job and party: the numbers ``mpcactors trace summary`` prints (see JobSummary)."""
    _meta(doc, "the trace")
    procs, _ = _names(doc["traceEvents"])
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in doc["traceEvents"]:
        party = procs.get(e.get("pid", -1))
        job = e.get("args", {}).get("job") if e.get("ph") != "C" else e.get("name", "")[len("rounds "):]
        if party is not None and job is not None and e.get("ph") != "M":
            by[(party, job)].append(e)
    out: list[JobSummary] = []
    for (party, job), events in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        span = next((e for e in events if e.get("cat") == "job"), None)
        steps = [e for e in events if e.get("cat") == "step"]
        compute = _union((e["ts"], e["ts"] + e["dur"]) for e in steps)
        waits = _union((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "wait")
        rounds = max((e["args"]["rounds"] for e in events if e.get("cat") == "rounds"), default=0)
        peers: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        ops_hist: Counter[int] = Counter()
        msg_hist: Counter[int] = Counter()
        for e in events:
            if e.get("cat") == "frame":
                p = peers[e["args"]["peer"]]
                p[0] += 1
                p[1] += e["args"]["job_bytes"]
                ops_hist[e["args"]["ops"]] += 1
                msg_hist[e["args"]["messages"]] += 1
            elif e.get("cat") == "frame_rx":
                p = peers[e["args"]["peer"]]
                p[2] += 1
                p[3] += e["args"]["job_bytes"]
        ops = {e["args"]["op_id"]: e["args"] for e in steps if e["args"].get("done")}
        out.append(JobSummary(
            party=party, job=job, kind=span["args"].get("kind", "?") if span else "?",
            wall_ms=round(span["dur"] / 1000, 3) if span else 0.0,
            compute_ms=round(_length(compute) / 1000, 3), waiting_ms=round(_minus(waits, compute) / 1000, 3),
            rounds=rounds, peers={k: PeerSummary(*v) for k, v in sorted(peers.items())},
            critical_path=_critical_path(ops), ops_per_frame=dict(sorted(ops_hist.items())),
            messages_per_frame=dict(sorted(msg_hist.items())),
            phases={e["name"]: round(e["dur"] / 1000, 3) for e in events if e.get("cat") == "phase"},
        ))  # fmt: skip
    return out


def _histogram(hist: dict[int, int], unit: str) -> str:
    return ", ".join(f"{k} {unit}{'s' if k != 1 else ''}: {v}" for k, v in hist.items()) or "-"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def format_summary(summaries: Sequence[JobSummary], *, max_path: int = 12) -> str:
    """The summary as text, one block per job and party."""
    lines: list[str] = []
    for s in summaries:
        if s.phases:  # a PSI job: no op steps, its phases instead
            where = ", ".join(f"{name} {ms:.1f} ms" for name, ms in s.phases.items())
            lines.append(f"job {s.job!r} at {s.party} ({s.kind}): {s.wall_ms:.1f} ms wall; phases: {where}")
        else:
            lines.append(
                f"job {s.job!r} at {s.party} ({s.kind}): {s.wall_ms:.1f} ms wall, compute {s.compute_ms:.1f} ms "
                f"({_pct(s.compute_ms, s.wall_ms)}), waiting for peers {s.waiting_ms:.1f} ms "
                f"({_pct(s.waiting_ms, s.wall_ms)}), {s.rounds} rounds"
            )
        for peer, p in s.peers.items():
            lines.append(
                f"  {peer}: sent {p.frames_sent} frames, {p.bytes_sent:,} bytes; "
                f"received {p.frames_received} frames, {p.bytes_received:,} bytes"
            )
        path = [o for o in s.critical_path if o["rounds"]]
        if s.phases and not path:
            lines.append(f"  messages per frame: {_histogram(s.messages_per_frame, 'message')}")
            continue
        shown = ", ".join(f"{o['op']}#{o['op_id']} +{o['rounds']} (at {o['depth']})" for o in path[:max_path])
        more = f", ... {len(path) - max_path} more" if len(path) > max_path else ""
        lines.append(f"  critical path ({len(path)} ops that add rounds): {shown or '-'}{more}")
        lines.append(f"  ops per frame: {_histogram(s.ops_per_frame, 'op')}")
        lines.append(f"  messages per frame: {_histogram(s.messages_per_frame, 'message')}")
    return "\n".join(lines)
