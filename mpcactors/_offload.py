"""Run a self-contained protocol step in a child process and relay its rounds.

Theory of operation
-------------------
Some steps are long stretches of calls into a C++ library that hold the GIL for their whole
duration (TenSEAL's SEAL calls in an HE matrix triple: minutes at 1024^3). In a party process
they slow every other job's Python work; in ``simulate`` the two holders' triples take turns on
one core. :func:`run_in_process` runs such a step in a child Python interpreter instead and
relays its rounds: the step stays sans-IO, this shell does the I/O.

- The parent starts ``python -m mpcactors._offload`` (a fresh interpreter: no fork of a
  multithreaded process, no re-import of the user's ``__main__``), sends the step's name and
  arguments, then loops: read the child's next message; ``round`` -> yield it as an
  :class:`~mpcactors.ops._comm.Exchange` and send the peers' reply back; ``done`` -> return the
  value; ``error`` -> raise it, typed.
- Messages are our wire codec (:mod:`mpcactors.link._codec`: msgpack plus numpy arrays, no
  pickle) behind an 8-byte length, over the child's stdin and stdout. Only the steps named in
  :data:`TARGETS` run (no import strings from outside).
- The child's lifetime is the step's: when the step returns, fails, or is closed (a cancelled
  job), the parent closes the pipes and kills the child. A child that dies makes the step raise
  :class:`OffloadError` with its exit code and the tail of its stderr; a parent that dies
  closes the child's stdin, and the child exits.
- Where no child can start (``sys.executable`` is not a Python to run, as in some embedded
  interpreters), the step computes in this process and ``offload_unavailable`` is logged.
- A node keeps one child started ahead (:class:`Spares`, warmed when a job may offload): it
  imports the targets' modules while it waits, so a step does not wait ~0.4 s for an
  interpreter. The next is started by the next job that may offload (not at once: its imports
  would take CPU from the step computing), and the node kills its spares when it closes.
- The parent blocks in pipe reads: the executor runs such steps in its worker threads (the
  reads release the GIL), never inline on the event loop unless ``compute_threads = 0``.
"""

from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ._errors import MpcError
from ._log import get_logger
from .link._codec import decode_payload, encode_payload
from .ops._comm import Exchange, Step

__all__ = ["TARGETS", "OffloadError", "Spares", "run_in_process"]

# step name -> "module:function" returning a Step from keyword arguments
TARGETS = {
    "he_cross_terms": "mpcactors.ops._he_triples:offloaded_cross_terms",
    "he_simd_cross": "mpcactors.ops._he_simd:offloaded_simd_cross",
}
_LEN = struct.Struct("<Q")
_MAX = 1 << 34  # largest message either side accepts (16 GiB: a round is ~100 MB)


class OffloadError(MpcError):
    """Raised by :func:`run_in_process` when the child process fails or dies."""


def run_in_process(name: str, kwargs: Mapping[str, Any], spares: Spares | None = None) -> Step[Any]:
    """The step ``TARGETS[name](**kwargs)`` computed in a child process (module doc).

    Args:
        name: a key of :data:`TARGETS`.
        kwargs: the step's arguments (values the wire codec carries: numpy arrays, bytes, str...).
        spares: where to take a child started ahead, if anywhere.

    Returns:
        The step's value.

    Raises:
        KeyError: an unknown step name.
        OffloadError: the child process died or its step raised an error of another type.
        The step's own errors of types :mod:`mpcactors` defines or ``ValueError``, re-raised.
    """
    if name not in TARGETS:
        raise KeyError(f"no offloadable step {name!r}; known: {sorted(TARGETS)}")
    child = spares.take() if spares is not None else None
    if child is None:
        try:
            child = _spawn()
        except OSError as exc:  # no interpreter to start (an embedded Python): compute here
            get_logger(peer=kwargs.get("peer")).warning(
                "offload_unavailable", step=name, executable=sys.executable, error=repr(exc)
            )
            return (yield from _target(name)(**kwargs))
    proc, err = child
    try:
        return (yield from _relay(name, kwargs, proc, err))
    finally:
        _reap(proc, err)


Child = tuple["subprocess.Popen[bytes]", IO[bytes]]  # a child process and the file of its stderr


def _spawn() -> Child:
    env = dict(os.environ)
    # the child must import this package the way the parent did (a checkout on sys.path too)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    err = tempfile.TemporaryFile()  # noqa: SIM115 - the child's, closed by _reap (or here on failure)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mpcactors._offload"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=err, env=env,
        )
    except BaseException:
        err.close()
        raise
    return proc, err


