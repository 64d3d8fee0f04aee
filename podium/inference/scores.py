"""Dice / IoU of a prediction run's masks against the known masks, merged across ranks.

Separate from the run (pipeline.py) because it is the one place that scores: a run without masks
never builds it.
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np

from podium.inference.sharding import Shards
from podium.metrics import ConfusionCounts

__all__ = ["Scores"]


class Scores:
    """Dice / IoU of the written masks: dataset-level, as the run's training metrics computed
    them, and per image (macro over the same classes), which `podium report` ranks overlays by."""

    def __init__(
        self,
        mode: str,
        num_classes: int,
        class_names: Sequence[str],
        classes: Optional[Sequence[int]],
    ):
        self.mode, self.num_classes, self.class_names = mode, num_classes, list(class_names)
        self.classes = list(classes) if classes is not None else list(range(num_classes))
        self.counts = ConfusionCounts(num_classes=num_classes)
        self.images = 0
        self.per_image: Dict[str, Dict[str, float]] = {}

    def add(self, name: str, mask: np.ndarray, target: np.ndarray) -> None:
        if self.mode == "multiclass":
            classes = np.arange(self.num_classes)[:, None, None]
            predicted, truth = (
                mask[None] == classes,
                np.asarray(target).reshape(mask.shape)[None] == classes,
            )
        else:
            predicted = (mask > 0).reshape(self.num_classes, *mask.shape[-2:])
            truth = np.asarray(target).reshape(predicted.shape) > 0.5
        image = ConfusionCounts(num_classes=self.num_classes)
        image.add(predicted, truth)
        self.counts.tp += image.tp  # the dataset's counts are the sum of the images'
        self.counts.fp += image.fp
        self.counts.fn += image.fn
        self.images += 1
        self.per_image[str(name)] = {
            "dice": float(image.dice()[self.classes].mean()),
            "iou": float(image.iou()[self.classes].mean()),
        }

    def reduce(self, shards: Shards) -> None:
        counts = shards.sum(
            np.stack(
                [
                    self.counts.tp,
                    self.counts.fp,
                    self.counts.fn,
                    np.full_like(self.counts.tp, self.images),
                ]
            )
        )
        self.counts.tp, self.counts.fp, self.counts.fn = counts[0], counts[1], counts[2]
        self.images = int(counts[3][0])
        merged: Dict[str, Dict[str, float]] = {}
        for part in shards.gather(self.per_image):
            merged.update(part)
        self.per_image = dict(sorted(merged.items()))

    def summary(self) -> Dict[str, Any]:
        dice, iou = self.counts.dice(), self.counts.iou()
        return {
            "dice": dice.tolist(),
            "iou": iou.tolist(),
            "dice_macro": float(dice[self.classes].mean()),
            "iou_macro": float(iou[self.classes].mean()),
            "classes": self.class_names,
            "macro_over": [self.class_names[c] for c in self.classes],
            "per_image": self.per_image,
        }
