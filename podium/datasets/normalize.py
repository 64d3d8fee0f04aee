"""Intensity normalisation from the `normalize:` config block.

Normalisation is split in two steps so augmentation can sit between them:
`scale` maps raw pixels (uint8, uint16, float) to float32 roughly in [0, 1] — brightness/contrast
augmentations then behave the same for 8- and 16-bit data — and `standardize` applies the
optional mean/std afterwards. Calling the normaliser does both.

Config forms::

    {mode: fixed, mean: [...], std: [...], max_value: 255 | 65535 | null}   # null: from dtype
    {mode: percentile, low: 1, high: 99}      # per image and channel, clipped to [0, 1]
    {mode: minmax}                            # per image and channel, to [0, 1]
    {mode: stats, path: stats.json}           # fixed, with the numbers `podium stats` wrote

Like albumentations' Normalize, `mean` and `std` are in units of the scaled image ([0, 1]),
e.g. ImageNet's [0.485, 0.456, 0.406].

`stats` mode is the fixed mode with `max_value`, `mean` and `std` taken from the `normalize`
block of a `podium stats` file (mean/std already divided by that max_value), so it gives exactly
what `{mode: fixed, ...}` with the same numbers gives (`resolved_normalize`: that fixed block,
which `podium export` stores). A relative `path` is taken from the current directory (where
`catalyst-dl run` is started).
"""

import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from podium.errors import PodiumError, check_keys, did_you_mean
from podium.validation import is_number

__all__ = [
    "IMAGENET_NORMALIZE",
    "Normalizer",
    "build_normalizer",
    "load_stats_normalize",
    "resolved_normalize",
]