def _reap(proc: subprocess.Popen[bytes], err: IO[bytes]) -> None:
    """Close the child's pipes, kill it if it still runs, wait for it, drop its stderr file."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    err.close()


class Spares:
    """A node's child processes started ahead of the steps that will take them (module doc).

    Thread-safe: steps take children from the executor's worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Child] = []
        self._closed = False

    def warm(self) -> None:
        """Start one child to wait for a step, unless one waits already. A child that cannot
        start is not an error here: the step then tries again itself, and says so."""
        with self._lock:
            if self._idle or self._closed:
                return
            try:
                self._idle.append(_spawn())
            except OSError:
                return

    def take(self) -> Child | None:
        """A waiting child that is still alive, or None."""
        with self._lock:
            while self._idle:
                proc, err = self._idle.pop()
                if proc.poll() is None:
                    return proc, err
                _reap(proc, err)
        return None

    def close(self) -> None:
        """Kill the waiting children; later :meth:`warm` calls start none."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for proc, err in idle:
            _reap(proc, err)


def _relay(name: str, kwargs: Mapping[str, Any], proc: subprocess.Popen[bytes], err: IO[bytes]) -> Step[Any]:
    """The parent's side of :func:`run_in_process` (the child runs :func:`_serve`)."""
    if proc.stdin is None or proc.stdout is None:  # PIPE always makes them
        raise OffloadError("the child process has no pipes")
    try:
        _write(proc.stdin, {"name": name, "kwargs": dict(kwargs)})
        while True:
            msg = _read(proc.stdout)
            kind = msg.get("kind") if isinstance(msg, dict) else None
            if kind == "round":
                reply = yield Exchange(send=msg["send"], recv=frozenset(msg["recv"]))
                _write(proc.stdin, dict(reply))
            elif kind == "done":
                return msg["value"]
            elif kind == "error":
                raise _typed(msg["type"], msg["message"])
            else:
                raise OffloadError(f"offloaded step {name!r}: unexpected message {kind!r}")
    except (EOFError, OSError) as exc:  # BrokenPipeError is an OSError
        code = proc.poll()
        if code is None:
            proc.kill()
            code = proc.wait()
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace").strip()
        raise OffloadError(
            f"the child process of offloaded step {name!r} died (exit code {code}): {tail or repr(exc)}"
        ) from None


def _target(name: str) -> Any:
    module, _, func = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _typed(kind: str, message: str) -> BaseException:
    """The child's error as its own type where it is one of ours or ValueError."""
    from . import _errors
    from .ops import _he_seal

    cls = getattr(_errors, kind, None) or getattr(_he_seal, kind, None)
    if kind == "ValueError":
        return ValueError(message)
    if isinstance(cls, type) and issubclass(cls, MpcError):
        return cls(message)
    return OffloadError(f"{kind}: {message}")


def _write(stream: IO[bytes], obj: Any) -> None:
    data = encode_payload(obj)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _LEN.unpack(head)
    if size > _MAX:
        raise OffloadError(f"offload message of {size} bytes exceeds {_MAX}")
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError("the other end closed the pipe mid-message")
        got += n
    return decode_payload(buf, max_bytes=_MAX)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """The child's main: build the named step, relay its rounds, send its value or error."""
    # while no step is asked for yet (a spare), the imports: the targets' modules, and TenSEAL
    # and zstandard (~0.1 s), which those load on first use; missing ones: the step will say so
    for target in TARGETS:
        _target(target)
    from .ops._he_seal import available

    available()
    try:
        init = _read(stdin)
    except EOFError:
        return 0
    try:
        gen = _target(init["name"])(**init["kwargs"])
        reply: Any = None
        while True:
            try:
                ex = gen.send(reply) if reply is not None else next(gen)
            except StopIteration as stop:
                _write(stdout, {"kind": "done", "value": stop.value})
                return 0
            if ex.empty:
                reply = {}
                continue
            _write(stdout, {"kind": "round", "send": dict(ex.send), "recv": sorted(ex.recv)})
            if ex.meanwhile is not None:  # local work for the next round, while the messages travel
                ex.meanwhile()
            reply = _read(stdin)
    except (EOFError, BrokenPipeError):  # the parent went away (a cancelled job): just stop
        return 0
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it typed
        try:
            _write(stdout, {"kind": "error", "type": type(exc).__name__, "message": str(exc)})
        except OSError:
            return 1
        return 0


def _main() -> int:
    # the protocol owns the real stdout; anything a library prints goes to stderr instead
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return _serve(sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    sys.exit(_main())
