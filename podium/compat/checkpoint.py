"""Atomic checkpoint writes and code-free checkpoint loads.

`catalyst.utils.torch.save_checkpoint` is a bare `torch.save(checkpoint, path)`: a crash, a full
disk or a killed job mid-write leaves a truncated `last_full.pth`/`best.pth` in place of the good
one. The replacement writes a temp file in the same folder, fsyncs it and `os.replace`s it.
`CheckpointCallback` then makes `best.pth` / `last.pth` with a bare `shutil.copyfile`, which a
kill truncates the same way, and which re-writes up to twice the checkpoint's size every epoch
(0.6 s per epoch for the demo's 230 MB full checkpoint on CPU): they become hard links to the
file just written (a temp link renamed over the target: atomic, no bytes copied), or, where the
filesystem has no hard links, copies through the same temp-file-and-rename.
A write that fails (disk full, quota, a file-size limit) raises `CheckpointWriteError` (a
PodiumError and an OSError): one line naming the file, instead of torch's
"[enforce fail at inline_container.cc] unexpected pos" traceback; the previous file stays.
`load_checkpoint` relied on torch's default for `weights_only`, which
`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` (or an older torch) turns off, so a checkpoint could run
arbitrary code on load; it now passes
`weights_only=True` explicitly. Catalyst's own checkpoints (model/criterion/optimizer/scheduler
state dicts, counters, epoch metrics) are plain containers and load fine that way.
Reading, with its one-line errors, is in `podium.checkpoints` (`describe_load_error` re-exported).
"""

import os
import shutil
from typing import Any, Mapping

import torch

import catalyst.callbacks.checkpoint
import catalyst.engines.torch  # noqa: F401  (binds both functions by name)
import catalyst.utils.torch

from podium import interrupts
from podium.checkpoints import describe_load_error, load  # noqa: F401  (re-exported)
from podium.compat._patching import rebind
from podium.errors import PodiumError

__all__ = [
    "CheckpointWriteError",
    "describe_load_error",
    "save_checkpoint",
    "load_checkpoint",
    "copy_checkpoint",
    "link_checkpoint",
    "save_callback_checkpoint",
    "original_save",
    "original_load",
    "original_callback_save",
    "apply",
]

original_save = catalyst.utils.torch.save_checkpoint
original_load = catalyst.utils.torch.load_checkpoint
original_callback_save = catalyst.callbacks.checkpoint._save_checkpoint


class CheckpointWriteError(PodiumError, OSError):
    """A checkpoint could not be written; the file it would have replaced is unchanged."""


def _write_failure(path: str, error: BaseException) -> CheckpointWriteError:
    reason = (
        getattr(error, "strerror", None) or (str(error).splitlines() or [type(error).__name__])[0]
    )
    if isinstance(error, RuntimeError):  # torch's zip writer: "[enforce fail ...] unexpected pos"
        reason = "the write stopped short (disk full, quota or file-size limit?)"
    return CheckpointWriteError(
        f"cannot write checkpoint {path}: {reason}; expected a writable folder with free space "
        f"(the previous {os.path.basename(path)}, if there was one, is unchanged)"
    )


def _temporary_name(path: str):
    folder, name = os.path.split(os.path.abspath(path))
    return folder, os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def _fsync_folder(folder: str) -> None:
    """Persist a rename (not supported on every OS/filesystem: then nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(path: str, write) -> None:
    """`write(file)` into `.<name>.<pid>.tmp` next to `path`, fsync, then replace `path`."""
    path = os.fspath(path)
    folder, tmp = _temporary_name(path)
    # Ctrl-C waits for the file; a second one stops it (an Interrupted, not a "disk full")
    with interrupts.deferred(path):
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as error:
            if os.path.exists(tmp):
                os.remove(tmp)
            if isinstance(error, (OSError, RuntimeError)) and not isinstance(error, PodiumError):
                raise _write_failure(path, error) from error  # torch's writer: RuntimeError
            raise
    _fsync_folder(folder)


def save_checkpoint(checkpoint: Mapping[str, Any], path: str) -> None:
    """torch.save, atomically."""
    _write_atomically(path, lambda f: torch.save(checkpoint, f))


def copy_checkpoint(source: str, target: str) -> None:
    """shutil.copyfile, atomically."""
    with open(source, "rb") as src:
        _write_atomically(target, lambda f: shutil.copyfileobj(src, f))


def link_checkpoint(source: str, target: str) -> None:
    """`target` becomes a hard link to `source` (already written and fsynced), atomically: a
    temp link renamed over `target`. Every checkpoint write replaces its file (a new inode), so
    the link never changes after the fact, and deleting `source` (Catalyst's top-k clean-up)
    leaves `target` whole. Without hard links (some network / FAT filesystems): an atomic copy."""
    source, target = os.fspath(source), os.fspath(target)
    folder, tmp = _temporary_name(target)
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.link(source, tmp)
    except OSError:
        copy_checkpoint(source, target)
        return
    try:
        os.replace(tmp, target)
    except OSError as error:
        os.remove(tmp)
        raise _write_failure(target, error) from error
    _fsync_folder(folder)


def save_callback_checkpoint(
    checkpoint, runner, logdir, suffix, is_best=False, is_last=False, extra_suffix=""
) -> str:
    """CheckpointCallback's `_save_checkpoint`, with best/last as atomic hard links."""
    os.makedirs(logdir, exist_ok=True)
    filename = f"{logdir}/{suffix}.pth"
    runner.engine.save_checkpoint(checkpoint, filename)
    if is_best:
        link_checkpoint(filename, f"{logdir}/best{extra_suffix}.pth")
    if is_last:
        link_checkpoint(filename, f"{logdir}/last{extra_suffix}.pth")
    return filename


load_checkpoint = load  # torch.load on CPU that refuses pickles carrying code


def apply() -> None:
    rebind(original_save, save_checkpoint)
    rebind(original_load, load_checkpoint)
    rebind(original_callback_save, save_callback_checkpoint)
