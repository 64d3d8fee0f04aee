"""Soft Jaccard (IoU) loss on logits, global or per image (shares DiceLoss's code).

Same value as toolbelt's `JaccardLoss(from_logits=True)` where toolbelt applies; adds
`ignore_index`, `per_image` and YAML-list `classes` (toolbelt 0.8.0 has no ignore/per-image).
"""

from typing import Optional, Sequence

from torch import Tensor

from podium.losses._base import BINARY
from podium.losses.dice import _OverlapLoss

__all__ = ["JaccardLoss"]


class JaccardLoss(_OverlapLoss):
    """1 - (Σ p·t + smooth) / (Σ p + Σ t - Σ p·t + smooth); arguments as `DiceLoss`."""

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
        union = cardinality - intersection
        return (intersection + self.smooth) / (union + self.smooth).clamp_min(self.eps)
