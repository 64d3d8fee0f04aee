"""Classifier + single-box regressor on a timm backbone (the EfficientNet detector seed).

    image ─► timm backbone ─► feature map ─┬─► global pool ─► class head ─► logits (N, C)
                                           └─► 1×1 conv ─► pool to grid×grid ─► MLP ─► boxes (N, 4)

`forward` returns a dict, which Catalyst's SupervisedRunner merges into the batch, so loss
and metric callbacks read `logits` and `boxes` by key.

Box convention: `boxes` are (cx, cy, w, h) after a sigmoid, i.e. centre and size normalised to
the network input (the letterboxed frame, padding included): every value lies in [0, 1], and
the width/height can never be negative (which an xyxy head with free corners allows). Targets
use the same convention (`podium.tasks.boxes.data`); `BoxIoUCallback(box_format: cxcywh)` reads
them, and `podium.tasks.boxes.predict` maps them back to image pixels.

Why a grid for the box head: global average pooling throws away *where* things are, and a
box is a position. `box_grid: 4` keeps a 4×4 summary of the map (any input size); `box_grid: 1`
is the seed's plain pooled-feature head. Measured on the deepforest crops from random init
(README): grid 1 never beat predicting the mean box.

`model.encoder` is the timm model, so `FreezeCallback` / `UnfreezeCallback` (default module
`encoder`) see its feature stages as blocks — efficientnet_b0: 5 stages + the 1×1 head conv,
resnet18: 5 — and the runner's `freeze_encoder` works as for segmentation models.
"""

from typing import Dict

import torch
from torch import Tensor, nn

from podium.errors import PodiumError
from podium.models.base import PaddedModel
from podium.models.encoders import Pretrained, create_encoder
from podium.models.registry import register_model
from podium.validation import check_int, check_number

__all__ = ["BoxesModel", "build_boxes_model"]


class BoxesModel(PaddedModel):
    """Backbone → pooled features → {"logits": class logits, "boxes": sigmoid cxcywh}.

    Attributes: `encoder` (timm model without classifier), `classifier` (dropout + linear),
    `box_reduce` (1×1 conv + pooling to the grid; None for grid 1), `box_head` (MLP ending in 4
    sigmoid outputs), `num_classes`, `box_grid`, `encoder_name`.
    No padding (`pad_multiple` 1) and no map outputs: the pooling takes any input size, and the
    boxes are relative to the input as given (letterboxed), which padding would change.
    """

    pad_multiple, map_strides = 1, None

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int = 1,
        dropout: float = 0.0,
        box_hidden: int = 256,
        box_grid: int = 4,
        box_channels: int = 64,
        encoder_name: str = "",
    ):
        super().__init__()
        features = int(encoder.num_features)
        self.encoder = encoder
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))
        self.box_reduce = None
        box_in = features
        if box_grid > 1:
            self.box_reduce = nn.Sequential(
                nn.Conv2d(features, box_channels, 1),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(box_grid),
                nn.Flatten(),
            )
            box_in = box_channels * box_grid * box_grid
        self.box_head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(box_in, box_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(box_hidden, 4),
        )
        self.num_classes, self.box_grid, self.encoder_name = num_classes, box_grid, encoder_name

    def forward_padded(self, image: Tensor) -> Dict[str, Tensor]:
        feature_map = self.encoder.forward_features(image)
        pooled = self.encoder.forward_head(feature_map, pre_logits=True)
        if self.box_reduce is None:
            box_features = pooled
        else:
            if feature_map.ndim != 4 or feature_map.shape[1] != self.classifier[1].in_features:
                raise PodiumError(
                    f"{self.encoder_name}: box_grid > 1 needs an N×C×H×W feature map, got "
                    f"{tuple(feature_map.shape)}; use box_grid: 1 for this backbone"
                )
            box_features = self.box_reduce(feature_map)
        return {
            "logits": self.classifier(pooled),
            "boxes": torch.sigmoid(self.box_head(box_features)),
        }


@register_model("boxes")
def build_boxes_model(
    encoder: str = "efficientnet_b0",
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained: Pretrained = False,
    dropout: float = 0.2,
    box_hidden: int = 256,
    box_grid: int = 4,
    box_channels: int = 64,
) -> BoxesModel:
    """A BoxesModel on any timm model (`create_model("boxes", ...)`).

    num_classes: 1 = binary (one logit, BCE) or C class logits. dropout: before both heads.
    box_hidden: width of the box head's hidden layer. box_grid: the box head sees the feature map
    pooled to box_grid × box_grid cells of box_channels (1 = globally pooled features).
    pretrained: false, true (timm's weights from the local cache) or a weights file.
    """
    num_classes = check_int(num_classes, "model num_classes", 1)
    box_hidden = check_int(box_hidden, "model box_hidden", 1)
    box_grid = check_int(box_grid, "model box_grid", 1)
    box_channels = check_int(box_channels, "model box_channels", 1)
    check_number(dropout, "model dropout", "[0, 1)")
    backbone = create_encoder(encoder, in_channels, pretrained, features_only=False)
    return BoxesModel(
        backbone,
        num_classes=num_classes,
        dropout=float(dropout),
        box_hidden=box_hidden,
        box_grid=box_grid,
        box_channels=box_channels,
        encoder_name=encoder,
    )
