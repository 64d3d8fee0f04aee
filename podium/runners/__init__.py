"""Catalyst config runners assembled from podium's YAML blocks."""
from podium.runners.engines import DDPEngine
from podium.runners.segmentation import SegmentationRunner, set_encoder_trainable

__all__ = ["SegmentationRunner", "set_encoder_trainable", "DDPEngine"]
