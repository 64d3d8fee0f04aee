"""Named augmentation presets: `light`, `medium`, `hard`, `d4`.

A preset is a compact transform list (see transforms.py) that works on what the dataset hands to
albumentations: float32 images scaled to [0, 1], any number of channels (so no colour/HSV
transforms — they need 3 channels), 8- or 16-bit sources alike.

Each preset, what it contains and why / when to use it:

- `light`: HorizontalFlip; RandomBrightnessContrast ±0.1 (p 0.5).
  Why / when: safe for any data incl. scenes with an "up" (street, faces); little data drift.
- `d4`: D4 (the 8 flips / 90° rotations, p 1).
  Why / when: orientation-free data (microscopy, satellite, histology): 8× data, no interpolation,
  labels exact.
- `medium`: HorizontalFlip; Affine rotate ±15°, translate 5%, scale 0.9–1.1 (p 0.5);
  RandomBrightnessContrast ±0.2 (p 0.5); RandomGamma 80–120 (p 0.3); OneOf GaussianBlur / GaussNoise
  σ 0.01–0.05 (p 0.2).
  Why / when: the default for a new problem: mild geometry + photometry, rarely hurts.
- `hard`: HorizontalFlip; VerticalFlip; Affine rotate ±45°, shear ±10°, translate 10%, scale
  0.75–1.33 (p 0.7); OneOf ElasticTransform / GridDistortion (p 0.25); RandomBrightnessContrast ±0.3
  (p 0.8); RandomGamma 70–150 (p 0.5); OneOf GaussianBlur / MotionBlur / GaussNoise (p 0.4);
  CoarseDropout 1–4 holes of 5–15% (p 0.3).
  Why / when: small data sets and long schedules where the model over-fits; check that it still
  converges.

With `size`, every preset first cuts a fixed-size training crop so batches stack: `light` and
`d4` a `RandomCrop` (padded if the image is smaller); `medium` and `hard` a multi-scale
`RandomScaleCrop` (scale 0.8–1.25 / 0.6–1.66, replacing the Affine's own scaling).

YAML — a preset is a mapping in place of the transform list::

    train_transforms:
      preset: medium
      size: 256                    # optional: int or [height, width]
      overrides:                   # optional: merge arguments into the preset's transforms …
        RandomBrightnessContrast: {p: 0.8}
        GaussNoise: null           # … or drop one (null), found also inside OneOf
      append:                      # optional: more transforms after the preset (compact form)
        - CoarseDropout: {p: 0.5}

or an entry of a compact list, expanded in place (same keys, e.g. to put transforms before it)::

    train_transforms:
      - PositiveCrop: {height: 96, width: 96, positive_p: 0.5}
      - {preset: d4}
"""

import copy
from typing import Any, Dict, List, Mapping

from podium.errors import PodiumError, check_keys, did_you_mean
from podium.validation import is_int

__all__ = ["PRESETS", "PRESET_KEYS", "preset_transforms", "is_preset"]

PRESET_KEYS = ("preset", "size", "overrides", "append")


