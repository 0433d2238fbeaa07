"""structlog set-up. Library code calls :func:`get_logger` and binds party, peer, job and op;
entry points (the CLI, the demo) call :func:`configure_logging`. Nothing is configured at
import time, and an embedding service that configured structlog keeps its configuration."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str = "warning", *, json: bool = False, stream: Any = None) -> None:
    """Configure structlog for a CLI process: console (default) or JSON lines on stderr.

    Args:
        level: "debug", "info", "warning" or "error".
        json: emit one JSON object per event instead of the console format.
        stream: where to write (default: stderr).
    """
    lvl = logging.getLevelNamesMapping().get(level.upper())
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    """A structlog logger with ``bind`` (party, peer, job, op, ...) attached to every event.

    If nobody configured structlog yet (an embedding service or :func:`configure_logging`),
    the first call sets the quiet default: warnings and errors on stderr. structlog's own
    default would print every info event of every link to stdout.
    """
    if not structlog.is_configured():
        configure_logging("warning")
    return structlog.get_logger("mpcactors").bind(**bind)
