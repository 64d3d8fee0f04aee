"""CenterNet ("Objects as Points", Zhou et al. 2019) on a timm encoder, from pytorch-toolbelt parts.

    image ─► pad to ×32 ─► GenericTimmEncoder (feature maps of stride ≥ output_stride)
          ─► UNetDecoder (finest map, stride `output_stride`, default 4)
          ─┬─► 3×3 conv ─ ReLU ─ 1×1 conv ─► heatmap  N×C×h×w   (logits, one channel per class)
           ├─► 3×3 conv ─ ReLU ─ 1×1 conv ─► size     N×2×h×w   (box w, h in output cells)
           └─► 3×3 conv ─ ReLU ─ 1×1 conv ─► offset   N×2×h×w   (centre − cell centre, in cells)

with h = ceil(H / output_stride), w = ceil(W / output_stride). `forward` returns the dict
{"heatmap", "size", "offset"}; Catalyst's SupervisedRunner merges it into the batch, so the
loss terms and the mAP callback read the heads by key.

The target encoding (`podium.tasks.centernet.data`), which `decode_centernet` inverts: output
cell (i, j) covers input pixels [j·s, (j+1)·s) × [i·s, (i+1)·s) (s = output_stride, pixel-edge
coordinates); a box with centre (cx, cy) peaks at cell (⌊cy/s⌋, ⌊cx/s⌋) with offset
(cx/s − (j + ½), cy/s − (i + ½)) ∈ [−½, ½)² — measured from the cell *centre*, so that a flip
of the map is exactly a sign change of that offset component and a transpose swaps the two
(D4 test-time augmentation treats it as a vector field); size = (w/s, h/s).

The heatmap bias starts at −2.19 (prior probability 0.1), as in CenterNet, so the focal loss
does not start from a flood of false peaks. `model.encoder` is the toolbelt encoder, so the
runner's `freeze_encoder` and `FreezeCallback` / `UnfreezeCallback` work as for segmentation.
"""

import math
from typing import Dict, List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from podium.errors import PodiumError
from podium.models.base import PaddedModel
from podium.models.encoders import Pretrained, create_encoder
from podium.models.registry import register_model
from podium.models.segmentation import unet_channels
from podium.validation import check_int

__all__ = ["CenterNet", "HEADS", "build_centernet", "decode_centernet"]

HEADS = ("heatmap", "size", "offset")
HEATMAP_PRIOR = 0.1


def _head(in_channels: int, hidden: int, out_channels: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, kernel_size=1),
    )
    nn.init.constant_(head[-1].bias, bias)
    return head


