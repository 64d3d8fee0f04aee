"""Losses against soft targets (self-training, distillation, pseudo-labels).

The target is a probability map (or the teacher's logits, with `target_logits=True`);
the prediction is the student's logits. Ignored elements (`ignore_index` on the target
values, or pixels whose soft target holds it) are left out of the mean.
"""

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import REDUCTIONS, PodiumLoss, check_choice, ignore_mask, reduce_masked

__all__ = ["KLDivLoss", "SoftTargetBCEWithLogitsLoss"]


class KLDivLoss(PodiumLoss):
    """KL(target ‖ softmax(logits / T)) · T², summed over the class dim (1), mean elsewhere.

    logits N×C×… (student), target N×C×… probabilities (or teacher logits with
    target_logits=True, softened by the same temperature T). For N×C inputs this is
    `F.kl_div(log_softmax(x), q, reduction="batchmean")`; for maps the mean runs over pixels
    too, so the scale does not depend on the image size.
    """

    def __init__(
        self, temperature: float = 1.0, target_logits: bool = False, reduction: str = "mean"
    ):
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        self.temperature, self.target_logits = float(temperature), bool(target_logits)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        t = self.temperature
        log_p = F.log_softmax(logits / t, dim=1)
        if self.target_logits:
            log_q = F.log_softmax(target.to(logits.dtype) / t, dim=1)
            loss = F.kl_div(log_p, log_q, reduction="none", log_target=True)
        else:
            loss = F.kl_div(log_p, target.to(logits.dtype), reduction="none")
        return reduce_masked(loss.sum(dim=1) * t * t, None, self.reduction)


class SoftTargetBCEWithLogitsLoss(PodiumLoss):
    """BCE of sigmoid(logits) against soft targets in [0, 1] (binary / multi-label).

    target_logits=True: the target is a teacher's logits (sigmoid(target / T) is used).
    ignore_index: target value left out of the mean (checked before any sigmoid).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        target_logits: bool = False,
        ignore_index: Optional[Union[int, float]] = None,
        reduction: str = "mean",
    ):
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        self.temperature, self.target_logits = float(temperature), bool(target_logits)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = ignore_mask(target, self.ignore_index)
        target = target.to(logits.dtype)
        if keep is not None:
            target = torch.where(keep, target, torch.zeros_like(target))
        if self.target_logits:
            target = torch.sigmoid(target / self.temperature)
        loss = F.binary_cross_entropy_with_logits(
            logits / self.temperature, target, reduction="none"
        )
        return reduce_masked(loss, keep, self.reduction)
