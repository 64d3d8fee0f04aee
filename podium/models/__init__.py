"""podium's models on pytorch-toolbelt + timm (no Catalyst: models know nothing of training).

`create_model(name, **kwargs)` builds any registered model ("unet", "fpn", "centernet",
"geopose", "box_classifier": `list_models()`); importing this package registers them.
"""

from podium.models.base import PaddedModel
from podium.models.encoders import create_encoder
from podium.models.registry import create_model, get_model, list_models, register_model
from podium.models.segmentation import ARCHITECTURES, SegmentationModel, build_segmentation_model
from podium.models import centernet, detector, geopose  # noqa: E402,F401 - they register models

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
