"""Atomic checkpoint writes and code-free checkpoint loads.

`catalyst.utils.torch.save_checkpoint` is a bare `torch.save(checkpoint, path)`: a crash, a full
disk or a killed job mid-write leaves a truncated `last_full.pth`/`best.pth` in place of the good
one. The replacement writes a temp file in the same folder, fsyncs it and `os.replace`s it.
`load_checkpoint` relied on torch's default for `weights_only`, which `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`
(or an older torch) turns off, so a checkpoint could run arbitrary code on load; it now passes
`weights_only=True` explicitly. Catalyst's own checkpoints (model/criterion/optimizer/scheduler
state dicts, counters, epoch metrics) are plain containers and load fine that way.
"""
import os
from typing import Any, Mapping

import torch

import catalyst.engines.torch  # noqa: F401  (binds both functions by name)
import catalyst.utils.torch

from podium.compat._patching import rebind

__all__ = ["save_checkpoint", "load_checkpoint", "original_save", "original_load", "apply"]

original_save = catalyst.utils.torch.save_checkpoint
original_load = catalyst.utils.torch.load_checkpoint


def save_checkpoint(checkpoint: Mapping[str, Any], path: str) -> None:
    """torch.save to `.<name>.<pid>.tmp` next to `path`, fsync, then atomically replace `path`."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # persist the rename itself (not supported on every OS/filesystem)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str) -> Any:
    """torch.load on CPU that refuses pickles carrying code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def apply() -> None:
    rebind(original_save, save_checkpoint)
    rebind(original_load, load_checkpoint)