def _light() -> List[dict]:
    return [
        {"HorizontalFlip": {"p": 0.5}},
        {"RandomBrightnessContrast": {"brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.5}},
    ]


def _d4() -> List[dict]:
    return [{"D4": {"p": 1.0}}]


def _medium() -> List[dict]:
    return [
        {"HorizontalFlip": {"p": 0.5}},
        {
            "Affine": {
                "rotate": [-15, 15],
                "translate_percent": [-0.05, 0.05],
                "scale": [0.9, 1.1],
                "p": 0.5,
            }
        },
        {"RandomBrightnessContrast": {"brightness_limit": 0.2, "contrast_limit": 0.2, "p": 0.5}},
        {"RandomGamma": {"gamma_limit": [80, 120], "p": 0.3}},
        {
            "OneOf": {
                "p": 0.2,
                "transforms": [
                    {"GaussianBlur": {"blur_limit": [3, 5]}},
                    {"GaussNoise": {"std_range": [0.01, 0.05]}},
                ],
            }
        },
    ]


def _hard() -> List[dict]:
    return [
        {"HorizontalFlip": {"p": 0.5}},
        {"VerticalFlip": {"p": 0.5}},
        {
            "Affine": {
                "rotate": [-45, 45],
                "shear": [-10, 10],
                "translate_percent": [-0.1, 0.1],
                "scale": [0.75, 1.33],
                "p": 0.7,
            }
        },
        {
            "OneOf": {
                "p": 0.25,
                "transforms": [
                    {"ElasticTransform": {"alpha": 30, "sigma": 6}},
                    {"GridDistortion": {"distort_limit": 0.2}},
                ],
            }
        },
        {"RandomBrightnessContrast": {"brightness_limit": 0.3, "contrast_limit": 0.3, "p": 0.8}},
        {"RandomGamma": {"gamma_limit": [70, 150], "p": 0.5}},
        {
            "OneOf": {
                "p": 0.4,
                "transforms": [
                    {"GaussianBlur": {"blur_limit": [3, 7]}},
                    {"MotionBlur": {"blur_limit": [3, 7]}},
                    {"GaussNoise": {"std_range": [0.01, 0.08]}},
                ],
            }
        },
        {
            "CoarseDropout": {
                "num_holes_range": [1, 4],
                "hole_height_range": [0.05, 0.15],
                "hole_width_range": [0.05, 0.15],
                "p": 0.3,
            }
        },
    ]


PRESETS = {"light": _light, "medium": _medium, "hard": _hard, "d4": _d4}
_SCALE_RANGE = {"medium": [0.8, 1.25], "hard": [0.6, 1.66]}  # multi-scale crop with `size`


def is_preset(spec: Any) -> bool:
    return isinstance(spec, Mapping) and "preset" in spec


def preset_transforms(spec: Mapping) -> List[dict]:
    """The compact transform list of {preset, size?, overrides?, append?}."""
    check_keys(spec.keys(), PRESET_KEYS, "transforms preset")
    name = spec["preset"]
    if name not in PRESETS:
        raise PodiumError(
            f'unknown augmentation preset "{name}"{did_you_mean(name, PRESETS)}; '
            f"expected one of: {', '.join(PRESETS)}"
        )
    items = PRESETS[name]()
    if spec.get("size") is not None:
        height, width = _size(spec["size"], name)
        if name in _SCALE_RANGE:
            for item in items:  # the crop does the scaling
                if "Affine" in item:
                    item["Affine"].pop("scale")
            crop = {
                "RandomScaleCrop": {
                    "height": height,
                    "width": width,
                    "scale_range": _SCALE_RANGE[name],
                }
            }
        else:
            crop = {"RandomCrop": {"height": height, "width": width, "pad_if_needed": True}}
        items.insert(0, crop)
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise PodiumError(
            f"overrides of preset {name} must be a mapping like "
            f"{{GaussNoise: {{p: 0.5}}}}, got {overrides!r}"
        )
    for transform, args in overrides.items():
        items = _override(items, transform, args, name)
    append = spec.get("append") or []
    if not isinstance(append, (list, tuple)):
        raise PodiumError(
            f"append of preset {name} must be a list of "
            f"transforms like [{{CLAHE: {{}}}}], got {append!r}"
        )
    return items + copy.deepcopy(list(append))


def _override(items: List[dict], transform: str, args, preset: str) -> List[dict]:
    if args is not None and not isinstance(args, Mapping):
        raise PodiumError(
            f"overrides.{transform} of preset {preset} must "
            f"be a mapping of arguments or null, got {args!r}"
        )
    found = []

    def walk(entries: List[dict]) -> List[dict]:
        kept = []
        for entry in entries:
            ((key, entry_args),) = entry.items()
            if key == transform:
                found.append(key)
                if args is None:
                    continue
                entry = {key: {**entry_args, **args}}
            elif isinstance(entry_args.get("transforms"), list):
                entry = {key: {**entry_args, "transforms": walk(entry_args["transforms"])}}
            kept.append(entry)
        return kept

    items = walk(items)
    if not found:
        names = _names(items)
        raise PodiumError(
            f'overrides names "{transform}" but preset {preset} has '
            f"no such transform{did_you_mean(transform, names)}; "
            f"it contains: {', '.join(names)} (use append to add one)"
        )
    return items


def _names(items: List[dict]) -> List[str]:
    names = []
    for entry in items:
        ((key, args),) = entry.items()
        names.append(key)
        if isinstance(args.get("transforms"), list):
            names += _names(args["transforms"])
    return names


def _size(size, preset: str):
    if is_int(size):
        size = [size, size]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(is_int(v) and v > 0 for v in size)
    ):
        raise PodiumError(
            f"size of preset {preset} must be a positive integer or [height, width], got {size!r}"
        )
    return int(size[0]), int(size[1])


def describe() -> Dict[str, List[dict]]:
    """Every preset's transform list (without size), e.g. for documentation."""
    return {name: build() for name, build in PRESETS.items()}
