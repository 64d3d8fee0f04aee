"""Data-set statistics for `podium stats DATA --out stats.json`.

One streaming pass over the images (and masks, if present):

* per-channel mean / std / min / max in raw units (float64, Welford/Chan merge of per-image
  moments, so 16-bit data and millions of pixels lose no precision),
* the same mean / std in the units of `normalize: {mode: fixed}` — divided by `max_value`
  (default: the dtype maximum, 255 / 65535, as the fixed mode's `max_value: null`),
* a `normalize` block `{mode: fixed, max_value, mean, std}` — read by
  `normalize: {mode: stats, path: stats.json}` or pasted into a config,
* image sizes (H×W → count) and dtypes,
* masks: pixel count and fraction per label value (or per channel of multi-channel masks),
  how many images contain each, and the number of empty masks (no value > 0).
"""

import json
import os
import sys
from collections import Counter
from typing import Dict, Iterable, List, Optional

import numpy as np

from podium.datasets.image_folder import index_images, index_masks, resolve_layout
from podium.datasets.readers import read_image, read_mask
from podium.errors import PodiumError

__all__ = ["RunningMoments", "compute_stats", "dtype_max_value", "pixel_summary", "write_stats"]


class RunningMoments:
    """Per-channel count / mean / M2 (sum of squared deviations) in float64, merged batch by
    batch."""

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None
        self.min = None
        self.max = None

    def update(self, pixels: np.ndarray) -> None:
        """Add an N×C block of pixels (Chan et al.'s parallel merge of two moment sets)."""
        pixels = pixels.astype(np.float64, copy=False)
        n = pixels.shape[0]
        if n == 0:
            return
        mean = pixels.mean(axis=0)
        m2 = ((pixels - mean) ** 2).sum(axis=0)
        low, high = pixels.min(axis=0), pixels.max(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2, self.min, self.max = n, mean, m2, low, high
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total
        self.min, self.max = np.minimum(self.min, low), np.maximum(self.max, high)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof 0, as numpy's std)."""
        return np.sqrt(self.m2 / max(self.count, 1))


def compute_stats(
    root,
    names: Optional[Iterable[str]] = None,
    max_value: Optional[float] = None,
    image_dir: str = "images",
    mask_dir: str = "masks",
    layout: str = "auto",
    mask_suffix: str = "_mask",
    progress: bool = True,
) -> Dict:
    """Statistics of the images (all, or `names`) of an image folder; see the module docstring."""
    from tqdm import tqdm

    folder_layout = resolve_layout(root, layout, image_dir, mask_dir, mask_suffix)
    images = index_images(folder_layout)
    names = sorted(images) if names is None else [str(n) for n in names]
    if not names:
        raise PodiumError(
            f"no images in {folder_layout.image_folder}; expected NAME.png/.tif/.jpg files"
        )
    missing = [n for n in names if n not in images]
    if missing:
        raise PodiumError(
            f"{len(missing)} name(s) have no image file "
            f"in {folder_layout.image_folder}: {', '.join(missing[:5])}"
        )
    masks = index_masks(folder_layout) if os.path.isdir(folder_layout.mask_folder) else {}

    moments = RunningMoments()
    sizes, dtypes = Counter(), Counter()
    channels, dtype_max = None, 0.0
    labels = _MaskCounter()
    for name in tqdm(
        names, desc="podium stats", unit="image", file=sys.stderr, disable=not progress, leave=False
    ):
        path = os.path.join(folder_layout.image_folder, images[name])
        image = read_image(path)
        if channels is None:
            channels = image.shape[-1]
        elif image.shape[-1] != channels:
            raise PodiumError(
                f"image {path} has {image.shape[-1]} channel(s) but earlier images "
                f"have {channels}; expected the same for all"
            )
        sizes[f"{image.shape[0]}x{image.shape[1]}"] += 1
        dtypes[str(image.dtype)] += 1
        dtype_max = max(dtype_max, dtype_max_value(image.dtype))
        moments.update(image.reshape(-1, channels))
        if name in masks:
            labels.add(os.path.join(folder_layout.mask_folder, masks[name]))

    summary = pixel_summary(root, len(names), moments, dtypes, dtype_max, sizes, max_value)
    return {**summary, "masks": labels.summary()}


def pixel_summary(root, images: int, moments: RunningMoments, dtypes, dtype_max, sizes, max_value):
    """The image part of the `podium stats` JSON (folders and scenes alike): counts, raw and
    scaled moments, and the `normalize` block to paste into a config."""
    scale = float(max_value) if max_value is not None else dtype_max
    if not scale > 0:
        raise PodiumError(f"--max-value must be a positive number, got {max_value!r}")
    mean, std = moments.mean, moments.std
    return {
        "root": str(root),
        "images": images,
        "pixels": int(moments.count),
        "channels": int(len(mean)),
        "dtypes": dict(dtypes),
        "dtype_max": dtype_max,
        "sizes": dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "raw": {
            "mean": _list(mean),
            "std": _list(std),
            "min": _list(moments.min),
            "max": _list(moments.max),
        },
        "scaled": {"max_value": scale, "mean": _list(mean / scale), "std": _list(std / scale)},
        "normalize": {
            "mode": "fixed",
            "max_value": scale,
            "mean": _list(mean / scale),
            "std": _list(std / scale),
        },
    }


def write_stats(stats: Dict, out) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(stats, handle, indent=2)
        handle.write("\n")


class _MaskCounter:
    """Pixel counts per label value (H×W masks) or per channel (H×W×C masks), images containing
    each."""

    def __init__(self):
        self.count = 0
        self.empty = 0
        self.pixels = 0
        self.foreground = 0
        self.kind = None
        self.class_pixels: Counter = Counter()
        self.class_images: Counter = Counter()

    def add(self, path: str) -> None:
        try:
            mask = read_mask(path)
            kind = "labels"
        except PodiumError:
            mask = read_image(path)  # a multi-channel (multilabel) mask
            kind = "channels"
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise PodiumError(
                f"mask {path} is {'multi-channel' if kind == 'channels' else 'single-channel'} "
                "unlike earlier masks; expected one kind"
            )
        self.count += 1
        hw = mask.shape[0] * mask.shape[1]
        self.pixels += hw
        if kind == "labels":
            values, counts = np.unique(mask, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                self.class_pixels[int(value)] += int(count)
                self.class_images[int(value)] += 1
            on = int(np.count_nonzero(mask > 0))
        else:
            positive = mask > 0
            per_channel = positive.reshape(-1, mask.shape[-1]).sum(axis=0)
            for c, count in enumerate(per_channel.tolist()):
                self.class_pixels[c] += int(count)
                self.class_images[c] += int(count > 0)
            on = int(positive.any(axis=-1).sum())
        self.foreground += on
        self.empty += int(on == 0)

    def summary(self) -> Dict:
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "kind": self.kind,  # labels: values of H×W masks; channels: multi-channel masks
            "empty": self.empty,
            "foreground_fraction": self.foreground / self.pixels,
            "classes": {
                str(key): {
                    "pixels": self.class_pixels[key],
                    "fraction": self.class_pixels[key] / self.pixels,
                    "images": self.class_images[key],
                }
                for key in sorted(self.class_pixels)
            },
        }


def dtype_max_value(dtype) -> float:
    """The largest value of an integer dtype; 1.0 for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0  # float images are taken as already scaled (as the fixed normalisation does)


def _list(values) -> List[float]:
    return [float(v) for v in np.atleast_1d(values)]
