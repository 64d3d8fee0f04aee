"""Albumentations pipelines from YAML.

Two spellings are accepted, both turned into one albumentations serialised dict and built by
one code path, so a pipeline written either way can be saved with `transforms_to_dict` and read
back unchanged:

* albumentations' own format (what `A.to_dict` writes)::

    {transform: {__class_fullname__: Compose,
                 transforms: [{__class_fullname__: HorizontalFlip, p: 0.5}]}}

* a compact list that reads well in YAML; containers (OneOf, SomeOf, Sequential) nest via
  their `transforms` argument::

    - HorizontalFlip: {p: 0.5}
    - RandomRotate90: {}
    - OneOf: {p: 0.3, transforms: [{GaussianBlur: {}}, {GaussNoise: {}}]}

* a named preset (presets.py: light, medium, hard, d4), as the whole spec or as a list entry
  expanded in place::

    {preset: medium, size: 256, overrides: {GaussNoise: null}, append: [{CoarseDropout: {}}]}
    - {preset: d4}

Names are looked up among podium's own transforms first (`PositiveCrop`, `RandomScaleCrop`
from crops.py, `Letterbox` from letterbox.py), then albumentations'. podium's transforms are
serialised by `transforms_to_dict` under their full dotted name
(`podium.datasets.crops.PositiveCrop`), which both `build_transforms` and `A.from_dict` read.

Albumentations 2 only *warns* about unknown arguments, so a typo like `pp: 0.5` would be
silently ignored; here every argument is checked against the transform's signature first.

Seeding: albumentations 2 pipelines keep their *own* random generator (global numpy/torch seeds
have no effect) and DataLoader workers get a copy of it at start-up, so without care every
worker — and every epoch — replays the same augmentation stream. `worker_init_fn` re-seeds the
dataset's pipeline in each worker from torch's per-worker seed (different per worker and per
epoch, reproducible under `torch.manual_seed` / a loader `generator`); `seed_transforms` seeds
it for the main process (num_workers 0).
"""

import inspect
from typing import Any, Mapping, Optional

import albumentations as A
import numpy as np
from albumentations.core import serialization

from podium.datasets.presets import is_preset, preset_transforms
from podium.errors import PodiumError, did_you_mean

__all__ = [
    "build_transforms",
    "build_transforms_with",
    "transforms_to_dict",
    "podium_transforms",
    "seed_transforms",
    "worker_init_fn",
]

_META_KEYS = {"__class_fullname__", "__version__", "id"}


def build_transforms(spec: Any) -> Optional[A.Compose]:
    """A.Compose from either config spelling; None or an empty list means no augmentation."""
    if spec is None or (isinstance(spec, (list, tuple)) and not spec):
        return None
    if isinstance(spec, A.BaseCompose):
        return spec if isinstance(spec, A.Compose) else A.Compose([spec])
    built = _instantiate(_root_node(spec), "transforms")
    return built if isinstance(built, A.Compose) else A.Compose([built])


def build_transforms_with(spec: Any, **params) -> Optional[A.Compose]:
    """The pipeline of `spec` (YAML, or a built Compose) again as one Compose with albumentations
    `params` (`bbox_params`, `keypoint_params`), so that its transforms move those targets too."""
    compose = spec if isinstance(spec, A.BaseCompose) else build_transforms(spec)
    return None if compose is None else A.Compose(list(compose.transforms), **params)


def transforms_to_dict(compose: Optional[A.BaseCompose]) -> Optional[dict]:
    """The resolved pipeline in albumentations' serialised format (to write into a run directory).

    Attributes albumentations serialises that are not constructor arguments (PadIfNeeded's
    `padding` in 2.0.8) are left out, so the dict reads back through `build_transforms`'s
    argument check (and A.from_dict) unchanged."""
    if compose is None:
        return None
    saved = A.to_dict(compose)
    saved["transform"] = _constructor_arguments_only(saved["transform"])
    return saved


