"""Dice and IoU accumulated over a whole dataset (tp / fp / fn summed before the ratio).

Dataset-level accumulation is what Catalyst's DiceCallback / IOUCallback report per loader,
so `podium predict` prints the same numbers the validation loader logged.
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConfusionCounts"]


@dataclass
class ConfusionCounts:
    """Pixel counts per class of binary masks, summed over the images added so far."""

    num_classes: int = 1
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)

    def __post_init__(self):
        self.tp = np.zeros(self.num_classes, dtype=np.int64)
        self.fp = np.zeros(self.num_classes, dtype=np.int64)
        self.fn = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """prediction, target: boolean arrays of shape (num_classes, H, W)."""
        prediction = prediction.reshape(self.num_classes, -1).astype(bool)
        target = target.reshape(self.num_classes, -1).astype(bool)
        self.tp += (prediction & target).sum(axis=1)
        self.fp += (prediction & ~target).sum(axis=1)
        self.fn += (~prediction & target).sum(axis=1)

    def dice(self) -> np.ndarray:
        """Per-class Dice; 1.0 where a class is absent from both prediction and target."""
        denominator = 2 * self.tp + self.fp + self.fn
        return np.where(denominator > 0, 2 * self.tp / np.maximum(denominator, 1), 1.0)

    def iou(self) -> np.ndarray:
        """Per-class IoU; 1.0 where a class is absent from both prediction and target."""
        denominator = self.tp + self.fp + self.fn
        return np.where(denominator > 0, self.tp / np.maximum(denominator, 1), 1.0)
