"""Progress of PSI jobs: events for the API, structlog events, a rich progress bar for the CLI.

A job reports :class:`PsiProgress` events through the ``progress`` callable given to
``run_psi`` (called in the event loop's thread; it must not block). The ``exchange`` phase
counts elliptic-curve operations this party performs (its ``done``/``total`` is the bar); the
other phases report once when they start and once when they end. The same events go to
structlog: phase changes at ``info``, per-chunk updates at ``debug``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Self

from .._log import get_logger
from .._ticker import Ticker

__all__ = ["PHASES", "ProgressReporter", "PsiProgress", "RichPsiProgress"]

# handshake: settings check; prepare: hash/dedupe/order input; exchange: EC ops and
# ciphertext streams; match: compare double-blinded values; output: write the join; done.
PHASES = ("handshake", "prepare", "exchange", "match", "output", "done")


@dataclasses.dataclass(frozen=True, slots=True)
class PsiProgress:
    """One progress event of one PSI job at one party."""

    job: str
    party: str
    phase: str  # one of PHASES
    done: int  # units finished in this phase (EC operations in "exchange")
    total: int  # units of this phase (0 when unknown)
    elapsed: float  # seconds since the job started


class ProgressReporter:
    """Fans one job's progress out to the user's callable and to structlog."""

    def __init__(self, job: str, party: str, callback: Callable[[PsiProgress], Any] | None) -> None:
        self.job = job
        self.party = party
        self.callback = callback
        self.log = get_logger(party=party, job=job, op="psi")
        self.t0 = time.monotonic()
        self.phase = ""
        self.done = 0
        self.total = 0

    def start(self, phase: str, total: int = 0, done: int = 0) -> None:
        self.phase, self.done, self.total = phase, done, total
        self.log.info("psi.phase", phase=phase, total=total, done=done)
        self._emit()

    def advance(self, n: int) -> None:
        self.done += n
        self.log.debug("psi.progress", phase=self.phase, done=self.done, total=self.total)
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(
                PsiProgress(
                    self.job,
                    self.party,
                    self.phase,
                    self.done,
                    self.total,
                    time.monotonic() - self.t0,
                )
            )


class RichPsiProgress:
    """A rich progress bar with one line per job; pass :meth:`callback` as ``progress=``.

    Use as a context manager around the jobs (it starts and stops rich's refresh thread). Off a
    terminal, where the bar shows nothing until the end, a line per ``every_s`` seconds says
    where each job is (``mpcactors._ticker``).
    """

    def __init__(self, console: Any = None, *, disable: bool = False, every_s: float = 5.0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.fields[job]}"),
            TextColumn("{task.fields[phase]:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._totals: dict[str, int] = {}
        self._where: dict[str, PsiProgress | None] = {}
        self._ticker = None if disable or self._progress.console.is_terminal else Ticker(self._line, every_s=every_s)
        self._t0 = time.monotonic()

    def __enter__(self) -> Self:
        self._progress.start()
        if self._ticker is not None:
            self._ticker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.__exit__()
        self._progress.stop()

    def _line(self) -> str:
        jobs = []
        for job, ev in list(self._where.items()):
            if ev is None:
                jobs.append(f"{job} waiting")
            elif ev.phase == "exchange" and ev.total:
                jobs.append(f"{job} exchange {ev.done}/{ev.total}")
            else:
                jobs.append(f"{job} {ev.phase}")
        return f"mpcactors psi: {time.monotonic() - self._t0:.0f} s: " + "; ".join(jobs)

    def add_job(self, job: str) -> None:
        self._tasks[job] = self._progress.add_task("", total=None, job=job, phase="waiting")
        self._where.setdefault(job, None)

    def callback(self, ev: PsiProgress) -> None:
        self._where[ev.job] = ev
        task = self._tasks.get(ev.job)
        if task is None:
            self.add_job(ev.job)
            task = self._tasks[ev.job]
        if ev.phase == "exchange":
            self._totals[ev.job] = ev.total
            self._progress.update(task, phase=ev.phase, total=ev.total or None, completed=ev.done)
        elif ev.phase == "done":
            total = self._totals.get(ev.job) or 1
            self._progress.update(task, phase="done", total=total, completed=total)
        else:
            self._progress.update(task, phase=ev.phase)