# ImageNet's mean / std on 8-bit images: the default of the tasks' data and predictors
IMAGENET_NORMALIZE = {
    "mode": "fixed",
    "max_value": 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

MODES = {
    "fixed": ("mode", "mean", "std", "max_value"),
    "percentile": ("mode", "low", "high"),
    "minmax": ("mode",),
    "stats": ("mode", "path"),
}
_EPS = 1e-8


class Normalizer:
    """Scale raw pixels to float32 [0, 1]-ish, then optionally subtract mean / divide by std."""

    def __init__(self, mode="fixed", mean=None, std=None, max_value=None, low=1.0, high=99.0):
        self.mode = mode
        self.mean = None if mean is None else _as_vector(mean, "mean")
        self.std = None if std is None else _as_vector(std, "std")
        self.max_value = max_value
        self.low, self.high = float(low), float(high)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.standardize(self.scale(image))

    def scale(self, image: np.ndarray) -> np.ndarray:
        """Raw H×W×C pixels → float32 in [0, 1] (fixed mode: divided by max_value)."""
        if self.mode == "percentile":
            return _percentile_scale(image, self.low, self.high)
        if self.mode == "minmax":
            return _minmax_scale(image)
        return (image.astype(np.float32) / np.float32(self._max_value(image.dtype))).astype(
            np.float32
        )

    def standardize(self, image: np.ndarray) -> np.ndarray:
        """(scaled - mean) / std per channel; a no-op unless mean or std were given."""
        self.check_channels(image.shape[-1])
        image = image.astype(np.float32, copy=False)
        if self.mean is not None:
            image = image - self.mean
        if self.std is not None:
            image = image / self.std
        return image.astype(np.float32, copy=False)

    def check_channels(self, channels: int) -> None:
        """mean/std must have one value per channel (or a single value for all)."""
        for key, vector in (("mean", self.mean), ("std", self.std)):
            if vector is not None and len(vector) not in (1, channels):
                raise PodiumError(
                    f"normalize.{key} has {len(vector)} values but the image has {channels} "
                    "channel(s); give one value per channel or a single value"
                )

    def _max_value(self, dtype) -> float:
        if self.max_value is not None:
            return float(self.max_value)
        if np.issubdtype(dtype, np.integer):
            return float(np.iinfo(dtype).max)
        return 1.0  # float images are taken as already scaled

    def __repr__(self) -> str:
        return f"Normalizer(mode={self.mode!r})"


def build_normalizer(
    spec: Optional[Mapping] = None, default: Optional[Mapping] = None
) -> Normalizer:
    """Normalizer from the config block; None: `default`, else 'divide by the dtype maximum'."""
    if isinstance(spec, Normalizer):
        return spec
    if spec is None:
        return Normalizer() if default is None else build_normalizer(default)
    if not isinstance(spec, Mapping):
        raise PodiumError(
            f"normalize must be a mapping like {{mode: percentile, low: 1, high: 99}}, got {spec!r}"
        )
    mode = spec.get("mode", "fixed")
    if mode not in MODES:
        raise PodiumError(
            f'unknown normalize.mode "{mode}"{did_you_mean(mode, MODES)}; '
            f"expected one of: {', '.join(MODES)}"
        )
    check_keys(spec, MODES[mode], f"normalize (mode {mode})")
    spec = resolved_normalize(spec)
    _check_values(spec)
    return Normalizer(**spec)


def resolved_normalize(spec):
    """`spec` as it stands without its files: a `stats` block → the fixed mode with the numbers
    of its `podium stats` file (what it stands for), any other spec as given. What an export
    stores, so that the file predicts without the run's statistics file."""
    if isinstance(spec, Mapping) and spec.get("mode") == "stats":
        return load_stats_normalize(spec.get("path"))
    return spec


def load_stats_normalize(path) -> dict:
    """{mode: fixed, max_value, mean, std} from the `normalize` block of a `podium stats` JSON
    file."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise PodiumError(
            "normalize (mode stats) needs path: "
            f"the JSON file written by `podium stats`, got {path!r}"
        )
    if not os.path.isfile(path):
        raise PodiumError(
            f"normalize.path {path} does not exist; "
            f"expected the JSON file written by `podium stats DATA --out {path}`"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            block = json.load(handle).get("normalize")
    except (OSError, ValueError, AttributeError) as error:
        raise PodiumError(
            f"normalize.path {path} is not a `podium stats` JSON file: {error}"
        ) from error
    if not isinstance(block, Mapping) or not {"mean", "std", "max_value"} <= set(block):
        raise PodiumError(
            f"normalize.path {path} has no normalize block with max_value, mean and std; "
            "expected a file written by `podium stats`"
        )
    return {
        "mode": "fixed",
        "max_value": block["max_value"],
        "mean": block["mean"],
        "std": block["std"],
    }


def _check_values(spec: Mapping) -> None:
    """Reject values that would silently produce NaN or nonsense."""
    if spec.get("max_value") is not None and not _positive(spec["max_value"]):
        raise PodiumError(
            f"normalize.max_value must be a positive number or null, got {spec['max_value']!r}"
        )
    if spec.get("std") is not None and not all(
        _positive(v) for v in np.atleast_1d(_as_vector(spec["std"], "std"))
    ):
        raise PodiumError(f"normalize.std must hold positive numbers, got {spec['std']!r}")
    low, high = spec.get("low", 1.0), spec.get("high", 99.0)
    if not (is_number(low) and is_number(high) and 0 <= low < high <= 100):
        raise PodiumError(
            f"normalize.low/high must satisfy 0 <= low < high <= 100, got low={low!r} high={high!r}"
        )


def _as_vector(values, key: str) -> np.ndarray:
    values = [values] if np.isscalar(values) else values
    if (
        not isinstance(values, Sequence)
        and not isinstance(values, np.ndarray)
        or not all(map(is_number, values))
    ):
        raise PodiumError(f"normalize.{key} must be a number or a list of numbers, got {values!r}")
    return np.asarray(values, dtype=np.float32)


def _positive(value) -> bool:
    return is_number(value) and value > 0


def _percentile_scale(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per channel: low percentile → 0, high percentile → 1, clipped (robust to hot pixels)."""
    image = image.astype(np.float32)
    lo, hi = np.percentile(image, [low, high], axis=(0, 1), keepdims=True).astype(np.float32)
    return np.clip((image - lo) / np.maximum(hi - lo, _EPS), 0.0, 1.0).astype(np.float32)


def _minmax_scale(image: np.ndarray) -> np.ndarray:
    """Per channel: min → 0, max → 1 (a constant channel becomes all zeros)."""
    image = image.astype(np.float32)
    lo = image.min(axis=(0, 1), keepdims=True)
    hi = image.max(axis=(0, 1), keepdims=True)
    return ((image - lo) / np.maximum(hi - lo, _EPS)).astype(np.float32)
