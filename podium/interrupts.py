"""Ctrl-C (SIGINT) and SIGTERM: stop cleanly, say what is safe on disk and how to go on.

Inside `handled()` both signals raise `Interrupted` (a KeyboardInterrupt) in the main thread, so
a long command unwinds through its `finally` blocks instead of dying half-way (SIGTERM's
default) or printing a traceback. Writes that must not be cut short run inside `deferred()`:
a signal arriving there is held until the file is complete; a second one stops at once (the
writer then removes its temp file and the previous file stays). The command's top level
prints one line (`report`) and exits with the usual status, 128 + the signal number.
"""

import contextlib
import os
import shlex
import signal
import sys
import threading
from typing import Optional, Sequence

__all__ = [
    "Interrupted",
    "QUIET_ENV",
    "handled",
    "deferred",
    "interrupted",
    "exit_status",
    "report",
    "command_line",
]

# Set by a parent that reports the interruption itself (podium cv's fold runs, DDP workers).
QUIET_ENV = "PODIUM_QUIET_INTERRUPT"
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. `during`: the file being written when it did, if any, and
    whether that write was `completed` (held signal) or stopped (a second signal)."""

    def __init__(
        self,
        signum: int = signal.SIGINT,
        during: Optional[str] = None,
        completed: bool = True,
        where: str = "",
        then: str = "",
    ):
        super().__init__(_NAMES.get(signum, f"signal {signum}"))
        self.signum = int(signum)
        self.during = during
        self.completed = completed
        self.where = where  # e.g. "in stage train, epoch 5 of 40"
        self.then = then  # what is safe on disk and the command that goes on

    def with_message(self, where: str, then: str) -> "Interrupted":
        """The same interruption, with where it happened, what is safe and how to go on."""
        return Interrupted(self.signum, self.during, self.completed, where, then)

    def __reduce__(self):  # crosses process boundaries (DDP workers report to their parent)
        return Interrupted, (self.signum, self.during, self.completed, self.where, self.then)


class _State(threading.local):
    depth = 0  # nesting of deferred() blocks
    pending: Optional[int] = None  # a signal held until the outermost block ends
    during: Optional[str] = None


_state = _State()


def _handler(signum, frame):
    if _state.depth and _state.pending is None:
        _state.pending = signum  # let the write finish; a second signal stops it
        return
    raise Interrupted(signum, during=_state.during, completed=False)


@contextlib.contextmanager
def handled():
    """Inside this block SIGINT and SIGTERM raise Interrupted (main thread only; a signal that
    was ignored, e.g. under nohup, stays ignored). The previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def deferred(what: str):
    """Hold a signal until this block (writing `what`) is done, then raise Interrupted.

    A no-op outside the main thread and outside `handled()`."""
    if threading.current_thread() is not threading.main_thread() or _handler not in (
        signal.getsignal(signal.SIGINT),
        signal.getsignal(signal.SIGTERM),
    ):
        yield
        return
    outer = _state.depth == 0
    _state.depth += 1
    if outer:
        _state.during = what
    try:
        yield
    except BaseException as error:
        if outer and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            if not isinstance(error, Interrupted):
                # a second signal broke the write (torch's zip writer turns it into a RuntimeError)
                raise Interrupted(signum, during=what, completed=False) from error
        raise
    finally:
        _state.depth -= 1
        if outer:
            _state.during = None
    if outer and _state.pending is not None:
        signum, _state.pending = _state.pending, None
        raise Interrupted(signum, during=what)


def interrupted(error: BaseException) -> Optional[Interrupted]:
    """The Interrupted in `error` or its causes. A plain KeyboardInterrupt is not one: Catalyst's
    LRFinder raises it to end its sweep."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Interrupted):
            return error
        error = error.__cause__ or error.__context__
    return None


def exit_status(error: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM."""
    found = interrupted(error)
    return 128 + (found.signum if found else signal.SIGINT)


def command_line(
    argv: Optional[Sequence[str]] = None, drop: Sequence[str] = (), add: Sequence[str] = ()
) -> str:
    """This process's command, shell-quoted, without the options in `drop` (each with its
    value) and with `add` appended: the command that continues the work."""
    argv = list(sys.argv if argv is None else argv)
    argv[0] = os.path.basename(argv[0])
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return shlex.join(kept + list(add))


def _close_progress_bars() -> None:
    """A tqdm bar left open ends its line, so the report starts on a line of its own."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", None) or []):
        bar.close()


def report(program: str, error: BaseException, where: str = "", then: str = "") -> int:
    """Print the one line for an interruption and return the exit status (128 + signal).

    `where` / `then` (or the Interrupted's own) say where it stopped, what is safe and how to
    go on. Silent when a parent process reports it (QUIET_ENV)."""
    found = interrupted(error) or Interrupted()
    if os.environ.get(QUIET_ENV) != "1":
        _close_progress_bars()
        what = _NAMES.get(found.signum, f"signal {found.signum}")
        where, then = where or found.where, then or found.then
        during = ""
        if found.during:
            state = (
                "completed first"
                if found.completed
                else "stopped; what was written before is unchanged"
            )
            during = f" while writing {found.during} ({state})"
        line = f"{program}: interrupted by {what}{' ' + where if where else ''}{during}"
        sys.stderr.write(f"{line}{'; ' + then if then else ''}\n")
        sys.stderr.flush()
    return 128 + found.signum
