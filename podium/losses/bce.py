"""Binary and multi-class cross-entropy on logits, with ignored pixels left out of the mean.

Why not toolbelt's `SoftBCEWithLogitsLoss`: with `ignore_index` it zeroes the ignored pixels
but still divides by *all* pixels, so the loss shrinks with the share of ignored pixels
(measured on toolbelt 0.8.0). Why not bare `F.cross_entropy`: when every pixel of a batch is
ignored it returns NaN (0/0); here the loss is 0 with a zero gradient.
"""

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import REDUCTIONS, PodiumLoss, check_choice, ignore_mask, reduce_masked

__all__ = ["BCEWithLogitsLoss", "SoftBCEWithLogitsLoss", "CrossEntropyLoss"]


def _as_tensor(value) -> Optional[Tensor]:
    if value is None or isinstance(value, Tensor):
        return value
    return torch.as_tensor(value, dtype=torch.float32)


class SoftBCEWithLogitsLoss(PodiumLoss):
    """BCE on logits (binary / multi-label: any shape, target of the logits' shape).

    Args:
        smooth_factor: label smoothing s: targets 1 → 1 - s, 0 → s (toolbelt/smp convention).
        ignore_index: target value whose elements are left out (also of the mean's count);
            may be NaN. None: nothing ignored.
        pos_weight: weight of positives, a number or one value per channel (broadcast like
            torch's `pos_weight`).
        reduction: "mean" (over the elements kept), "sum" or "none".
    """

    def __init__(
        self,
        smooth_factor: float = 0.0,
        ignore_index: Optional[Union[int, float]] = None,
        pos_weight: Optional[Union[float, Sequence[float]]] = None,
        reduction: str = "mean",
    ):
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        self.smooth_factor = float(smooth_factor or 0.0)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.register_buffer("pos_weight", _as_tensor(pos_weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = ignore_mask(target, self.ignore_index)
        target = target.to(logits.dtype)
        if keep is not None:
            target = torch.where(keep, target, torch.zeros_like(target))
        if self.smooth_factor:
            target = target * (1 - self.smooth_factor) + (1 - target) * self.smooth_factor
        pos_weight = self.pos_weight
        if pos_weight is not None and pos_weight.dim() == 1 and logits.dim() > 2:
            pos_weight = pos_weight.view(-1, *([1] * (logits.dim() - 2)))  # per channel
        loss = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction="none"
        )
        return reduce_masked(loss, keep, self.reduction)


class BCEWithLogitsLoss(SoftBCEWithLogitsLoss):
    """Plain BCE on logits with an optional ignored target value (no label smoothing)."""

    def __init__(
        self,
        ignore_index: Optional[Union[int, float]] = None,
        pos_weight: Optional[Union[float, Sequence[float]]] = None,
        reduction: str = "mean",
    ):
        super().__init__(
            smooth_factor=0.0,
            ignore_index=ignore_index,
            pos_weight=pos_weight,
            reduction=reduction,
        )


class CrossEntropyLoss(PodiumLoss):
    """Softmax cross-entropy on logits N×C×… with class-index targets N×… (multi-class).

    Same value as `F.cross_entropy(..., ignore_index, label_smoothing)` (for `weight`:
    mean weighted by the target classes' weights, like torch), but 0 instead of NaN when
    every element is ignored.
    """

    def __init__(
        self,
        weight: Optional[Sequence[float]] = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ):
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.register_buffer("weight", _as_tensor(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.long()
        loss = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )  # 0 at ignored elements
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        keep = target != self.ignore_index
        if self.weight is not None:
            safe = torch.where(keep, target, torch.zeros_like(target))
            denominator = (self.weight[safe] * keep).sum()
        else:
            denominator = keep.sum().to(loss.dtype)
        return loss.sum() / denominator.clamp_min(torch.finfo(loss.dtype).tiny)
