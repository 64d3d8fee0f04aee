"""OverlayCallback: each epoch, overlays of the best and worst validation samples by Dice.

    callbacks:
      overlays:
        _target_: podium.callbacks.visuals.OverlayCallback
        loader_key: valid
        num_best: 4
        num_worst: 4

Per-sample Dice (or IoU) is computed on the fly in `on_batch_end` from the batch's logits and
targets; only the `num_best` highest and `num_worst` lowest samples are kept (image, predicted
and true mask, on the CPU), so memory is bounded whatever the size of the loader. At the end
of the loader the overlays are written by `podium.overlays.write_overlay` into

    <logdir>/overlays/<stage>/epoch_<k>/{best,worst}_<rank>_<name>_<dice>.png

where `k` is the epoch within the stage (1-based), rank 0 is the best (resp. worst) sample and
`<dice>` has four decimals. Under DDP every process ranks its own shard; the candidates
(at most num_best + num_worst per process) are gathered and the master process writes.
"""

import heapq
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

from podium.overlays import write_overlay

if TYPE_CHECKING:
    from catalyst.core.runner import IRunner

__all__ = ["OverlayCallback", "per_sample_scores", "predicted_masks"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def predicted_masks(
    logits: torch.Tensor, activation: str = "sigmoid", threshold: float = 0.5
) -> torch.Tensor:
    """B×C×H×W logits → B×H×W int64 masks: 0/1 for one channel (sigmoid > threshold),
    class indices (argmax over channels) for several channels, whatever the activation."""
    if logits.ndim == 3:
        logits = logits[:, None]
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f'activation must be "sigmoid" or "softmax", not {activation!r}')
    if logits.shape[1] == 1:
        if activation == "softmax":
            raise ValueError("activation softmax needs at least two output channels")
        return (torch.sigmoid(logits[:, 0].float()) > threshold).long()
    return logits.argmax(dim=1)


