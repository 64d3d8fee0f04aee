"""Metric math in plain numpy/torch; Catalyst callbacks wrap it."""
from podium.metrics.segmentation import ConfusionCounts

__all__ = ["ConfusionCounts"]
