"""Segmentation models composed from pytorch-toolbelt parts on a timm encoder.

pytorch-toolbelt 0.8.0 ships encoders, decoders and heads but no ready segmentation model, so
`SegmentationModel` wires them together:

    image ─► pad ─► GenericTimmEncoder ─► UNetDecoder | FPNDecoder ─► ResizeHead (1×1 conv,
    upsample to the padded size) ─► crop ─► logits (N, num_classes, H, W)

`build_segmentation_model` is the `_target_` used from YAML. Bad input (unknown architecture
or encoder, channels < 1, weights that cannot be downloaded) raises `PodiumError`.
No Catalyst here: models know nothing of the training loop.
"""

import difflib
from typing import List, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from podium.errors import PodiumError, did_you_mean
from podium.validation import check_int, check_number, is_int

__all__ = ["ARCHITECTURES", "SegmentationModel", "build_segmentation_model"]

ARCHITECTURES = ("unet", "fpn")
FPN_DEFAULT_CHANNELS = 128


class SegmentationModel(nn.Module):
    """Encoder → decoder → head, for any input height and width.

    Attributes: `encoder` (toolbelt `GenericTimmEncoder`; the runner freezes it per stage),
    `decoder` (toolbelt `UNetDecoder` / `FPNDecoder`), `head` (toolbelt `ResizeHead` with a
    1×1 conv to `num_classes`, bilinear upsampling to the input size), `output_stride` (the
    encoder's coarsest stride, usually 32), `architecture`, `encoder_name`, `num_classes`.

    Inputs whose sides are not multiples of `output_stride` are padded at the bottom and right
    to the next multiple and the logits are cropped back to the top-left H×W. Padding is
    **reflect**: it continues real image content, so pixels near the border see plausible
    context and BatchNorm/conv responses are not skewed by an artificial constant band (zero
    padding would read as a black, or mean-coloured, frame the model never saw in training).
    Only the bottom/right sides are padded, so the top-left pixel keeps the same alignment to
    the encoder's stride grid as in multiple-of-32 training crops, and the crop is exact.
    Reflect needs the pad to be smaller than the side; for tiny inputs (side ≤ pad, only
    possible below `output_stride` pixels) it falls back to replicate padding.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        architecture: str = "",
        encoder_name: str = "",
        num_classes: int = 1,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.output_stride = int(max(encoder.get_output_spec().strides))
        self.architecture = architecture
        self.encoder_name = encoder_name
        self.num_classes = num_classes

    def forward_padded(self, image: Tensor) -> Tensor:
        """Logits for an input whose sides are already multiples of `output_stride`."""
        features = self.encoder(image)
        decoded = self.decoder(features)
        return self.head(decoded, output_size=image.shape[-2:])

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        stride = self.output_stride
        pad_h = (stride - height % stride) % stride
        pad_w = (stride - width % stride) % stride
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
        logits = self.forward_padded(image)
        if pad_h or pad_w:
            logits = logits[..., :height, :width]
        return logits


def _check_architecture(architecture) -> str:
    name = str(architecture).lower()
    if name not in ARCHITECTURES:
        raise PodiumError(
            f'unknown model architecture "{architecture}"{did_you_mean(name, ARCHITECTURES)}; '
            f"expected one of: {', '.join(ARCHITECTURES)}"
        )
    return name


def _check_encoder_name(encoder) -> str:
    import timm

    if not isinstance(encoder, str) or not encoder:
        raise PodiumError(f"model encoder must be a timm model name, got {encoder!r}")
    if encoder.startswith(("hf-hub:", "hf_hub:", "local-dir:")) or timm.is_model(encoder):
        return encoder
    names = timm.list_models()
    close = difflib.get_close_matches(encoder, names, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise PodiumError(
        f'unknown encoder "{encoder}"{hint}; expected a timm model name '
        f"(see timm.list_models(), {len(names)} available)"
    )


def _create_encoder(encoder: str, in_channels: int, pretrained: bool) -> nn.Module:
    from pytorch_toolbelt.modules.encoders.timm import GenericTimmEncoder

    try:
        module = GenericTimmEncoder(encoder, pretrained=pretrained, in_chans=in_channels)
    except Exception as error:  # noqa: BLE001 - translated into a one-line PodiumError below
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if pretrained:
            try:  # the architecture builds without weights → the weights were the problem
                GenericTimmEncoder(encoder, pretrained=False, in_chans=in_channels)
            except Exception:  # noqa: BLE001
                pass
            else:
                raise PodiumError(
                    f'could not load pretrained weights for encoder "{encoder}" ({reason}); '
                    f"they cannot be downloaded here (offline?) and are not in the local "
                    f"HF/torch cache — set `pretrained: false` or put the weights in the cache"
                ) from error
        raise PodiumError(
            f'encoder "{encoder}" cannot be used as a feature extractor ({reason}); '
            f"expected a timm model that supports features_only=True"
        ) from error
    output_fmt = str(getattr(module.encoder, "output_fmt", "NCHW"))
    if "NHWC" in output_fmt:
        raise PodiumError(
            f'encoder "{encoder}" returns NHWC feature maps, which toolbelt decoders cannot '
            f"read; expected a convolutional timm encoder (resnet, efficientnet, convnext, ...)"
        )
    return module


def _unet_channels(decoder_channels, strides: Sequence[int]) -> List[int]:
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
    pretrained: bool = False,
    decoder_channels: Union[None, int, Sequence[int]] = None,
    dropout: float = 0.0,
) -> SegmentationModel:
    """A U-Net or FPN on any timm encoder, returning logits at input resolution.

    architecture: "unet" or "fpn". encoder: a timm model name (resnet18, efficientnet_b0,
    convnext_nano, ...). decoder_channels: U-Net — one int for all stages or a list fine to
    coarse (default 32 at stride 2 up to 256 at stride 16); FPN — one int (default 128).
    dropout: Dropout2d rate before the 1×1 head conv. pretrained=True uses timm's normal
    weight loading (HF hub / torch cache).
    """
    from pytorch_toolbelt.modules.decoders import FPNDecoder, UNetDecoder
    from pytorch_toolbelt.modules.heads import ResizeHead

    architecture = _check_architecture(architecture)
    in_channels = check_int(in_channels, "model in_channels", 1)
    num_classes = check_int(num_classes, "model num_classes", 1)
    check_number(dropout, "model dropout", "[0, 1)")
    encoder_name = _check_encoder_name(encoder)

    encoder_module = _create_encoder(encoder_name, in_channels, bool(pretrained))
    spec = encoder_module.get_output_spec()
    if architecture == "unet":
        decoder = UNetDecoder(spec, out_channels=_unet_channels(decoder_channels, spec.strides))
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
        encoder_name=encoder_name,
        num_classes=num_classes,
    )
