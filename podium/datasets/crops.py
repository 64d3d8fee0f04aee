"""Crops that over-sample foreground, and multi-scale crops of a fixed output size.

Two albumentations DualTransforms, usable by name from the compact YAML list (see transforms.py)
and serialisable with `transforms_to_dict` / `A.to_dict` (albumentations registers them under
their full name, e.g. `podium.datasets.crops.PositiveCrop`)::

    - PositiveCrop: {height: 96, width: 96, positive_p: 0.5}
    - RandomScaleCrop: {height: 256, width: 256, scale_range: [0.5, 2.0], positive_p: 0.3}

`PositiveCrop(height, width, positive_p)`: with probability `positive_p` (and if the mask has any
foreground) the crop is centred on a foreground pixel drawn uniformly at random — so larger
objects are picked in proportion to their area — and shifted to stay inside the image; otherwise
it is a uniform random crop. Sparse targets (a few nuclei, small lesions) then appear in far more
batches than uniform crops would give. Foreground is `mask > 0` (any channel of a multi-channel
mask).

`RandomScaleCrop(height, width, scale_range, positive_p)`: multi-scale training with batches that
still stack. A scale s is drawn log-uniformly from `scale_range` (so 0.5 and 2.0 are equally
likely), a window of (height/s)×(width/s) pixels of the *original* image is chosen (positive or
uniform, as above) and resized to height×width. That equals "resize the whole image by s, then
crop height×width" but only resamples the pixels that are kept. Masks are resized with
cv2.INTER_NEAREST_EXACT (pixel-centre correct, unlike cv2's INTER_NEAREST).

Both pad with `fill` / `fill_mask` (constant) when the window is larger than the image, so any
image size gives exactly height×width.
"""

import math
from typing import Any, Dict, Sequence, Tuple

import cv2
import numpy as np
from albumentations.core.transforms_interface import DualTransform

from podium.errors import PodiumError
from podium.validation import POSITIVE, check_int, check_probability

__all__ = ["PositiveCrop", "RandomScaleCrop", "choose_window", "crop_window", "centred_start"]


