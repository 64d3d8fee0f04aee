"""Regression losses with an ignore value: Huber, smooth-L1 / L1 (boxes), cosine (vectors).

torch's built-ins have no way to leave out missing targets (e.g. NaN heights, padded boxes);
these drop them from the mean. No toolbelt counterpart (toolbelt 0.8.0 has no Huber/cosine).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import REDUCTIONS, PodiumLoss, check_choice, ignore_mask, reduce_masked

__all__ = ["HuberLoss", "SmoothL1Loss", "L1Loss", "CosineSimilarityLoss"]


class _ElementwiseLoss(PodiumLoss):
    def _setup(self, ignore_value, reduction):
        check_choice(reduction, REDUCTIONS, "reduction")
        self.ignore_value, self.reduction = ignore_value, reduction

    def _elementwise(self, prediction: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        target = target.to(prediction.dtype)
        keep = ignore_mask(target, self.ignore_value)
        if keep is not None:  # a finite stand-in, so that 0 · loss stays 0 (also its gradient)
            target = torch.where(keep, target, prediction.detach())
        return reduce_masked(self._elementwise(prediction, target), keep, self.reduction)


class HuberLoss(_ElementwiseLoss):
    """`F.huber_loss(delta)` over the elements whose target is not `ignore_value` (NaN works)."""

    def __init__(
        self, delta: float = 1.0, ignore_value: Optional[float] = None, reduction: str = "mean"
    ):
        super().__init__()
        self._setup(ignore_value, reduction)
        self.delta = float(delta)

    def _elementwise(self, prediction, target):
        return F.huber_loss(prediction, target, delta=self.delta, reduction="none")


class SmoothL1Loss(_ElementwiseLoss):
    """`F.smooth_l1_loss(beta)` (box regression) with an optional ignored target value."""

    def __init__(
        self, beta: float = 1.0, ignore_value: Optional[float] = None, reduction: str = "mean"
    ):
        super().__init__()
        self._setup(ignore_value, reduction)
        self.beta = float(beta)

    def _elementwise(self, prediction, target):
        return F.smooth_l1_loss(prediction, target, beta=self.beta, reduction="none")


class L1Loss(_ElementwiseLoss):
    """`F.l1_loss` (box regression) with an optional ignored target value."""

    def __init__(self, ignore_value: Optional[float] = None, reduction: str = "mean"):
        super().__init__()
        self._setup(ignore_value, reduction)

    def _elementwise(self, prediction, target):
        return F.l1_loss(prediction, target, reduction="none")


class CosineSimilarityLoss(PodiumLoss):
    """1 - cos(prediction, target) along `dim` (vector fields: flow, normals, directions).

    Positions are left out when any component of the target equals `ignore_value` (NaN works)
    or, with `ignore_zero=True`, when the target vector is all zeros (no direction).
    """

    def __init__(
        self,
        dim: int = 1,
        eps: float = 1e-8,
        ignore_value: Optional[float] = None,
        ignore_zero: bool = False,
        reduction: str = "mean",
    ):
        super().__init__()
        check_choice(reduction, REDUCTIONS, "reduction")
        self.dim, self.eps, self.ignore_value = int(dim), float(eps), ignore_value
        self.ignore_zero, self.reduction = bool(ignore_zero), reduction

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        target = target.to(prediction.dtype)
        keep = ignore_mask(target, self.ignore_value)
        if keep is not None:
            keep = keep.all(dim=self.dim)
        if self.ignore_zero:
            nonzero = (target != 0).any(dim=self.dim)
            keep = nonzero if keep is None else keep & nonzero
        if keep is not None:
            target = torch.where(keep.unsqueeze(self.dim), target, torch.ones_like(target))
        loss = 1.0 - F.cosine_similarity(prediction, target, dim=self.dim, eps=self.eps)
        return reduce_masked(loss, keep, self.reduction)
