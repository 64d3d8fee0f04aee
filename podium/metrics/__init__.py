"""Metric math in plain torch/numpy (no Catalyst); `podium.callbacks.metrics` wraps it.

Every metric is an `Accumulator` (state = float64 tensors of sums / counts) with
`update(...)`, `compute()`, `compute_key_value(prefix)` and `reduced()` (state summed over DDP
ranks with one `all_reduce`, so the DDP value equals the single-process value).
"""

from podium.metrics.base import Accumulator
from podium.metrics.boxes import BoxIoU, box_iou
from podium.metrics.classification import ClassificationScores
from podium.metrics.regression import R2Score, r2_from_sums
from podium.metrics.segmentation import ConfusionCounts, SegmentationScores, label_masks
from podium.targets import moved_attribute

__all__ = [
    "Accumulator",
    "BoxIoU",
    "ClassificationScores",
    "ConfusionCounts",
    "R2Score",
    "SegmentationScores",
    "box_iou",
    "label_masks",
    "r2_from_sums",
]

MOVED = {"DetectionMAP": "podium.metrics.detection_map"}  # CenterNet's (podium/tasks)


def __getattr__(name: str):
    return moved_attribute(__name__, name, MOVED)
