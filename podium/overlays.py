"""Overlay pictures: an image with the predicted (red) and true (green) outlines drawn on it.

Shared by the training callbacks (best / worst samples of an epoch) and `podium predict`.
"""

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from podium.files import write_image

__all__ = ["draw_overlay", "write_overlay"]


def _display(image: np.ndarray) -> np.ndarray:
    """C×H×W float image → H×W×3 uint8, each channel stretched to its 1-99 % range."""
    channels = image[:3] if image.shape[0] >= 3 else image[:1].repeat(3, axis=0)
    low = np.percentile(channels, 1, axis=(1, 2), keepdims=True)
    high = np.percentile(channels, 99, axis=(1, 2), keepdims=True)
    stretched = np.clip((channels - low) / np.maximum(high - low, 1e-6), 0, 1)
    return (stretched.transpose(1, 2, 0) * 255).astype(np.uint8)


def draw_overlay(
    image: np.ndarray, prediction: np.ndarray, target: Optional[np.ndarray] = None
) -> np.ndarray:
    """H×W×3 RGB uint8: predicted outlines in red and, if known, true outlines in green."""
    canvas = _display(image)
    kernel = np.ones((3, 3), np.uint8)
    for mask, colour in ((target, (0, 255, 0)), (prediction, (255, 0, 0))):
        if mask is None:
            continue
        mask = (mask > 0).astype(np.uint8)
        outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, kernel) > 0
        canvas[outline] = colour
    return canvas


def write_overlay(
    path: Path, image: np.ndarray, prediction: np.ndarray, target: Optional[np.ndarray] = None
) -> None:
    """`draw_overlay` written to `path` (atomically)."""
    write_image(path, cv2.cvtColor(draw_overlay(image, prediction, target), cv2.COLOR_RGB2BGR))
