"""Segmentation models on pytorch-toolbelt + timm (no Catalyst: models know nothing of training)."""

from podium.models.segmentation import ARCHITECTURES, SegmentationModel, build_segmentation_model

__all__ = ["ARCHITECTURES", "SegmentationModel", "build_segmentation_model"]
