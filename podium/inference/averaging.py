"""Checkpoint averaging (SWA / weight soup): the k best epochs of a run → one checkpoint.

`podium average --run R --top-k 5` averages the weights of the run's k best kept epoch
checkpoints (`checkpoints/<stage>.<epoch>.pth`, as many as its CheckpointCallback's
`save_n_best` keeps) with `torch.optim.swa_utils.AveragedModel` (parameters and buffers),
optionally recomputes the BatchNorm statistics on the run's train loader (built by the CLI) with
`torch.optim.swa_utils.update_bn` (`--bn-update`: the average of several running statistics
is not the statistics of the averaged weights), and writes a checkpoint with
`model_state_dict` that predict, submit and `init_from:` read like any other (the writer and the
BatchNorm update live in `podium.models.averaging`, shared with `podium.callbacks.SWACallback`).
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.optim.swa_utils import AveragedModel

from podium import checkpoints
from podium.errors import PodiumError
from podium.models.averaging import AVERAGED_KEY, update_batchnorm, write_average

__all__ = [
    "AVERAGED_KEY",
    "kept_epochs",
    "top_k",
    "average_weights",
    "update_batchnorm",
    "write_average",
    "run_of",
]

_EPOCH_FILE = re.compile(r"^(?P<stage>.+)\.(?P<epoch>\d+)\.pth$")


def kept_epochs(run_dir) -> List[Dict[str, Any]]:
    """The epoch checkpoints (`<stage>.<epoch>.pth`, not `_full`) of the run's last stage,
    best first by the score they were selected with: [{path, stage, epoch, score}]."""
    folder = Path(run_dir) / "checkpoints"
    last = folder / "last.pth"
    if not last.is_file():
        raise PodiumError(
            f"{run_dir} has no checkpoints/last.pth; expected the run directory of catalyst-dl run"
        )
    stage = checkpoints.read(last, mmap=True).get("stage_key")
    kept = []
    for path in sorted(folder.glob("*.pth")):
        found = _EPOCH_FILE.match(path.name)
        if found is None or found["stage"] != stage:
            continue
        state = checkpoints.read(path, mmap=True)
        metrics = (state.get("epoch_metrics") or {}).get(state.get("checkpointer_loader_key"))
        score = (metrics or {}).get(state.get("checkpointer_metric_key"))
        if score is None:
            score = state.get("global_epoch_step", 0)  # selected by epoch (no metric)
        sign = 1.0 if state.get("checkpointer_minimize") else -1.0
        kept.append({"path": path, "stage": stage, "epoch": int(found["epoch"]), "score": score})
        kept[-1]["rank"] = sign * float(score)
    kept.sort(key=lambda k: k["rank"])
    return kept


def top_k(run_dir, k: int) -> List[Path]:
    """The k best kept epoch checkpoints of the run's last stage."""
    kept = kept_epochs(run_dir)
    if k > len(kept):
        names = ", ".join(p["path"].name for p in sorted(kept, key=lambda p: p["epoch"]))
        raise PodiumError(
            f"--top-k {k}: {Path(run_dir) / 'checkpoints'} keeps {len(kept)} epoch checkpoints "
            f"of its last stage ({names or 'none'}); lower --top-k, or train with "
            f"save_n_best >= {k} in its CheckpointCallback"
        )
    return [p["path"] for p in kept[:k]]


def average_weights(model, paths: Sequence[Path], ema: bool = False) -> Dict[str, torch.Tensor]:
    """The mean of the checkpoints' weights (their EMA weights with `ema`), computed by
    AveragedModel on `model` (which ends up holding the last checkpoint's weights)."""
    averaged = None
    first = None
    for path in paths:
        weights = checkpoints.pick_weights(
            checkpoints.read_checkpoint(path, bare_ok=True), path, ema
        )
        if first is None:
            first = (path, checkpoints.shapes(weights))
        problem = checkpoints.mismatch(first[1], checkpoints.shapes(weights))
        if problem:
            raise PodiumError(
                f"checkpoints of different models: {path} does not fit {first[0]} ({problem}); "
                f"expected checkpoints of one run or of the same model"
            )
        checkpoints.load_model_weights(model, weights, path)
        if averaged is None:
            averaged = AveragedModel(model, use_buffers=True)
        averaged.update_parameters(model)
    return {k: v.detach().clone() for k, v in averaged.module.state_dict().items()}


def run_of(path) -> Optional[Path]:
    """The run directory a checkpoint file lies in (RUN/checkpoints/x.pth), if any."""
    run = Path(path).resolve().parent.parent
    return run if (run / "configs" / "_config.json").is_file() else None
