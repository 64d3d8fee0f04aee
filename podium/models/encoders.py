"""`create_encoder`: a timm model by name, for every podium model, with local pretrained weights.

    create_encoder("resnet18", in_channels=4, pretrained=False)            # random init
    create_encoder("resnet18", in_channels=4, pretrained=True)             # timm's weights, cached
    create_encoder("resnet18", in_channels=4, pretrained="w/r18.safetensors")  # a local file

`features_only=True` (U-Net, FPN, CenterNet, Geopose) gives toolbelt's `GenericTimmEncoder`
(feature maps at every stride); `features_only=False` (the box classifier) the whole timm
model without its classifier (`num_classes=0`).

Pretrained weights never come from the network (podium runs where nothing can be downloaded,
and a download that hangs is worse than an error):
- `pretrained: true` looks for timm's weights of the encoder in the local caches timm itself
  fills — the Hugging Face hub cache (`HF_HUB_CACHE`, ~/.cache/huggingface/hub) and the torch
  hub cache (`TORCH_HOME`, ~/.cache/torch/hub/checkpoints) — and loads the file found there;
  nothing found is one PodiumError line naming the encoder and both places.
- `pretrained: path/to/weights.pth | .safetensors` loads that file: a state dict of the timm
  model (`torch.save(timm.create_model(name).state_dict(), path)`, or timm's hub
  `model.safetensors`), bare or inside a `state_dict` / `model` / `model_state_dict` key. A
  file that does not fit the encoder is one line summarising the missing / unexpected keys
  and shape mismatches (`podium.checkpoints.mismatch`).
Either way the weights go through timm's own `load_pretrained`: the first conv is adapted to
`in_channels` by `timm.models.adapt_input_conv` (1 channel: the RGB kernels summed; any other
number: the RGB kernels repeated or truncated, scaled by 3 / in_channels), the classifier is
dropped, and timm's checkpoint filter runs. Encoder names with a `hf-hub:` / `local-dir:`
prefix are timm's to resolve (hf-hub needs the hub).
"""

import difflib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Union
from urllib.parse import urlparse

from torch import Tensor, nn

from podium import checkpoints
from podium.errors import PodiumError
from podium.validation import check_int

__all__ = ["create_encoder", "check_encoder_name", "cached_weights", "read_weights"]

