"""Geopose model: one encoder-decoder, four heads (the Overhead Geopose "multi-head U-Net").

    image ─► pad to ×32 ─► GenericTimmEncoder ─► UNetDecoder (finest map, stride 2) ⊕ scalar planes
               ├─► conv-ReLU-conv ─► ×up ─► height     N×1×H×W (metres)
               ├─► conv-ReLU-conv ─► ×up ─► magnitude  N×1×H×W (pixels)
               └─► mean of the coarsest encoder map ⊕ mean of the finest decoder map ⊕ scalars
                     ─► MLP ─┬─► direction N×2 (unit (sin θ, cos θ) = (x, y))
                             └─► scale     N×1 (pixels per metre, softplus > 0)

The direction / scale MLP reads the decoder's pooled features as well as the encoder's: the cue
to the direction is local (walls show on the side the flow points to), and the decoder map
keeps it at stride 2.

Extra scalar inputs (e.g. the ground sample distance) go to every head: as constant planes
beside the decoder features of the dense heads, and beside the pooled features of the image
heads. The forward pass takes them as keyword arguments named after `scalar_inputs`, which is
exactly how Catalyst's SupervisedRunner calls a model when `runner: input_key` is a *list*:
`input_key: [image, gsd]` → `model(image=batch["image"], gsd=batch["gsd"])`. A model built
without `scalar_inputs` is called the usual way (`input_key: image`).

`forward` returns the dict {"height", "magnitude", "direction", "scale"}; with
`runner: output_key: null` Catalyst merges it into the batch, where the loss terms and the R2
callbacks read the heads by key. `model.encoder` is the toolbelt encoder, so the runner's
`freeze_encoder` and the Freeze/Unfreeze callbacks work as for segmentation.
"""

from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from podium.errors import PodiumError
from podium.models.base import PaddedModel
from podium.models.encoders import Pretrained, create_encoder
from podium.models.registry import register_model
from podium.models.segmentation import unet_channels
from podium.validation import check_int

__all__ = ["GeoposeModel", "HEADS", "build_geopose_model"]

HEADS = ("height", "magnitude", "direction", "scale")


def _dense_head(in_channels: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1, kernel_size=1),
    )


class GeoposeModel(PaddedModel):
    """Encoder → U-Net decoder → height / magnitude maps; pooled features → direction / scale.

    Attributes: `encoder` (toolbelt `GenericTimmEncoder`), `decoder` (toolbelt `UNetDecoder`),
    `height_head`, `magnitude_head`, `image_head` (MLP on the pooled encoder and decoder
    features → 2 direction + 1 scale values),
    `scalar_inputs` (names of the extra inputs, in order), `pad_multiple`, `encoder_name`.
    Inputs of any size: padded (reflect) at the bottom/right to a multiple of the encoder's
    coarsest stride, the height and magnitude maps cropped back to H×W (`PaddedModel`).
    """

    map_strides = {"height": 1, "magnitude": 1}  # direction, scale: per image

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        height_head: nn.Module,
        magnitude_head: nn.Module,
        image_head: nn.Module,
        scalar_inputs: Sequence[str] = (),
        encoder_name: str = "",
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.height_head, self.magnitude_head, self.image_head = (
            height_head,
            magnitude_head,
            image_head,
        )
        self.scalar_inputs = tuple(scalar_inputs)
        self.pad_multiple = int(max(encoder.get_output_spec().strides))
        self.encoder_name = encoder_name

    def _scalars(self, image: Tensor, given: Dict[str, Tensor]) -> Optional[Tensor]:
        """N×K tensor of the extra inputs in `scalar_inputs` order (None without any)."""
        if set(given) != set(self.scalar_inputs):
            raise PodiumError(
                f"the geopose model takes the scalar inputs [{', '.join(self.scalar_inputs)}] "
                f"(model/scalar_inputs) but was given [{', '.join(given)}]; "
                "set runner/input_key to "
                f"[image{''.join(', ' + name for name in self.scalar_inputs)}]"
            )
        if not self.scalar_inputs:
            return None
        columns = []
        for name in self.scalar_inputs:
            value = torch.as_tensor(given[name], device=image.device, dtype=image.dtype)
            if value.numel() != image.shape[0]:
                raise PodiumError(
                    f"scalar input {name}: expected one value per image ({image.shape[0]}), "
                    f"got shape {tuple(value.shape)}"
                )
            columns.append(value.reshape(-1))
        return torch.stack(columns, dim=1)

    def forward_padded(self, image: Tensor, **scalars: Tensor) -> Dict[str, Tensor]:
        extra = self._scalars(image, scalars)
        features = self.encoder(image)
        decoded = self.decoder(features)[0]
        pooled = torch.cat([features[-1].mean(dim=(2, 3)), decoded.mean(dim=(2, 3))], dim=1)
        if extra is not None:
            planes = extra[:, :, None, None].expand(-1, -1, *decoded.shape[-2:])
            decoded = torch.cat([decoded, planes], dim=1)
            pooled = torch.cat([pooled, extra], dim=1)

        def dense(head: nn.Module) -> Tensor:
            return F.interpolate(
                head(decoded), size=image.shape[-2:], mode="bilinear", align_corners=False
            )

        vector = self.image_head(pooled)
        return {
            "height": dense(self.height_head),
            "magnitude": dense(self.magnitude_head),
            "direction": F.normalize(vector[:, :2], dim=1, eps=1e-6),
            "scale": F.softplus(vector[:, 2:3]),
        }


@register_model("geopose")
def build_geopose_model(
    encoder: str = "resnet18",
    in_channels: int = 3,
    pretrained: Pretrained = False,
    scalar_inputs: Sequence[str] = (),
    decoder_channels: Union[None, int, Sequence[int]] = None,
    head_channels: int = 32,
    hidden_features: int = 128,
) -> GeoposeModel:
    """The Geopose multi-head model on any convolutional timm encoder (`create_model("geopose")`).

    scalar_inputs: names of extra per-image numbers fed to every head (e.g. [gsd]); the batch
    must hold them and `runner: input_key` must list them after the image. decoder_channels:
    U-Net channels fine to coarse (one int for all; default 16·stride up to 256). head_channels:
    hidden width of the height and magnitude heads. hidden_features: width of the direction/scale
    MLP.
    """
    from pytorch_toolbelt.modules.decoders import UNetDecoder

    head_channels = check_int(head_channels, "model head_channels", 1)
    hidden_features = check_int(hidden_features, "model hidden_features", 1)
    if (
        isinstance(scalar_inputs, str)
        or not all(isinstance(n, str) and n.isidentifier() for n in scalar_inputs)
        or len(set(scalar_inputs)) != len(scalar_inputs)
        or "image" in scalar_inputs
    ):
        raise PodiumError(
            f"model scalar_inputs must be a list of distinct batch keys other than image "
            f"(e.g. [gsd]), got {scalar_inputs!r}"
        )
    encoder_module = create_encoder(encoder, in_channels, pretrained)
    spec = encoder_module.get_output_spec()
    decoder = UNetDecoder(spec, out_channels=unet_channels(decoder_channels, spec.strides))
    num_scalars = len(scalar_inputs)
    features = decoder.get_output_spec().channels[0] + num_scalars
    image_head = nn.Sequential(
        nn.Linear(
            int(spec.channels[-1]) + decoder.get_output_spec().channels[0] + num_scalars,
            hidden_features,
        ),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_features, 3),
    )
    return GeoposeModel(
        encoder_module,
        decoder,
        _dense_head(features, head_channels),
        _dense_head(features, head_channels),
        image_head,
        scalar_inputs,
        encoder,
    )
