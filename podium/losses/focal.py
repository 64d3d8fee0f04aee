"""Focal loss (Lin et al. 2017) on logits: sigmoid focal for binary / multi-label, a true
softmax focal for multi-class.

Why not toolbelt's: `BinaryFocalLoss(ignore_index=...)` zeroes ignored pixels but divides
by all pixels (the loss shrinks with the ignored share); `CrossEntropyFocalLoss` is a
per-class sigmoid BCE weighted by a softmax term, not -(1 - p_t)^γ log p_t of the softmax
(both measured on toolbelt 0.8.0).
"""

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.errors import PodiumError
from podium.losses._base import (
    BINARY,
    MODES,
    MULTICLASS,
    REDUCTIONS,
    PodiumLoss,
    check_choice,
    ignore_mask,
    reduce_masked,
)

__all__ = ["FocalLoss", "BinaryFocalLoss", "SoftmaxFocalLoss"]


class FocalLoss(PodiumLoss):
    """Focal loss; `mode` picks the form.

    - "binary" / "multilabel": logits and targets of one shape (targets 0/1, or `ignore_index`);
      per element -α_t (1 - p_t)^γ log p_t with p = sigmoid(logit), α_t = α for positives,
      1 - α for negatives (α=None: no balancing).
    - "multiclass": logits N×C×…, class-index targets N×…; -α_c (1 - p_t)^γ log p_t with p the
      softmax of the target class; α: None or one weight per class.
    The mean runs over the elements that are not ignored (0 with zero gradient if none).
    """

    def __init__(
        self,
        mode: str = BINARY,
        alpha: Optional[Union[float, Sequence[float]]] = None,
        gamma: float = 2.0,
        ignore_index: Optional[Union[int, float]] = None,
        reduction: str = "mean",
    ):
        super().__init__()
        check_choice(mode, MODES, "mode")
        check_choice(reduction, REDUCTIONS, "reduction")
        self.mode, self.gamma, self.reduction = mode, float(gamma), reduction
        self.ignore_index = ignore_index
        if mode == MULTICLASS:
            if alpha is not None and not isinstance(alpha, (list, tuple, Tensor)):
                raise PodiumError(
                    f"FocalLoss(mode=multiclass) takes alpha as one weight per class, got {alpha!r}"
                )
            self.register_buffer(
                "alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
            )
        else:
            if alpha is not None and not 0 <= float(alpha) <= 1:
                raise PodiumError(f"FocalLoss alpha must be in [0, 1] (got {alpha})")
            self.alpha = None if alpha is None else float(alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.mode == MULTICLASS:
            return self._softmax(logits, target)
        return self._sigmoid(logits, target)

    def _sigmoid(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = ignore_mask(target, self.ignore_index)
        target = target.to(logits.dtype)
        if keep is not None:
            target = torch.where(keep, target, torch.zeros_like(target))
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log p_t
        p_t = torch.exp(-bce)
        loss = (1 - p_t).pow(self.gamma) * bce
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return reduce_masked(loss, keep, self.reduction)

    def _softmax(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.long()
        keep = None if self.ignore_index is None else target != self.ignore_index
        safe = target if keep is None else torch.where(keep, target, torch.zeros_like(target))
        log_p_t = F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -(1 - log_p_t.exp()).pow(self.gamma) * log_p_t
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.dtype)[safe]
        return reduce_masked(loss, keep, self.reduction)


class BinaryFocalLoss(FocalLoss):
    """`FocalLoss(mode="binary")`: sigmoid focal per element (binary or multi-label)."""

    def __init__(
        self,
        alpha: Optional[float] = None,
        gamma: float = 2.0,
        ignore_index: Optional[Union[int, float]] = None,
        reduction: str = "mean",
    ):
        super().__init__(
            BINARY, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction
        )


class SoftmaxFocalLoss(FocalLoss):
    """`FocalLoss(mode="multiclass")`: -α_c (1 - p_t)^γ log p_t of the softmax (γ=0: CE)."""

    def __init__(
        self,
        alpha: Optional[Sequence[float]] = None,
        gamma: float = 2.0,
        ignore_index: Optional[int] = -100,
        reduction: str = "mean",
    ):
        super().__init__(
            MULTICLASS, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction
        )