class CenterNet(PaddedModel):
    """Encoder → U-Net decoder at `output_stride` → heatmap / size / offset heads (dict output).

    Attributes: `encoder` (toolbelt `GenericTimmEncoder`), `decoder` (toolbelt `UNetDecoder`),
    `heads` (ModuleDict heatmap, size, offset), `output_stride`, `num_classes`, `encoder_name`.
    Inputs of any size: padded (reflect) at the bottom/right to a multiple of the encoder's
    coarsest stride (`pad_multiple`), the maps cropped to ceil(H / output_stride) ×
    ceil(W / output_stride) (`PaddedModel`), so the top-left cell covers the top-left pixels.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        heads: nn.ModuleDict,
        output_stride: int = 4,
        num_classes: int = 1,
        encoder_name: str = "",
    ):
        super().__init__()
        self.encoder, self.decoder, self.heads = encoder, decoder, heads
        self.output_stride, self.num_classes, self.encoder_name = (
            output_stride,
            num_classes,
            encoder_name,
        )
        self.pad_multiple = int(max(encoder.get_output_spec().strides))
        self.map_strides = output_stride

    def forward_padded(self, image: Tensor) -> Dict[str, Tensor]:
        features = self.decoder(self.encoder(image))[0]
        return {name: head(features) for name, head in self.heads.items()}


@register_model("centernet")
def build_centernet(
    encoder: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained: Pretrained = False,
    output_stride: int = 4,
    decoder_channels: Union[None, int, Sequence[int]] = None,
    head_channels: int = 64,
) -> CenterNet:
    """A CenterNet on any convolutional timm encoder (`create_model("centernet", ...)`).

    num_classes: heatmap channels (one per class). output_stride: stride of the output maps,
    one of the encoder's feature strides (4 for resnet18 / efficientnet; 2 is finer and slower).
    decoder_channels: U-Net channels fine to coarse, one per decoder stage (default 16·stride,
    at most 256: 64, 128, 256 for stride 4 / 8 / 16). head_channels: hidden width of each head.
    """
    from pytorch_toolbelt.modules.decoders import UNetDecoder
    from pytorch_toolbelt.modules.encoders.timm import GenericTimmEncoder

    num_classes = check_int(num_classes, "model num_classes", 1)
    head_channels = check_int(head_channels, "model head_channels", 1)
    output_stride = check_int(output_stride, "model output_stride", 1)
    every_stage = create_encoder(encoder, in_channels, pretrained)
    strides = [int(s) for s in every_stage.get_output_spec().strides]
    if output_stride not in strides[:-1]:
        raise PodiumError(
            f"model output_stride {output_stride} is not a feature stride of {encoder} below its "
            f"coarsest; expected one of {strides[:-1]}"
        )
    # the same timm model, returning only the feature maps the decoder uses
    layers = [i for i, s in enumerate(strides) if s >= output_stride]
    encoder_module = GenericTimmEncoder(every_stage.encoder, layers=layers)
    spec = encoder_module.get_output_spec()
    decoder_channels = unet_channels(decoder_channels, spec.strides)
    decoder = UNetDecoder(spec, out_channels=decoder_channels)
    features = decoder_channels[0]
    prior_bias = -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)  # −2.19
    heads = nn.ModuleDict(
        {
            "heatmap": _head(features, head_channels, num_classes, bias=prior_bias),
            "size": _head(features, head_channels, 2),
            "offset": _head(features, head_channels, 2),
        }
    )
    return CenterNet(encoder_module, decoder, heads, output_stride, num_classes, encoder)


@torch.no_grad()
def decode_centernet(
    heatmap: Tensor,
    size: Tensor,
    offset: Tensor,
    output_stride: int = 4,
    top_k: int = 100,
    pool_size: int = 3,
    min_score: float = 0.0,
    probabilities: bool = False,
) -> List[Dict[str, Tensor]]:
    """Boxes per image from the three heads: max-pool peaks, top-k, then centre/size → xyxy.

    heatmap: N×C×h×w logits (or probabilities with `probabilities=True`); size, offset: N×2×h×w.
    A peak is a cell equal to the max of its `pool_size`² neighbourhood (CenterNet's NMS).
    Returns, per image, {"boxes": K×4 xyxy in input pixels, "scores": K, "labels": K (class
    index)}, sorted by score, K ≤ top_k, scores ≥ min_score.
    """
    if (
        heatmap.ndim != 4
        or size.shape[1] != 2
        or offset.shape[1] != 2
        or size.shape[-2:] != heatmap.shape[-2:]
    ):
        raise PodiumError(
            f"decode_centernet needs heatmap N×C×h×w and size/offset N×2×h×w, got "
            f"{tuple(heatmap.shape)}, {tuple(size.shape)}, {tuple(offset.shape)}"
        )
    scores = heatmap.float() if probabilities else torch.sigmoid(heatmap.float())
    pooled = F.max_pool2d(scores, pool_size, stride=1, padding=pool_size // 2)
    peaks = torch.where(pooled == scores, scores, torch.zeros_like(scores))
    batch, classes, height, width = scores.shape
    k = min(int(top_k), classes * height * width)
    top_scores, top_index = peaks.reshape(batch, -1).topk(k, dim=1)
    labels = top_index // (height * width)
    cell = top_index % (height * width)
    rows, cols = (cell // width), (cell % width)
    results = []
    for n in range(batch):
        keep = top_scores[n] >= min_score
        r, c = rows[n][keep], cols[n][keep]
        dx, dy = offset[n, 0, r, c].float(), offset[n, 1, r, c].float()
        w, h = size[n, 0, r, c].float(), size[n, 1, r, c].float()
        cx, cy = (c.float() + 0.5 + dx), (r.float() + 0.5 + dy)
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1) * output_stride
        results.append({"boxes": boxes, "scores": top_scores[n][keep], "labels": labels[n][keep]})
    return results