def _target_masks(targets: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Targets (B×1×H×W binary, B×H×W class indices, B×C×H×W one-hot) → B×H×W int64."""
    if targets.ndim == 4:
        if targets.shape[1] == 1:
            targets = targets[:, 0]
        else:
            return targets.argmax(dim=1)
    if num_channels == 1:
        return (targets.float() > 0.5).long()
    return targets.long()


def per_sample_scores(
    predictions: torch.Tensor, targets: torch.Tensor, num_classes: int, metric: str = "dice"
) -> torch.Tensor:
    """Dice (or IoU) of each sample, B×H×W predicted vs true masks → B floats.

    Binary (num_classes 1 or 2): the foreground class. Multi-class: the mean over the
    foreground classes 1..C-1. A class absent from both masks scores 1 (nothing to find,
    nothing found).
    """
    classes = range(1, max(2, num_classes))
    scores = []
    for cls in classes:
        pred = (predictions == cls).flatten(1).float()
        true = (targets == cls).flatten(1).float()
        intersection = (pred * true).sum(1)
        total = pred.sum(1) + true.sum(1)
        if metric == "dice":
            score = 2 * intersection / total.clamp_min(1e-12)
        elif metric == "iou":
            score = intersection / (total - intersection).clamp_min(1e-12)
        else:
            raise ValueError(f'metric must be "dice" or "iou", not {metric!r}')
        scores.append(torch.where(total > 0, score, torch.ones_like(score)))
    return torch.stack(scores, dim=1).mean(dim=1)


class OverlayCallback(Callback):
    """Writes overlay PNGs of the `num_best` / `num_worst` samples of a loader each epoch.

    Args:
        input_key: batch key of the C×H×W images.
        output_key: batch key of the model's logits (B×C×H×W).
        target_key: batch key of the true masks.
        loader_key: the loader whose samples are ranked (default `valid`).
        num_best: how many of the highest-scoring samples to draw.
        num_worst: how many of the lowest-scoring samples to draw.
        metric: `dice` or `iou`, per sample.
        threshold: probability threshold for one sigmoid channel.
        activation: `sigmoid` (one channel: binary) or `softmax` (argmax over classes).
        name_key: batch key of the sample names (falls back to `<epoch sample index>`).
        logdir: where `overlays/` goes (default: the runner's logdir).
    """

    def __init__(
        self,
        input_key: str = "image",
        output_key: str = "logits",
        target_key: str = "mask",
        loader_key: str = "valid",
        num_best: int = 4,
        num_worst: int = 4,
        metric: str = "dice",
        threshold: float = 0.5,
        activation: str = "sigmoid",
        name_key: str = "name",
        logdir: Optional[str] = None,
    ):
        super().__init__(order=CallbackOrder.External, node=CallbackNode.all)
        if metric not in ("dice", "iou"):
            raise ValueError(f'OverlayCallback: metric must be "dice" or "iou", not {metric!r}')
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(
                f'OverlayCallback: activation must be "sigmoid" or "softmax", not {activation!r}'
            )
        if num_best < 0 or num_worst < 0:
            raise ValueError("OverlayCallback: num_best and num_worst must be >= 0")
        self.input_key = input_key
        self.output_key = output_key
        self.target_key = target_key
        self.loader_key = loader_key
        self.num_best = int(num_best)
        self.num_worst = int(num_worst)
        self.metric = metric
        self.threshold = float(threshold)
        self.activation = activation
        self.name_key = name_key
        self.logdir = logdir
        self._reset()

    # -- state ---------------------------------------------------------------------------
    def _reset(self) -> None:
        # min-heaps of (key, tie, item): best keeps the highest scores (key = score),
        # worst keeps the lowest (key = -score); the heap top is the first to be evicted.
        self._best: List[Tuple[float, int, dict]] = []
        self._worst: List[Tuple[float, int, dict]] = []
        self._counter = itertools.count()
        self._seen = 0

    def _active(self, runner: "IRunner") -> bool:
        return runner.loader_key == self.loader_key

    @staticmethod
    def _push(heap: list, size: int, key: float, tie: int, make_item) -> None:
        if size == 0:
            return
        if len(heap) < size:
            heapq.heappush(heap, (key, -tie, make_item()))
        elif key > heap[0][0]:
            # earlier samples win ties: a later one must be strictly better to evict
            heapq.heapreplace(heap, (key, -tie, make_item()))

    # -- events --------------------------------------------------------------------------
    def on_loader_start(self, runner: "IRunner") -> None:
        if self._active(runner):
            self._reset()

    def on_batch_end(self, runner: "IRunner") -> None:
        if not self._active(runner):
            return
        batch = runner.batch
        with torch.no_grad():
            logits = batch[self.output_key].detach()
            if logits.ndim == 3:
                logits = logits[:, None]
            predictions = predicted_masks(logits, self.activation, self.threshold)
            targets = _target_masks(batch[self.target_key].detach(), logits.shape[1])
            scores = per_sample_scores(predictions, targets, logits.shape[1], self.metric)
        names = batch.get(self.name_key) if isinstance(batch, dict) else None
        images = batch[self.input_key]
        for i, score in enumerate(scores.cpu().tolist()):
            tie = next(self._counter)
            index = self._seen + i
            name = str(names[i]) if names is not None else f"{index:06d}"

            def make_item(i=i, score=score, name=name):
                return {
                    "score": score,
                    "name": name,
                    "image": images[i].detach().float().cpu().numpy(),
                    "prediction": predictions[i].cpu().numpy().astype(np.uint8),
                    "target": targets[i].cpu().numpy().astype(np.uint8),
                }

            self._push(self._best, self.num_best, score, tie, make_item)
            self._push(self._worst, self.num_worst, -score, tie, make_item)
        self._seen += len(scores)

    def on_loader_end(self, runner: "IRunner") -> None:
        if not self._active(runner):
            return
        best, worst = self._ranked()
        engine = runner.engine
        if engine is not None and engine.is_ddp:
            best, worst = self._gather(best, worst)
        if engine is None or engine.is_master_process:
            self._write(runner, best, worst)
        self._reset()  # free the images

    # -- ranking and output --------------------------------------------------------------
    def _ranked(self) -> Tuple[List[dict], List[dict]]:
        """Kept items: best by decreasing score, worst by increasing score (ties: first seen)."""
        best = [item for _, _, item in sorted(self._best, key=lambda e: (-e[0], -e[1]))]
        worst = [item for _, _, item in sorted(self._worst, key=lambda e: (-e[0], -e[1]))]
        return best, worst

    def _gather(self, best: List[dict], worst: List[dict]) -> Tuple[List[dict], List[dict]]:
        from catalyst.utils.distributed import all_gather  # podium.compat fixes it on CPU

        parts = all_gather((best, worst))
        all_best = [item for part in parts for item in part[0]]
        all_worst = [item for part in parts for item in part[1]]
        all_best.sort(key=lambda item: -item["score"])  # stable: rank order kept on ties
        all_worst.sort(key=lambda item: item["score"])
        return all_best[: self.num_best], all_worst[: self.num_worst]

    def _logdir(self, runner: "IRunner") -> Optional[Path]:
        logdir = self.logdir or getattr(runner, "logdir", None)
        return Path(logdir) if logdir else None

    def _write(self, runner: "IRunner", best: Sequence[dict], worst: Sequence[dict]) -> None:
        logdir = self._logdir(runner)
        if logdir is None:
            return  # a run without a logdir has nowhere to put files
        folder = logdir / "overlays" / str(runner.stage_key) / f"epoch_{runner.stage_epoch_step}"
        for kind, items in (("best", best), ("worst", worst)):
            for rank, item in enumerate(items):
                name = _UNSAFE.sub("_", item["name"]) or "sample"
                path = folder / f"{kind}_{rank}_{name}_{item['score']:.4f}.png"
                write_overlay(path, item["image"], item["prediction"], item["target"])
