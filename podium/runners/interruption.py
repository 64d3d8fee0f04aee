"""What a stopped `catalyst-dl run` tells the user: where it stopped, what is safe, how to go on."""

import os
import re
from pathlib import Path
from typing import Optional

from catalyst.callbacks.checkpoint import CheckpointCallback

from podium import interrupts
from podium.runners.resume import RESUME_FILE

__all__ = ["position", "last_checkpoint", "explain"]

_EPOCH_FILE = re.compile(r"^(?P<stage>.+)\.(?P<epoch>\d+)_full\.pth$")


def position(runner) -> str:
    """'in stage train, epoch 5 of 40 (loader valid, batch 3 of 8)', as far as it got."""
    stage = getattr(runner, "stage_key", None)
    if not stage:
        return "before training started"
    text = f"in stage {stage}"
    epoch, epochs = getattr(runner, "stage_epoch_step", 0), getattr(runner, "stage_epoch_len", 0)
    if epoch:
        text += f", epoch {epoch}" + (f" of {epochs}" if epochs else "")
    loader, batch, batches = (
        getattr(runner, key, None)
        for key in ("loader_key", "loader_batch_step", "loader_batch_len")
    )
    if loader and batch:
        text += f" (loader {loader}, batch {batch}" + (
            f" of {batches})" if batches and batch <= batches else ")"
        )
    return text


def _checkpoint_folder(runner) -> Optional[Path]:
    for callback in (getattr(runner, "callbacks", None) or {}).values():
        if isinstance(callback, CheckpointCallback):
            return Path(callback.logdir)
    logdir = getattr(runner, "_logdir", None)
    return Path(logdir) / "checkpoints" if logdir else None


def last_checkpoint(folder: Optional[Path]) -> Optional[str]:
    """'DIR/train.4_full.pth (stage train, epoch 4)': the file `last_full.pth` is, or None."""
    if folder is None or not (folder / RESUME_FILE).is_file():
        return None
    last = folder / RESUME_FILE
    for candidate in sorted(folder.glob("*_full.pth")):
        found = _EPOCH_FILE.match(candidate.name)
        if found and candidate != last and os.path.samefile(candidate, last):
            return f"{candidate} (stage {found['stage']}, epoch {found['epoch']})"
    return str(last)


def explain(runner, stop: interrupts.Interrupted, where: str = "") -> interrupts.Interrupted:
    """`stop` with where the run was, its last complete checkpoint and the command that
    continues."""
    command = interrupts.command_line(
        drop=("--resume", "--autoresume"), add=("--autoresume", "last")
    )
    checkpoint = last_checkpoint(_checkpoint_folder(runner))
    safe = (
        f"the last complete checkpoint is {checkpoint}"
        if checkpoint
        else "no epoch had ended, so there is no checkpoint yet (the command below starts anew)"
    )
    return stop.with_message(where or position(runner), f"{safe}; continue with: {command}")
