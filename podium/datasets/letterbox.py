"""Letterbox: resize by the longest side, pad to a fixed size — and the exact inverse.

A letterboxed image keeps its aspect ratio (no stretching of round nuclei into ellipses) and
still stacks into a batch. At prediction time `unletterbox` crops the padding off the network's
output and resizes it back, so masks come out in the original geometry::

    boxed, meta = letterbox(image, 256)  # H×W(×C) → 256×256(×C), meta: a plain dict
    mask_256, _ = letterbox(mask, 256, interpolation=cv2.INTER_NEAREST_EXACT)
    probs = predict(boxed)               # 256×256 (×C), or C×256×256 with channels_first
    probs = unletterbox(probs, meta)     # → H×W (×C), linear for floats
    mask  = unletterbox(mask_256, meta)  # integer / bool arrays → nearest (labels stay labels)

`meta` depends only on the original shape and the target size, so `letterbox_meta(shape, size)`
rebuilds it without the image (a dataset only needs to keep the original height and width).
The padding is split evenly (the odd pixel goes bottom/right).

For training, `Letterbox(height, width)` is the same operation as an albumentations
DualTransform (usable by name in the compact YAML list)::

    - Letterbox: {height: 256, width: 256}
"""

from typing import Any, Dict, Tuple, Union

import cv2
import numpy as np
from albumentations.core.transforms_interface import DualTransform

from podium.datasets.crops import _resize
from podium.errors import PodiumError
from podium.validation import POSITIVE, check_int, is_int

__all__ = ["Letterbox", "letterbox", "letterbox_meta", "unletterbox"]

Size = Union[int, Tuple[int, int]]


def letterbox_meta(shape, size: Size) -> Dict[str, Any]:
    """Scale, resized shape and padding for an image of `shape` (H, W, ...) boxed into `size`."""
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise PodiumError(
            f"cannot letterbox an image of shape {tuple(shape)}; expected height and width >= 1"
        )
    out_h, out_w = _size(size)
    scale = min(out_h / height, out_w / width)
    new_h, new_w = (
        min(out_h, max(1, round(height * scale))),
        min(out_w, max(1, round(width * scale))),
    )
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    return {
        "original": [height, width],
        "resized": [new_h, new_w],
        "size": [out_h, out_w],
        "pad": [top, out_h - new_h - top, left, out_w - new_w - left],  # top, bottom, left, right
        "scale": scale,
    }


def letterbox(
    image: np.ndarray, size: Size, interpolation: int = cv2.INTER_LINEAR, fill: float = 0.0
):
    """(boxed image, meta); image H×W or H×W×C of any dtype. For a mask pass
    interpolation=cv2.INTER_NEAREST_EXACT (bool masks always use nearest)."""
    image = np.asarray(image)
    meta = letterbox_meta(image.shape, size)
    return _box(image, meta, int(interpolation), fill), meta


def unletterbox(
    array, meta: Dict[str, Any], interpolation: int = None, channels_first: bool = False
):
    """Crop the padding off `array` (size meta['size']) and resize it to meta['original'].

    Floats (probabilities, logits) use linear interpolation, integer/bool masks nearest.
    `channels_first=True` for C×H×W arrays (a model's output); torch tensors are accepted
    and returned as numpy arrays.
    """
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if channels_first:
        array = np.moveaxis(array, 0, -1)
    expected = tuple(meta["size"])
    if array.shape[:2] != expected:
        hint = ""
        if not channels_first and array.ndim == 3 and array.shape[1:] == expected:
            hint = " (channels_first=True for C×H×W)"
        raise PodiumError(
            f"unletterbox got an array of shape {array.shape} but the letterbox size was "
            f"{expected[0]}×{expected[1]}{hint}"
        )
    top, _, left, _ = meta["pad"]
    new_h, new_w = meta["resized"]
    crop = array[top : top + new_h, left : left + new_w]
    out = _resize_any(crop, tuple(meta["original"]), _interpolation(array, interpolation))
    return np.moveaxis(out, -1, 0) if channels_first else out


class Letterbox(DualTransform):
    """Resize by the longest side and pad to height×width (image: `interpolation`, mask:
    nearest)."""

    def __init__(
        self,
        height: int,
        width: int,
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
        self.interpolation, self.mask_interpolation = int(interpolation), int(mask_interpolation)
        self.fill, self.fill_mask = fill, fill_mask

    def get_params_dependent_on_data(
        self, params: Dict[str, Any], data: Dict[str, Any]
    ) -> Dict[str, Any]:
        return {"letterbox": letterbox_meta(params["shape"], (self.height, self.width))}

    def apply(self, img: np.ndarray, letterbox=None, **params) -> np.ndarray:
        return _box(img, letterbox, self.interpolation, self.fill)

    def apply_to_mask(self, mask: np.ndarray, letterbox=None, **params) -> np.ndarray:
        return _box(mask, letterbox, self.mask_interpolation, self.fill_mask)

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ("height", "width", "interpolation", "mask_interpolation", "fill", "fill_mask")


def _box(array: np.ndarray, meta: Dict[str, Any], interpolation: int, fill) -> np.ndarray:
    resized = _resize_any(array, tuple(meta["resized"]), interpolation)
    top, bottom, left, right = meta["pad"]
    pad = [(top, bottom), (left, right)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(resized, pad, mode="constant", constant_values=fill)


def _resize_any(array: np.ndarray, size, interpolation: int) -> np.ndarray:
    """Resize keeping dtype; bool and int64 (which cv2 cannot resize) go through a wider type."""
    if array.shape[:2] == tuple(size):
        return array.copy()
    dtype = array.dtype
    if dtype == np.bool_ or dtype in (np.int64, np.uint32, np.uint64, np.int8):
        work = array.astype(np.int32 if dtype != np.bool_ else np.uint8)
        return _resize(work, size, cv2.INTER_NEAREST_EXACT).astype(dtype)
    return _resize(array, size, interpolation)


def _interpolation(array: np.ndarray, interpolation) -> int:
    if interpolation is not None:
        return int(interpolation)
    return cv2.INTER_LINEAR if np.issubdtype(array.dtype, np.floating) else cv2.INTER_NEAREST_EXACT


def _size(size: Size) -> Tuple[int, int]:
    if is_int(size):
        size = (size, size)
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise PodiumError(f"letterbox size must be an integer or [height, width], got {size!r}")
    return check_int(size[0], "letterbox height", 1, POSITIVE), check_int(
        size[1], "letterbox width", 1, POSITIVE
    )
