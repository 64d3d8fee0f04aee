"""CenterNet's penalty-reduced pixel-wise focal loss for keypoint heatmaps (Zhou et al. 2019,
"Objects as Points", eq. 1; from CornerNet).

    L = -1/N Σ { (1 - p)^α log p                 where Y = 1   (a peak)
               { (1 - Y)^β p^α log(1 - p)         otherwise
with p = sigmoid(logit), N the number of peaks (at least 1), α=2, β=4. Inputs are logits;
log p and log(1 - p) come from logsigmoid (no clamping needed). No toolbelt counterpart.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import PodiumLoss

__all__ = ["CenterNetFocalLoss"]


class CenterNetFocalLoss(PodiumLoss):
    """Penalty-reduced focal loss; heatmap targets in [0, 1] with peaks exactly 1 (or ≥
    1 - peak_eps), normalised by the number of peaks in the batch (an empty batch divides by 1).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, peak_eps: float = 0.0):
        super().__init__()
        self.alpha, self.beta, self.peak_eps = float(alpha), float(beta), float(peak_eps)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.to(logits.dtype)
        peak = target >= 1.0 - self.peak_eps
        p = torch.sigmoid(logits)
        positive = (1 - p).pow(self.alpha) * F.logsigmoid(logits)
        reduction = (1 - target).clamp_min(0).pow(self.beta)  # the penalty near peaks
        negative = reduction * p.pow(self.alpha) * F.logsigmoid(-logits)
        loss = torch.where(peak, positive, negative)
        num_peaks = peak.sum().clamp_min(1).to(logits.dtype)
        return -loss.sum() / num_peaks