class RandomScaleCrop(DualTransform):
    """Random scale in `scale_range`, then a height×width crop (foreground-centred with
    `positive_p`)."""

    def __init__(
        self,
        height: int,
        width: int,
        scale_range: Sequence[float] = (0.5, 2.0),
        positive_p: float = 0.0,
        interpolation: int = cv2.INTER_LINEAR,
        mask_interpolation: int = cv2.INTER_NEAREST_EXACT,
        fill: float = 0.0,
        fill_mask: float = 0.0,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.height, self.width = (
            check_int(height, "height", 1, POSITIVE),
            check_int(width, "width", 1, POSITIVE),
        )
        self.scale_range = _scale_range(scale_range)
        self.positive_p = check_probability(positive_p, "positive_p")
        self.interpolation = int(interpolation)
        self.mask_interpolation = int(mask_interpolation)
        self.fill, self.fill_mask = fill, fill_mask

    @property
    def targets_as_params(self):
        return ["image"]

    def get_params_dependent_on_data(
        self, params: Dict[str, Any], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        shape = params["shape"][:2]
        low, high = self.scale_range
        scale = (
            math.exp(self.py_random.uniform(math.log(low), math.log(high))) if high > low else low
        )
        window = (max(1, round(self.height / scale)), max(1, round(self.width / scale)))
        mask = data.get("mask")
        if mask is None and data.get("masks") is not None and len(data["masks"]):
            mask = np.asarray(data["masks"]).max(axis=0)
        positive = self.positive_p > 0 and self.py_random.random() < self.positive_p
        top, left = choose_window(
            shape, window, mask if positive else None, self.random_generator, self.py_random
        )
        return {"window": (top, left, window[0], window[1])}

    def apply(self, img: np.ndarray, window=(0, 0, 1, 1), **params) -> np.ndarray:
        return self._crop_resize(img, window, self.interpolation, self.fill)

    def apply_to_mask(self, mask: np.ndarray, window=(0, 0, 1, 1), **params) -> np.ndarray:
        return self._crop_resize(mask, window, self.mask_interpolation, self.fill_mask)

    def _crop_resize(self, array: np.ndarray, window, interpolation: int, fill) -> np.ndarray:
        out = crop_window(array, window, fill)
        if out.shape[:2] != (self.height, self.width):
            out = _resize(out, (self.height, self.width), interpolation)
        return out

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return (
            "height",
            "width",
            "scale_range",
            "positive_p",
            "interpolation",
            "mask_interpolation",
            "fill",
            "fill_mask",
        )


class PositiveCrop(RandomScaleCrop):
    """height×width crop centred on a random foreground pixel with probability `positive_p`, else
    uniform."""

    def __init__(
        self,
        height: int,
        width: int,
        positive_p: float = 0.5,
        fill: float = 0.0,
        fill_mask: float = 0.0,
        p: float = 1.0,
    ):
        super().__init__(
            height,
            width,
            scale_range=(1.0, 1.0),
            positive_p=positive_p,
            fill=fill,
            fill_mask=fill_mask,
            p=p,
        )

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ("height", "width", "positive_p", "fill", "fill_mask")


def choose_window(
    shape, window, mask=None, random_generator=None, py_random=None
) -> Tuple[int, int]:
    """Top-left corner of a `window` (h, w) in an image of `shape` (H, W): centred on a random
    foreground pixel of `mask` if it has any, else uniform. Corners may be negative / overrun
    when the window is larger than the image (the crop then pads)."""
    rng = random_generator if random_generator is not None else np.random.default_rng()
    (height, width), (wh, ww) = shape[:2], window
    if mask is not None:
        foreground = np.asarray(mask) > 0
        if foreground.ndim == 3:
            foreground = foreground.any(axis=-1)
        flat = np.flatnonzero(foreground)
        if flat.size:
            y, x = divmod(int(flat[rng.integers(flat.size)]), width)
            return centred_start(y, height, wh), centred_start(x, width, ww)
    return _uniform_start(height, wh, rng), _uniform_start(width, ww, rng)


def crop_window(array: np.ndarray, window, fill=0.0) -> np.ndarray:
    """array[top:top+h, left:left+w], padded with `fill` where the window leaves the image."""
    top, left, wh, ww = window
    height, width = array.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + wh, height), min(left + ww, width)
    crop = array[y0:y1, x0:x1]
    if crop.shape[:2] == (wh, ww):
        return np.ascontiguousarray(crop)
    out = np.full((wh, ww) + array.shape[2:], fill, dtype=array.dtype)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = crop
    return out


def _resize(array: np.ndarray, size, interpolation: int) -> np.ndarray:
    """cv2.resize that keeps a trailing channel axis (also 1 and > 4 channels)."""
    height, width = size
    if array.ndim == 3 and array.shape[-1] > 4:
        return np.stack(
            [_resize(array[..., c], size, interpolation) for c in range(array.shape[-1])], axis=-1
        )
    out = cv2.resize(array, (width, height), interpolation=interpolation)
    return out[..., None] if array.ndim == 3 and out.ndim == 2 else out


def centred_start(centre: int, length: int, window: int) -> int:
    """Start of a `window` centred on `centre`, shifted to stay inside [0, length) (a window
    larger than the length is centred on it)."""
    return _clip_start(centre - window // 2, length, window)


def _uniform_start(length: int, window: int, rng) -> int:
    """A uniform start in [0, length - window]; a window larger than the image is centred."""
    if window >= length:
        return -((window - length) // 2)
    return int(rng.integers(0, length - window + 1))


def _clip_start(start: int, length: int, window: int) -> int:
    if window >= length:
        return -((window - length) // 2)
    return min(max(start, 0), length - window)


def _scale_range(value) -> Tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
        or value[0] > value[1]
    ):
        raise PodiumError(f"scale_range must be [low, high] with 0 < low <= high, got {value!r}")
    return float(value[0]), float(value[1])
