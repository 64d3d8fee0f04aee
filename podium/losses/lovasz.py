"""Lovász losses (Berman et al. 2018) on logits: hinge for binary / multi-label, softmax for
multi-class.

Why not toolbelt's `LovaszLoss` directly: it is Lovász-softmax on *probabilities*; fed the
logits a segmentation model returns (as every other criterion here takes) it gives a wrong
value (measured on toolbelt 0.8.0). This module applies the softmax itself.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.losses._base import BINARY, MODES, MULTICLASS, PodiumLoss, check_choice

__all__ = ["LovaszLoss", "lovasz_grad"]


def lovasz_grad(gt_sorted: Tensor) -> Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors (Alg. 1)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def _hinge_flat(logits: Tensor, labels: Tensor) -> Tensor:
    if labels.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, descending=True)
    return torch.dot(F.relu(errors_sorted), lovasz_grad(labels[order]))


def _softmax_flat(probs: Tensor, labels: Tensor) -> Tensor:
    losses = []
    for c in range(probs.size(1)):
        fg = (labels == c).to(probs.dtype)
        if fg.sum() == 0:  # "present" classes only
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


class LovaszLoss(PodiumLoss):
    """Lovász loss on logits.

    - "binary": Lovász hinge of logits N×1×… (or N×…) against 0/1 targets.
    - "multilabel": the binary hinge per channel, averaged over channels.
    - "multiclass": Lovász-softmax of softmax(logits) N×C×… against index targets N×…,
      averaged over the classes present in the target.
    per_image: one loss per image, then the mean (default: the whole batch at once).
    ignore_index: target value of pixels left out; a batch with nothing left gives 0.
    """

    def __init__(
        self, mode: str = BINARY, per_image: bool = False, ignore_index: Optional[int] = None
    ):
        super().__init__()
        check_choice(mode, MODES, "mode")
        self.mode, self.per_image, self.ignore_index = mode, bool(per_image), ignore_index

    def _one(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of one group (the batch, or one image); logits C×P, target P or C×P."""
        if self.mode == MULTICLASS:
            probs = logits.softmax(dim=0).t()  # P×C
            if self.ignore_index is not None:
                keep = target != self.ignore_index
                probs, target = probs[keep], target[keep]
            return _softmax_flat(probs, target)
        losses = []
        for channel_logits, channel_target in zip(logits, target):
            channel_target = channel_target.to(logits.dtype)
            if self.ignore_index is not None:
                keep = channel_target != self.ignore_index
                channel_logits, channel_target = channel_logits[keep], channel_target[keep]
            losses.append(_hinge_flat(channel_logits, channel_target))
        return torch.stack(losses).mean()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        n = logits.size(0)
        if self.mode == MULTICLASS:
            logits = logits.reshape(n, logits.size(1), -1)
            target = target.reshape(n, -1).long()
        else:
            channels = 1 if self.mode == BINARY else logits.size(1)
            logits = logits.reshape(n, channels, -1)
            target = target.reshape(n, channels, -1)
        if self.per_image:
            return torch.stack([self._one(x, t) for x, t in zip(logits, target)]).mean()
        # the whole batch as one group: pixels of all images side by side
        merged_logits = logits.permute(1, 0, 2).reshape(logits.size(1), -1)
        if self.mode == MULTICLASS:
            return self._one(merged_logits, target.reshape(-1))
        return self._one(merged_logits, target.permute(1, 0, 2).reshape(target.size(1), -1))
