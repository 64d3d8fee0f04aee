"""The Overhead Geopose "huber-cos" loss stack as one module.

Geopose models predict per-pixel height above ground (AGL), the magnitude of the per-pixel
flow that maps it to the image, and one 2-vector per image for the flow's direction. The
stack: Huber on height + Huber on magnitude (both ignoring missing targets, NaN by default) +
(1 - cos) and MSE on the direction vector, each term with its own weight.
"""

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import PodiumLoss
from podium.losses.regression import CosineSimilarityLoss, HuberLoss

__all__ = ["HuberCosLoss"]


class HuberCosLoss(PodiumLoss):
    """height_weight·Huber(height) + magnitude_weight·Huber(magnitude)
    + cosine_weight·(1 - cos(direction)) + direction_mse_weight·MSE(direction).

    forward(height, height_target, magnitude, magnitude_target, direction, direction_target):
    heights / magnitudes N×1×H×W (or any matching shape), directions N×2. A term whose
    prediction is None (or weight 0) is skipped. With LossStackCallback or Catalyst's
    CriterionCallback, pass the batch keys as dicts: `input_key: {agl: height, mag: magnitude,
    xydir: direction}`, `target_key: {agl_gt: height_target, ...}`. `last_terms` holds the
    detached terms of the last call, for logging.
    """

    def __init__(
        self,
        height_weight: float = 1.0,
        magnitude_weight: float = 1.0,
        cosine_weight: float = 1.0,
        direction_mse_weight: float = 1.0,
        delta: float = 1.0,
        ignore_value: Optional[float] = math.nan,
    ):
        super().__init__()
        self.weights = {
            "height": float(height_weight),
            "magnitude": float(magnitude_weight),
            "cosine": float(cosine_weight),
            "direction_mse": float(direction_mse_weight),
        }
        self.huber = HuberLoss(delta=delta, ignore_value=ignore_value)
        self.cosine = CosineSimilarityLoss(dim=1)
        self.last_terms: Dict[str, Tensor] = {}

    def forward(
        self,
        height: Optional[Tensor] = None,
        height_target: Optional[Tensor] = None,
        magnitude: Optional[Tensor] = None,
        magnitude_target: Optional[Tensor] = None,
        direction: Optional[Tensor] = None,
        direction_target: Optional[Tensor] = None,
    ) -> Tensor:
        terms = {}
        if height is not None and self.weights["height"]:
            terms["height"] = self.huber(height, height_target)
        if magnitude is not None and self.weights["magnitude"]:
            terms["magnitude"] = self.huber(magnitude, magnitude_target)
        if direction is not None:
            direction_target = direction_target.to(direction.dtype)
            if self.weights["cosine"]:
                terms["cosine"] = self.cosine(direction, direction_target)
            if self.weights["direction_mse"]:
                terms["direction_mse"] = F.mse_loss(direction, direction_target)
        if not terms:
            raise ValueError("HuberCosLoss got no prediction with a non-zero weight")
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        return torch.stack([self.weights[k] * v for k, v in terms.items()]).sum()
