"""Read images and masks from disk into plain numpy arrays.

Competition data comes as 8-bit PNG/JPG, 16-bit PNG or multi-channel TIFF; every reader here
returns the same shapes (image H×W×C in the file's own dtype, mask H×W of integer labels) so the
rest of the pipeline never branches on file format. cv2 is used for PNG/JPG because, unlike
Pillow, it keeps 16-bit colour PNGs at 16 bits; its BGR order is undone here.
"""

import os

import cv2
import numpy as np
import tifffile

from podium.errors import PodiumError

__all__ = ["IMAGE_EXTENSIONS", "MASK_EXTENSIONS", "read_image", "read_mask"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_EXTENSIONS = (".png", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


def read_image(path) -> np.ndarray:
    """Image as H×W×C in its stored dtype (uint8/uint16/float), colour channels in RGB(A) order."""
    array = _read_tiff(path) if _is_tiff(path) else _read_cv2(path)
    return _to_hwc(array, path)


def read_mask(path) -> np.ndarray:
    """Mask as H×W integer labels (for binary targets, any value > 0 is foreground)."""
    array = _read_tiff(path) if _is_tiff(path) else _read_cv2(path)
    array = np.squeeze(array) if array.ndim > 2 else array
    if array.ndim == 3 and all(
        np.array_equal(array[..., 0], array[..., c]) for c in range(array.shape[-1])
    ):
        array = array[..., 0]  # a grey mask saved as RGB
    if array.ndim != 2:
        raise PodiumError(
            f"mask {path} has shape {array.shape}; expected a single-channel H×W label image"
        )
    return _as_integer_labels(array, path)


def _is_tiff(path) -> bool:
    return str(path).lower().endswith(_TIFF)


def _check_exists(path) -> None:
    if not os.path.isfile(path):
        raise PodiumError(f"file {path} does not exist")


def _read_tiff(path) -> np.ndarray:
    """TIFF via tifffile (any bit depth, any number of channels)."""
    _check_exists(path)
    try:
        return tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for corrupt files
        # tifffile needs the imagecodecs package for LZW/JPEG-compressed TIFFs (as cv2 writes them);
        # cv2 reads those
        array = _decode_cv2(path)
        if array is not None:
            return array
        raise PodiumError(
            f"cannot read TIFF file {path} (corrupt or truncated?): {error}"
        ) from error


def _read_cv2(path) -> np.ndarray:
    """PNG/JPG via cv2 (decoded from bytes, so non-ASCII paths work), BGR(A) turned into RGB(A)."""
    _check_exists(path)
    array = _decode_cv2(path)
    if array is None:
        reason = "empty file" if os.path.getsize(path) == 0 else "corrupt or truncated"
        raise PodiumError(
            f"cannot decode image file {path} ({reason}); "
            "expected a readable PNG, JPEG or TIFF file"
        )
    return array


def _decode_cv2(path):
    """cv2 decoding from bytes (so non-ASCII paths work), BGR(A) turned into RGB(A); None if it
    fails."""
    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        return None
    if array.ndim == 3 and array.shape[-1] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def _to_hwc(array: np.ndarray, path) -> np.ndarray:
    """2-D → H×W×1; channel-first TIFFs (C×H×W, C the smallest axis) → H×W×C."""
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        return array[..., None]
    if array.ndim != 3:
        raise PodiumError(f"image {path} has shape {array.shape}; expected H×W, H×W×C or C×H×W")
    if array.shape[0] < min(array.shape[1], array.shape[2]) and array.shape[-1] > array.shape[0]:
        array = np.moveaxis(array, 0, -1)
    return np.ascontiguousarray(array)


def _as_integer_labels(array: np.ndarray, path) -> np.ndarray:
    """Accept integer masks, and float masks only if they hold whole numbers."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating) and np.array_equal(array, np.round(array)):
        return array.astype(np.int64)
    raise PodiumError(
        f"mask {path} has non-integer values (dtype {array.dtype}); expected integer labels"
    )
