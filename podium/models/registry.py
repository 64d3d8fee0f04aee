"""Models by short name, timm-style: `register_model`, `create_model`, `list_models`.

    @register_model("unet")
    def unet(encoder="resnet18", in_channels=3, num_classes=1, ...) -> SegmentationModel: ...

    create_model("unet", encoder="resnet18", num_classes=3)
    list_models()   # ['boxes', 'centernet', 'fpn', 'geopose', 'unet']

A config names the model the same way: `model: {_target_: podium.models.create_model, name:
unet, encoder: resnet18, ...}`. Names are case-insensitive ("Unet", "FPN" as in
segmentation_models_pytorch). The other keys are checked against the registered builder's
signature — when the config is loaded (`podium.targets.check_targets` asks
`create_model.resolve_block`) and again when it is called — so a misspelled key or name is one
line with a "did you mean". A registered callable may be a function or a class.
"""

import fnmatch
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from torch import nn

from podium.errors import PodiumError, did_you_mean
from podium.targets import check_call_params

__all__ = ["register_model", "create_model", "get_model", "list_models"]

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: Optional[str] = None):
    """Decorator registering a model builder (function or class) under `name` (default: its
    own name, lower-cased). `@register_model` and `@register_model("short_name")` both work."""

    def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = (name or builder.__name__).lower()
        if key in _MODELS and _MODELS[key] is not builder:
            raise ValueError(f'model name "{key}" is registered twice ({_MODELS[key]}, {builder})')
        _MODELS[key] = builder
        return builder

    if callable(name):  # bare @register_model
        builder, name = name, None
        return register(builder)
    return register


def _registered() -> Dict[str, Callable[..., nn.Module]]:
    """Every registered model: podium.models' own and the tasks' (podium/tasks/<task>/model.py),
    which register when their task is imported — here, on first need: the core imports no task
    up front, and `podium.tasks` (the task registry) is the one module of the tasks it names."""
    from podium import tasks

    tasks.import_all()
    return _MODELS


def list_models(pattern: str = "*") -> List[str]:
    """The registered names (sorted), optionally filtered by a wildcard pattern ("*net")."""
    return sorted(n for n in _registered() if fnmatch.fnmatch(n, pattern.lower()))


def get_model(name: Any) -> Callable[..., nn.Module]:
    """The builder registered under `name`; PodiumError with the closest and all names."""
    if not isinstance(name, str) or not name:
        raise PodiumError(
            f"model needs `name:` (a registered model), got {name!r}; expected one of: "
            f"{', '.join(list_models())}"
        )
    builder = _MODELS.get(name.lower()) or _registered().get(name.lower())
    if builder is None:
        raise PodiumError(
            f'unknown model "{name}"{did_you_mean(name.lower(), _MODELS)}; expected one of: '
            f"{', '.join(list_models())}"
        )
    return builder


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """The model registered as `name`, built with `kwargs` (checked against its signature)."""
    builder = get_model(name)
    check_call_params(builder, kwargs, "model")
    return builder(**kwargs)


def _resolve_block(block: Mapping[str, Any]) -> Tuple[Callable[..., nn.Module], Dict[str, Any]]:
    """(the builder a `create_model` config block names, the block's keys for that builder)."""
    params = {k: v for k, v in block.items() if k != "name" and not str(k).startswith("_")}
    return get_model(block.get("name")), params


create_model.resolve_block = _resolve_block  # read by podium.targets (see its docstring)
