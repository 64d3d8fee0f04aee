"""Catalyst config runners assembled from podium's YAML blocks."""

from podium.runners.engines import DDPEngine
from podium.runners.runner import PodiumRunner, SegmentationRunner

__all__ = ["PodiumRunner", "SegmentationRunner", "DDPEngine"]