def _constructor_arguments_only(node: dict) -> dict:
    cls = _registry().get(_short(node.get("__class_fullname__", "")))
    if cls is not None:
        parameters = inspect.signature(cls.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            node = {k: v for k, v in node.items() if k in _META_KEYS or k in parameters}
    if isinstance(node.get("transforms"), list):
        node["transforms"] = [_constructor_arguments_only(child) for child in node["transforms"]]
    return node


def podium_transforms() -> dict:
    """{short name: class} of podium's albumentations-compatible transforms."""
    from podium.datasets.crops import PositiveCrop, RandomScaleCrop
    from podium.datasets.letterbox import Letterbox

    return {cls.__name__: cls for cls in (PositiveCrop, RandomScaleCrop, Letterbox)}


def seed_transforms(transforms, seed: Optional[int]) -> None:
    """Seed an albumentations pipeline (or a dataset with `.transforms`) reproducibly.

    One generator pair is shared by every transform of the pipeline. (albumentations'
    `Compose(seed=...)` / `set_random_seed` seeds each child with the *same* seed, so e.g.
    HorizontalFlip and VerticalFlip with equal p always decide alike; sharing one stream avoids
    that.)
    """
    import random

    if not isinstance(transforms, (A.BaseCompose, A.BasicTransform)):
        transforms = getattr(transforms, "transforms", None)
    if isinstance(transforms, (A.BaseCompose, A.BasicTransform)):
        seed = None if seed is None else int(seed) % 2**32
        transforms.set_random_state(np.random.default_rng(seed), random.Random(seed))


def worker_init_fn(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed numpy, random and the dataset's albumentations pipeline
    from torch's per-worker seed (base seed of this epoch's iterator + worker id)."""
    import random

    import torch

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    seen = set()
    while dataset is not None and id(dataset) not in seen:  # Subset / wrappers: follow .dataset
        seen.add(id(dataset))
        seed_transforms(getattr(dataset, "transforms", None), seed)
        dataset = getattr(dataset, "dataset", None)


def _expand(items) -> list:
    """Compact list entries, with preset entries expanded in place."""
    out = []
    for item in items:
        out.extend(preset_transforms(item) if is_preset(item) else [item])
    return out


def _root_node(spec: Any) -> dict:
    """The Compose node of either spelling."""
    if is_preset(spec):
        spec = preset_transforms(spec)
    if isinstance(spec, (list, tuple)):
        items = _expand(spec)
        return {
            "__class_fullname__": "Compose",
            "transforms": [_compact_to_node(item, "transforms") for item in items],
        }
    if isinstance(spec, Mapping) and "transform" in spec:
        node = spec["transform"]
    elif isinstance(spec, Mapping) and "__class_fullname__" in spec:
        node = spec
    else:
        raise PodiumError(
            "transforms must be a list like [{HorizontalFlip: {p: 0.5}}], "
            "a preset like {preset: medium}, or albumentations' serialised dict {transform: "
            f"{{__class_fullname__: Compose, transforms: [...]}}}}, got {spec!r}"
        )
    if not isinstance(node, Mapping) or "__class_fullname__" not in node:
        raise PodiumError(
            f"transforms.transform must be a mapping with __class_fullname__, got {node!r}"
        )
    return node


def _compact_to_node(item: Any, where: str) -> dict:
    """{Name: {args}} (or just "Name") → {__class_fullname__: Name, **args}, recursing into
    `transforms`."""
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, Mapping) or len(item) != 1:
        raise PodiumError(
            f"each entry of {where} must be a one-key mapping "
            f"like {{HorizontalFlip: {{p: 0.5}}}}, got {item!r}"
        )
    ((name, args),) = item.items()
    args = {} if args is None else args
    if not isinstance(args, Mapping):
        raise PodiumError(f"arguments of {name} in {where} must be a mapping, got {args!r}")
    node = {"__class_fullname__": name, **args}
    if isinstance(node.get("transforms"), (list, tuple)):
        node["transforms"] = [
            _compact_to_node(child, f"{name}.transforms") for child in node["transforms"]
        ]
    return node


def _instantiate(node: Mapping, where: str):
    """Build one node (and its children), naming the transform and argument in any error."""
    if not isinstance(node, Mapping) or "__class_fullname__" not in node:
        raise PodiumError(
            f"entry in {where} must be a mapping with __class_fullname__, got {node!r}"
        )
    name = _short(node["__class_fullname__"])
    cls = _lookup(name, where)
    args = {k: v for k, v in node.items() if k not in _META_KEYS}
    _check_arguments(cls, name, args)
    if "transforms" in args:
        args["transforms"] = [
            _instantiate(child, f"{name}.transforms") for child in args["transforms"]
        ]
    try:
        return cls(**args)
    except Exception as error:  # pydantic ValidationError, ValueError, TypeError
        raise PodiumError(
            f"bad arguments for transform {name} in {where}: {_describe(error)}"
        ) from error


def _registry() -> dict:
    serialization.register_additional_transforms()
    podium_transforms()  # importing them registers their full names
    return serialization.SERIALIZABLE_REGISTRY


def _lookup(name: str, where: str):
    registry = _registry()
    ours = podium_transforms()
    cls = ours.get(name) or registry.get(name) or getattr(A, name, None)
    if not inspect.isclass(cls):
        choices = list(ours) + [
            key for key in registry if not key.startswith("Base") and "." not in key
        ]
        raise PodiumError(
            f'unknown transform "{name}" '
            f"in {where}{did_you_mean(name, choices)}; see albumentations docs"
        )
    return cls


def _check_arguments(cls, name: str, args: Mapping) -> None:
    """Every argument must be a parameter of the transform (albumentations would only warn)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [p for p in parameters if p != "self"]
    for key in args:
        if key not in allowed:
            raise PodiumError(
                f'unknown argument "{key}" for transform {name}{did_you_mean(key, allowed)}; '
                f"expected one of: {', '.join(allowed)}"
            )


def _describe(error: Exception) -> str:
    """One line from a pydantic ValidationError (argument + message) or any other error."""
    cause = error.__cause__ if hasattr(error.__cause__, "errors") else error
    if hasattr(cause, "errors"):
        first = cause.errors()[0]
        argument = ".".join(str(part) for part in first.get("loc", ())[:1])
        return f'argument "{argument}": {first.get("msg")} (got {first.get("input")!r})'
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _short(name: str) -> str:
    return serialization.shorten_class_name(str(name))