Pretrained = Union[None, bool, str, os.PathLike]
TIMM_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def check_encoder_name(encoder) -> str:
    """The timm model name, or a PodiumError with the closest name timm knows."""
    import timm

    if not isinstance(encoder, str) or not encoder:
        raise PodiumError(f"model encoder must be a timm model name, got {encoder!r}")
    if encoder.startswith(TIMM_PREFIXES) or timm.is_model(encoder):
        return encoder
    names = timm.list_models()
    close = difflib.get_close_matches(encoder, names, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise PodiumError(
        f'unknown encoder "{encoder}"{hint}; expected a timm model name '
        f"(see timm.list_models(), {len(names)} available)"
    )


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def cached_weights(name: str) -> Path:
    """The file of timm's pretrained weights for `name` in the local HF / torch hub cache;
    PodiumError naming where it looked when there is none. Nothing here touches the network."""
    import timm
    import torch
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as error:  # an unknown pretrained tag
        raise PodiumError(f'encoder "{name}": {str(error).splitlines()[0]}') from None
    looked = []
    if cfg is not None and cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        cache = constants.HF_HUB_CACHE
        for candidate in names or ["model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, candidate, cache, revision or None)
            if isinstance(found, str):
                return Path(found)
        looked.append(os.path.join(cache, f"models--{repo.replace('/', '--')}"))
    if cfg is not None and cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if path.is_file():
            return path
        looked.append(str(path))
    if not looked:
        raise PodiumError(
            f'timm has no pretrained weights for encoder "{name}"; expected `pretrained: '
            f"path/to/weights.safetensors` (or .pth) or `pretrained: false`"
        )
    raise PodiumError(
        f'no pretrained weights for encoder "{name}" on this machine (looked in '
        f"{' and '.join(looked)}); podium never downloads them: put timm's weights there, or "
        f"set `pretrained: path/to/weights.safetensors` (or .pth), or `pretrained: false`"
    )


def read_weights(path, what: str = "pretrained weights") -> Dict[str, Tensor]:
    """A state dict from a .safetensors or torch file (weights_only), out of its container."""
    from timm.models import clean_state_dict

    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"{what} {path} does not exist; expected a .pth or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            weights = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - SafetensorError and I/O errors alike
            raise PodiumError(
                f"{what} {path} cannot be read as safetensors ({_first_line(error)})"
            ) from None
    else:
        weights = checkpoints.read(path, what)
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(weights, dict) and isinstance(weights.get(key), dict):
            weights = weights[key]
            break
    if not (
        isinstance(weights, dict)
        and weights
        and all(isinstance(v, Tensor) for v in weights.values())
    ):
        raise PodiumError(f"{what} {path} holds no state dict; expected {{name: tensor}}")
    return clean_state_dict(weights)


def _names(value) -> tuple:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _check_fit(name: str, in_channels: int, weights: Dict[str, Tensor], path) -> None:
    """PodiumError unless `weights` are a state dict of timm's `name` (classifier optional; the
    first conv of any input channels, timm adapts it)."""
    import timm
    from timm.models import adapt_input_conv

    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
    cfg = model.pretrained_cfg or {}
    own, saved = checkpoints.shapes(model.state_dict()), checkpoints.shapes(weights)
    for head in _names(cfg.get("classifier")):
        saved.pop(f"{head}.weight", None), saved.pop(f"{head}.bias", None)
    base_chans = (cfg.get("input_size") or (3,))[0]
    for conv in _names(cfg.get("first_conv")):
        key = f"{conv}.weight"
        if key in own and key in saved and saved[key] != own[key]:
            try:
                adapted = adapt_input_conv(in_channels, weights[key], base_chans=base_chans)
                saved[key] = tuple(adapted.shape)
            except (NotImplementedError, ValueError, AssertionError):
                pass  # left as it is: reported as a shape mismatch
    problem = checkpoints.mismatch(own, saved)
    if problem:
        raise PodiumError(
            f'pretrained weights {path} do not fit encoder "{name}" with {in_channels} input '
            f"channel(s): {problem}; expected a state dict of timm's {name}"
        )


def _pretrained_weights(name: str, in_channels: int, pretrained: Pretrained):
    """The state dict to start from (None: random init; True for timm's own prefixed names)."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        if name.startswith(TIMM_PREFIXES):
            return True
        return read_weights(cached_weights(name), f'cached weights of encoder "{name}"')
    if isinstance(pretrained, (str, os.PathLike)) and str(pretrained):
        weights = read_weights(pretrained)
        _check_fit(name, in_channels, weights, pretrained)
        return weights
    raise PodiumError(
        f"model pretrained must be true, false or the path of a weights file (.pth / "
        f".safetensors), got {pretrained!r}"
    )


@contextmanager
def _quiet_timm_loading():
    """timm logs the head keys a feature extractor leaves out ("Unexpected keys (conv_head…)")
    as a warning; the weights were checked above, so that is noise here."""
    logger = logging.getLogger("timm.models._builder")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def create_encoder(
    name: str, in_channels: int = 3, pretrained: Pretrained = False, features_only: bool = True
) -> nn.Module:
    """A timm encoder: toolbelt `GenericTimmEncoder` (features_only) or the timm model without
    classifier; pretrained: false, true (timm's weights from the local cache) or a file path."""
    import timm
    from pytorch_toolbelt.modules.encoders.timm import GenericTimmEncoder

    name = check_encoder_name(name)
    in_channels = check_int(in_channels, "model in_channels", 1)
    weights = _pretrained_weights(name, in_channels, pretrained)

    def build(weights) -> nn.Module:
        options = dict(pretrained=weights is not None, in_chans=in_channels)
        if isinstance(weights, dict):
            options["pretrained_cfg_overlay"] = dict(state_dict=dict(weights))
        if features_only:
            return GenericTimmEncoder(name, **options)
        return timm.create_model(name, num_classes=0, **options)

    try:
        with _quiet_timm_loading():
            module = build(weights)
    except Exception as error:  # noqa: BLE001 - translated into a one-line PodiumError below
        reason = _first_line(error)
        if weights is not None:
            try:  # the architecture builds without weights → the weights were the problem
                build(None)
            except Exception:  # noqa: BLE001
                pass
            else:
                source = "from the local cache" if pretrained is True else pretrained
                raise PodiumError(
                    f'pretrained weights ({source}) cannot be loaded into encoder "{name}" '
                    f"({reason}); expected weights of this encoder, or `pretrained: false`"
                ) from error
        if not features_only:
            raise PodiumError(f'cannot build timm model "{name}" ({reason})') from error
        raise PodiumError(
            f'encoder "{name}" cannot be used as a feature extractor ({reason}); '
            f"expected a timm model that supports features_only=True"
        ) from error
    output_fmt = str(getattr(getattr(module, "encoder", None), "output_fmt", "NCHW"))
    if features_only and "NHWC" in output_fmt:
        raise PodiumError(
            f'encoder "{name}" returns NHWC feature maps, which toolbelt decoders cannot '
            f"read; expected a convolutional timm encoder (resnet, efficientnet, convnext, ...)"
        )
    return module
