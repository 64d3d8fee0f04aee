"""Averaged weights on disk, shared by `podium average` and the SWA callback: the checkpoint an
average is written as, and the BatchNorm statistics recomputed for it.

An averaged checkpoint holds `model_state_dict` (what predict, submit and `init_from:` read),
`averaged_from` (what it is the mean of) and `bn_updated`. BatchNorm statistics of averaged
weights are not the average of the running statistics: `update_batchnorm` recomputes them with
`torch.optim.swa_utils.update_bn` over a loader of dict batches.
"""

from pathlib import Path
from typing import Sequence

from torch.optim.swa_utils import update_bn

from podium import checkpoints
from podium.compat.checkpoint import save_checkpoint
from podium.errors import PodiumError

__all__ = ["AVERAGED_KEY", "update_batchnorm", "write_average"]

AVERAGED_KEY = "averaged_from"  # what an averaged checkpoint was made of


def update_batchnorm(model, loader, input_key: str, device) -> None:
    """torch's update_bn over the loader's `input_key` tensors (batches are dicts)."""
    update_bn((batch[input_key] for batch in loader), model, device=device)


def write_average(path, weights, sources: Sequence, bn_updated: bool) -> Path:
    """An averaged checkpoint, written atomically; never over a checkpoint of training."""
    path = Path(path)
    if path.is_file() and AVERAGED_KEY not in checkpoints.read(path, mmap=True):
        raise PodiumError(
            f"{path} exists and is not an averaged checkpoint; expected a new file name "
            f"(the checkpoints training wrote are kept)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model_state_dict": weights,
        AVERAGED_KEY: [str(p) for p in sources],
        "bn_updated": bool(bn_updated),
    }
    save_checkpoint(checkpoint, str(path))
    return path
