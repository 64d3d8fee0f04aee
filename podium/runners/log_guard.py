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
from copy import deepcopy
from typing import Any, Dict, Mapping, Optional

from catalyst.registry import REGISTRY

from podium.errors import PodiumError
from podium.targets import accepted_keys

__all__ = ["LogWriteError", "guard_loggers", "fill_logdirs"]

_WRITING_METHODS = (
    "log_metrics",
    "log_image",
    "log_hparams",
    "log_artifact",
    "flush_log",
    "close_log",
)


class LogWriteError(PodiumError, OSError):
    """A logger could not write; the run stops (its checkpoints so far are kept)."""


def _close_quietly(logger: Any) -> Optional[str]:
    """Close the logger's open files / writers; the name of the first that failed to flush."""
    handles = getattr(
        logger, "logger", None
    )  # public: CSV {loader: file}, TensorBoard {loader: writer}
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
                f"loggers/{name} ({type(logger).__name__}) cannot "
                f"write{place}: {reason}; expected a writable run directory "
                "with free space (the checkpoints written so far are kept)"
            ) from error

    return call


def guard_loggers(loggers: Mapping[str, Any]) -> None:
    """Wrap, in place, the writing methods of each logger of a run (`{config name: logger}`)."""
    for name, logger in loggers.items():
        for method_name in _WRITING_METHODS:
            method = getattr(logger, method_name, None)
            if callable(method):
                setattr(logger, method_name, _guarded(method, name, logger))


def fill_logdirs(params: Mapping[str, Any], logdir: Optional[str]) -> Dict[str, Any]:
    """The `loggers:` block with the run's logdir filled in where a logger needs one and has
    none (CSV, TensorBoard, ...): `--args/logdir=...` moves every output of the run at once."""
    params = deepcopy(dict(params or {}))
    for name, logger_params in params.items():
        factory = REGISTRY.get(logger_params.get("_target_"))  # short Catalyst names too
        if "logdir" not in logger_params and "logdir" in (accepted_keys(factory) or []):
            if logdir is None:
                raise PodiumError(f"loggers/{name} needs a logdir: set args/logdir")
            logger_params.update(logdir=logdir, use_logdir_postfix=True)
    return params
