"""Files a prediction run leaves on disk: masks, overlays and a metrics summary."""
import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

__all__ = ["to_mask", "write_mask", "write_overlay", "write_json"]


def to_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """C×H×W probabilities → H×W mask: 0/255 for one class, class indices otherwise."""
    if probability.shape[0] == 1:
        return ((probability[0] > threshold) * 255).astype(np.uint8)
    return probability.argmax(axis=0).astype(np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask):
        raise OSError(f"could not write {path}")


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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
