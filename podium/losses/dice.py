"""Soft Dice loss on logits (binary / multi-label / multi-class), global or per image.

Same value as toolbelt's `DiceLoss(from_logits=True)` for what toolbelt does; the wrapper
exists because toolbelt 0.8.0's `DiceLoss(classes=[1, 2])` (a YAML list) is broken — its
`to_tensor` calls `np.ndarray([1, 2])`, an uninitialised array of *shape* 1×2, so the loss raises
IndexError or silently averages arbitrary channels; only a tensor works — and because toolbelt
has no per-image mode. `JaccardLoss` shares the code.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.errors import PodiumError
from podium.losses._base import BINARY, MODES, MULTICLASS, PodiumLoss, check_choice

__all__ = ["DiceLoss", "soft_overlap"]


def soft_overlap(
    logits: Tensor, target: Tensor, mode: str, ignore_index=None, per_image: bool = False
):
    """(intersection, cardinality = Σp + Σt, Σt) of soft predictions, per class.

    Shapes: [C] summed over batch and pixels (global), or [N, C] per image.
    binary: logits N×1×… (or N×…), target of the same size; multilabel: N×C×… both;
    multiclass: logits N×C×…, class-index target N×….  Ignored pixels count nowhere.
    """
    n = logits.size(0)
    if mode == MULTICLASS:
        probs = logits.softmax(dim=1).reshape(n, logits.size(1), -1)
        target = target.reshape(n, -1).long()
        keep = None if ignore_index is None else target != ignore_index
        safe = target if keep is None else torch.where(keep, target, torch.zeros_like(target))
        truth = F.one_hot(safe, logits.size(1)).permute(0, 2, 1).to(probs.dtype)
        if keep is not None:
            keep = keep.unsqueeze(1)
    else:
        channels = 1 if mode == BINARY else logits.size(1)
        probs = torch.sigmoid(logits).reshape(n, channels, -1)
        target = target.reshape(n, channels, -1)
        keep = None if ignore_index is None else target != ignore_index
        truth = target.to(probs.dtype)
        if keep is not None:
            truth = torch.where(keep, truth, torch.zeros_like(truth))
    if keep is not None:
        probs = probs * keep.to(probs.dtype)
        truth = truth * keep.to(probs.dtype)
    dims = (2,) if per_image else (0, 2)
    intersection = (probs * truth).sum(dims)
    cardinality = (probs + truth).sum(dims)
    return intersection, cardinality, truth.sum(dims)


class _OverlapLoss(PodiumLoss):
    def _setup(self, mode, classes, log_loss, smooth, eps, ignore_index, per_image, skip_empty):
        check_choice(mode, MODES, "mode")
        if classes is not None:
            if mode == BINARY:
                raise PodiumError(
                    f"{type(self).__name__}: `classes` needs mode multiclass or multilabel"
                )
            if isinstance(classes, Tensor):
                classes = classes.tolist()
            classes = [int(c) for c in classes]
        self.mode, self.classes, self.log_loss = mode, classes, bool(log_loss)
        self.smooth, self.eps = float(smooth), float(eps)
        self.ignore_index, self.per_image = ignore_index, bool(per_image)
        self.skip_empty = bool(skip_empty)

    def _score(self, intersection: Tensor, cardinality: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        intersection, cardinality, positives = soft_overlap(
            logits, target, self.mode, self.ignore_index, self.per_image
        )
        score = self._score(intersection, cardinality)
        loss = -torch.log(score.clamp_min(self.eps)) if self.log_loss else 1.0 - score
        if self.skip_empty:
            loss = loss * (positives > 0).to(loss.dtype)
        if self.classes is not None:
            loss = loss[..., self.classes]
        return loss.mean()


class DiceLoss(_OverlapLoss):
    """1 - soft Dice = 1 - (2 Σ p·t + smooth) / (Σ p + Σ t + smooth), on logits.

    Args:
        mode: "binary" | "multilabel" (sigmoid) | "multiclass" (softmax, index targets).
        classes: channels that enter the mean (a YAML list works); None: all.
        log_loss: -log(Dice) instead of 1 - Dice.
        smooth: added to numerator and denominator: keeps the score defined and smooth for
            (nearly) empty masks; 0 (default) is the exact soft Dice.
        eps: lower bound of the denominator.
        ignore_index: target value of pixels that count nowhere.
        per_image: one score per image and class, then the mean (default: one score per
            class over the whole batch).
        skip_empty: a class (per image, if per_image) without target pixels contributes 0
            (and still counts in the mean) — toolbelt/smp behaviour. With smooth > 0,
            skip_empty=False instead rewards predicting nothing on empty masks.
    """

    def __init__(
        self,
        mode: str = BINARY,
        classes: Optional[Sequence[int]] = None,
        log_loss: bool = False,
        smooth: float = 0.0,
        eps: float = 1e-7,
        ignore_index: Optional[int] = None,
        per_image: bool = False,
        skip_empty: bool = True,
    ):
        super().__init__()
        self._setup(mode, classes, log_loss, smooth, eps, ignore_index, per_image, skip_empty)

    def _score(self, intersection: Tensor, cardinality: Tensor) -> Tensor:
        return (2.0 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(self.eps)
