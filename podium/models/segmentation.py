"""Segmentation models composed from pytorch-toolbelt parts on a timm encoder.

pytorch-toolbelt 0.8.0 ships encoders, decoders and heads but no ready segmentation model, so
`SegmentationModel` wires them together:

    image ─► pad ─► GenericTimmEncoder ─► UNetDecoder | FPNDecoder ─► ResizeHead (1×1 conv,
    upsample to the padded size) ─► crop ─► logits (N, num_classes, H, W)

With `aux_heads:` (podium.models.aux_heads) the coarsest encoder map also feeds per-image heads
and the model returns the dict {"logits": the mask logits, <head name>: N×outputs}.

Registered as "unet" and "fpn" (`create_model("unet", ...)`, `_target_:
podium.models.create_model` + `name: unet` in YAML); `build_segmentation_model(architecture,
...)`, the `_target_` of configs written before the registry, builds the same model. Bad input
(unknown architecture or encoder, channels < 1, pretrained weights not on this machine) raises
`PodiumError`. No Catalyst here: models know nothing of the training loop.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from torch import Tensor, nn

from podium.errors import PodiumError, did_you_mean
from podium.models.aux_heads import MASK_KEY, aux_outputs, build_aux_heads
from podium.models.base import PaddedModel
from podium.models.encoders import Pretrained, create_encoder
from podium.models.registry import register_model
from podium.validation import check_int, check_number, is_int

__all__ = [
    "ARCHITECTURES",
    "SegmentationModel",
    "build_segmentation_model",
    "fpn",
    "unet",
    "unet_channels",
]

ARCHITECTURES = ("unet", "fpn")
FPN_DEFAULT_CHANNELS = 128


class SegmentationModel(PaddedModel):
    """Encoder → decoder → head, for any input height and width.

    Attributes: `encoder` (toolbelt `GenericTimmEncoder`; the runner freezes it per stage),
    `decoder` (toolbelt `UNetDecoder` / `FPNDecoder`), `head` (toolbelt `ResizeHead` with a
    1×1 conv to `num_classes`, bilinear upsampling to the input size), `pad_multiple` (the
    encoder's coarsest stride, usually 32), `architecture`, `encoder_name`, `num_classes`,
    `aux_heads` (an `nn.ModuleDict`, empty without aux heads: then the output is the logits
    tensor, else a dict). Inputs are reflect-padded at the bottom / right to multiples of
    `pad_multiple` and the logits cropped back to H×W (`podium.models.base.PaddedModel`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        architecture: str = "",
        encoder_name: str = "",
        num_classes: int = 1,
        aux_heads: Optional[nn.ModuleDict] = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.aux_heads = aux_heads if aux_heads is not None else nn.ModuleDict()
        self.map_strides = {MASK_KEY: 1} if len(self.aux_heads) else 1  # per-image heads: as is
        self.pad_multiple = int(max(encoder.get_output_spec().strides))
        self.architecture = architecture
        self.encoder_name = encoder_name
        self.num_classes = num_classes

    def forward_padded(self, image: Tensor) -> Union[Tensor, Dict[str, Tensor]]:
        """Logits (and the aux heads' outputs) for sides that are multiples of `pad_multiple`."""
        features = self.encoder(image)
        decoded = self.decoder(features)
        logits = self.head(decoded, output_size=image.shape[-2:])
        if not len(self.aux_heads):
            return logits
        return {MASK_KEY: logits, **aux_outputs(self.aux_heads, features[-1])}


def _check_architecture(architecture) -> str:
    name = str(architecture).lower()
    if name not in ARCHITECTURES:
        raise PodiumError(
            f'unknown model architecture "{architecture}"{did_you_mean(name, ARCHITECTURES)}; '
            f"expected one of: {', '.join(ARCHITECTURES)}"
        )
    return name


def unet_channels(decoder_channels, strides: Sequence[int]) -> List[int]:
    """U-Net decoder channels, fine to coarse, for encoder `strides`: `decoder_channels` as given
    (one int for every stage, or one per stage), default 16·stride up to 256."""
    num_stages = len(strides) - 1
    if decoder_channels is None:  # fine → coarse, 32 at stride 2 … 256 at stride 16
        return [min(256, 16 * int(s)) for s in strides[:-1]]
    if is_int(decoder_channels):
        return [check_int(decoder_channels, "model decoder_channels", 1)] * num_stages
    channels = list(decoder_channels)
    if len(channels) != num_stages:
        raise PodiumError(
            f"model decoder_channels has {len(channels)} values, but this encoder gives "
            f"{num_stages} U-Net stages; expected {num_stages} integers (fine to coarse) or one"
        )
    return [check_int(c, "model decoder_channels", 1) for c in channels]


def build_segmentation_model(
    architecture: str = "unet",
    encoder: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained: Pretrained = False,
    decoder_channels: Union[None, int, Sequence[int]] = None,
    dropout: float = 0.0,
    aux_heads: Optional[Mapping[str, Any]] = None,
) -> SegmentationModel:
    """A U-Net or FPN (`create_model("unet" | "fpn", ...)`); also the `_target_` of configs
    written before `create_model`, whose `architecture: unet` is `name: unet` now."""
    from pytorch_toolbelt.modules.decoders import FPNDecoder, UNetDecoder
    from pytorch_toolbelt.modules.heads import ResizeHead

    architecture = _check_architecture(architecture)
    num_classes = check_int(num_classes, "model num_classes", 1)
    check_number(dropout, "model dropout", "[0, 1)")
    encoder_module = create_encoder(encoder, in_channels, pretrained)
    spec = encoder_module.get_output_spec()
    if architecture == "unet":
        decoder = UNetDecoder(spec, out_channels=unet_channels(decoder_channels, spec.strides))
    else:
        if decoder_channels is None:
            decoder_channels = FPN_DEFAULT_CHANNELS
        if isinstance(decoder_channels, (list, tuple)) and len(decoder_channels) == 1:
            decoder_channels = decoder_channels[0]
        check_int(decoder_channels, "model decoder_channels for fpn", expected="one integer")
        decoder = FPNDecoder(
            spec, out_channels=check_int(decoder_channels, "model decoder_channels", 1)
        )
    head = ResizeHead(
        decoder.get_output_spec(),
        num_classes=num_classes,
        kernel_size=1,
        dropout_rate=float(dropout),
    )
    return SegmentationModel(
        encoder_module,
        decoder,
        head,
        architecture=architecture,
        encoder_name=encoder,
        num_classes=num_classes,
        aux_heads=build_aux_heads(aux_heads, spec.channels[-1], num_classes),
    )


@register_model("unet")
def unet(
    encoder: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained: Pretrained = False,
    decoder_channels: Union[None, int, Sequence[int]] = None,
    dropout: float = 0.0,
    aux_heads: Optional[Mapping[str, Any]] = None,
) -> SegmentationModel:
    """A U-Net on any timm encoder, returning logits at input resolution.

    encoder: a timm model name (resnet18, efficientnet_b0, convnext_nano, ...).
    decoder_channels: one int for all stages or a list fine to coarse (default 16·stride: 32 at
    stride 2 up to 256 at stride 16). dropout: Dropout2d rate before the 1×1 head conv.
    pretrained: false, true (timm's weights from the local cache) or a weights file
    (`podium.models.encoders`). aux_heads: per-image heads on the coarsest encoder map,
    {name: {type: presence | regression, ...}} (`podium.models.aux_heads`).
    """
    args = (encoder, in_channels, num_classes, pretrained, decoder_channels, dropout, aux_heads)
    return build_segmentation_model("unet", *args)


@register_model("fpn")
def fpn(
    encoder: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained: Pretrained = False,
    decoder_channels: Union[None, int, Sequence[int]] = None,
    dropout: float = 0.0,
    aux_heads: Optional[Mapping[str, Any]] = None,
) -> SegmentationModel:
    """An FPN on any timm encoder, returning logits at input resolution.

    decoder_channels: one int (default 128). The other arguments as for `unet`.
    """
    args = (encoder, in_channels, num_classes, pretrained, decoder_channels, dropout, aux_heads)
    return build_segmentation_model("fpn", *args)
