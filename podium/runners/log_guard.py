"""A logger that cannot write stops the run with one line naming it and the file.

Causes: disk full, quota, a read-only or vanished run folder. Catalyst calls its loggers from
the training loop, so an OSError from a CSV flush or from TensorBoard's writer thread ends in a
traceback. The half-written log files are then flushed again at interpreter exit, and fail again
("Exception ignored in: <_io.TextIOWrapper ...>").

`guard_loggers` wraps the writing methods of each logger instance. The instance keeps its type,
so Catalyst's `isinstance` checks still hold. An OSError becomes a `LogWriteError` (a
PodiumError): one line naming the logger and the file. The logger's open files are closed first,
so nothing is retried at exit. What the logger wrote before, and every checkpoint, stays on disk.
"""
import functools
from typing import Any, Mapping, Optional

from podium.errors import PodiumError

__all__ = ["LogWriteError", "guard_loggers"]

_WRITING_METHODS = ("log_metrics", "log_image", "log_hparams", "log_artifact", "flush_log", "close_log")


class LogWriteError(PodiumError, OSError):
    """A logger could not write; the run stops (its checkpoints so far are kept)."""


def _close_quietly(logger: Any) -> Optional[str]:
    """Close the logger's open files / writers; the name of the first that failed to flush."""
    handles = getattr(logger, "logger", None)  # public: CSV {loader: file}, TensorBoard {loader: writer}
    failed = None
    for handle in handles.values() if isinstance(handles, Mapping) else ():
        try:
            handle.close()
        except Exception:  # the same failure again: the handle is closed all the same
            name = getattr(handle, "name", None) or getattr(handle, "log_dir", None)
            failed = failed or (str(name) if name is not None else None)
    return failed


def _guarded(method, name: str, logger: Any):
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as error:
            if isinstance(error, PodiumError):
                raise
            failed = _close_quietly(logger)
            where = error.filename or failed or getattr(logger, "logdir", None)
            place = f" {where}" if where else ""
            reason = error.strerror or str(error) or type(error).__name__
            raise LogWriteError(
                f"loggers/{name} ({type(logger).__name__}) cannot write{place}: {reason}; expected a "
                f"writable run directory with free space (the checkpoints written so far are kept)"
            ) from error

    return call


def guard_loggers(loggers: Mapping[str, Any]) -> None:
    """Wrap, in place, the writing methods of each logger of a run (`{config name: logger}`)."""
    for name, logger in loggers.items():
        for method_name in _WRITING_METHODS:
            method = getattr(logger, method_name, None)
            if callable(method):
                setattr(logger, method_name, _guarded(method, name, logger))
