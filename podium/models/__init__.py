"""podium's models on pytorch-toolbelt + timm (no Catalyst: models know nothing of training).

`create_model(name, **kwargs)` builds any registered model: "unet" and "fpn" (registered by
importing this package) and the tasks' "centernet", "geopose" and "boxes" (podium/tasks, imported
by the registry when first needed): `list_models()`.
"""

from podium.models.base import PaddedModel
from podium.models.encoders import create_encoder
from podium.models.registry import create_model, get_model, list_models, register_model
from podium.models.segmentation import ARCHITECTURES, SegmentationModel, build_segmentation_model

__all__ = [
    "ARCHITECTURES",
    "PaddedModel",
    "SegmentationModel",
    "build_segmentation_model",
    "create_encoder",
    "create_model",
    "get_model",
    "list_models",
    "register_model",
]
