"""Files a prediction run leaves on disk: masks, overlays and a metrics summary.

Every output of a prediction is written inside `writing(path)`. A write that fails (disk full,
quota, a read-only or vanished folder) stops with one line naming the file, instead of a
traceback from cv2 or the csv module. Every file goes to a temp file renamed over the target
(`write_atomically`): a failed write leaves the file of an earlier prediction whole, where
`cv2.imwrite` would leave it truncated or deleted.
"""
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from podium.errors import PodiumError

__all__ = [
    "OutputWriteError", "writing", "temporary_path", "write_atomically", "to_mask", "write_mask", "write_overlay",
    "write_json",
]


class OutputWriteError(PodiumError, OSError):
    """A prediction output could not be written; the files written before it are kept."""


@contextlib.contextmanager
def writing(path):
    """Turn an OSError raised while writing `path` into one clear OutputWriteError."""
    try:
        yield
    except OSError as error:
        if isinstance(error, PodiumError):
            raise
        reason = error.strerror or str(error) or type(error).__name__
        raise OutputWriteError(
            f"cannot write {path}: {reason}; expected a writable output folder with free space "
            f"(the files written before it are kept)"
        ) from error


def temporary_path(path: Path) -> Path:
    """Where a write of `path` goes before its rename: hidden, one per process and thread."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomically(path, write: Callable[[Path], None]) -> Path:
    """`write(temp)` next to `path`, then rename it over `path` (the folder is created).

    A failed write is one OutputWriteError naming `path`; the old file stays, no temp is left.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    return path


def _imwrite(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise PodiumError(f"cannot encode {path} as a {path.suffix} image; expected .png, .jpg or .tif")
    write_atomically(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))


def to_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """C×H×W probabilities → H×W mask: 0/255 for one class, class indices otherwise."""
    if probability.shape[0] == 1:
        return ((probability[0] > threshold) * 255).astype(np.uint8)
    return probability.argmax(axis=0).astype(np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    _imwrite(path, mask)


def _display(image: np.ndarray) -> np.ndarray:
    """C×H×W float image → H×W×3 uint8, each channel stretched to its 1-99 % range."""
    channels = image[:3] if image.shape[0] >= 3 else image[:1].repeat(3, axis=0)
    low = np.percentile(channels, 1, axis=(1, 2), keepdims=True)
    high = np.percentile(channels, 99, axis=(1, 2), keepdims=True)
    stretched = np.clip((channels - low) / np.maximum(high - low, 1e-6), 0, 1)
    return (stretched.transpose(1, 2, 0) * 255).astype(np.uint8)


def write_overlay(
    path: Path, image: np.ndarray, prediction: np.ndarray, target: Optional[np.ndarray] = None
) -> None:
    """The image with predicted outlines in red and, if known, true outlines in green."""
    canvas = _display(image)
    kernel = np.ones((3, 3), np.uint8)
    for mask, colour in ((target, (0, 255, 0)), (prediction, (255, 0, 0))):
        if mask is None:
            continue
        mask = (mask > 0).astype(np.uint8)
        outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, kernel) > 0
        canvas[outline] = colour
    _imwrite(path, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def write_json(path: Path, data: dict) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
