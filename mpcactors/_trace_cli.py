"""``mpcactors trace merge`` and ``mpcactors trace summary`` (see docs/TRACE.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._trace_tools import format_summary, merge_traces, summarize

__all__ = ["add_trace_parser", "trace_command"]


def add_trace_parser(sub: Any) -> None:
    """Add the ``trace`` command (``merge``, ``summary``) to the CLI's sub-parsers."""
    p = sub.add_parser("trace", help="merge and summarize job traces (--trace files)")
    p.set_defaults(log_level="warning", log_json=False)
    tsub = p.add_subparsers(dest="trace_command", required=True, metavar="{merge,summary}")
    m = tsub.add_parser("merge", help="merge several processes' traces into one timeline")
    m.add_argument("files", nargs="+", help="trace files written by --trace / trace=")
    m.add_argument("-o", "--output", required=True, help="the merged trace file")
    s = tsub.add_parser("summary", help="per job and party: time, rounds, frames, critical path")
    s.add_argument("file", help="a trace file (merged or not)")
    s.add_argument("--json", action="store_true", help="one JSON object per job and party")


def _load(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!r} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path!r} is not a trace-event document")  # noqa: TRY004 - a bad file, not a bad argument
    return doc


def trace_command(args: argparse.Namespace) -> int:
    """Run ``mpcactors trace merge|summary``; 2 (with one line on stderr) for a bad input."""
    try:
        if args.trace_command == "merge":
            merged = merge_traces([_load(f) for f in args.files], names=args.files)
            out = Path(args.output)
            out.write_text(json.dumps(merged, separators=(",", ":")))
            for name, how in merged["otherData"]["mpcactors"]["alignment"].items():
                print(f"{name}: offset {how['offset_us'] / 1000:+.3f} ms ({how['method']})")
            print(f"wrote {out}")
            return 0
        summaries = summarize(_load(args.file))
    except (ValueError, OSError) as exc:
        print(f"mpcactors trace: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for s in summaries:
            print(json.dumps(s.as_dict()))
    else:
        print(format_summary(summaries))
    return 0
