"""Mask files of a prediction run: probabilities → 0/255 or class-index PNGs.

Written atomically through `podium.files` (temp file beside the target, then a rename), like
every output: a failed write leaves the mask of an earlier prediction whole.
"""

from pathlib import Path

import numpy as np

from podium.files import write_image

__all__ = ["to_mask", "write_mask"]


def to_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """C×H×W probabilities → H×W mask: 0/255 for one class, class indices otherwise."""
    if probability.shape[0] == 1:
        return ((probability[0] > threshold) * 255).astype(np.uint8)
    return probability.argmax(axis=0).astype(np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    write_image(path, mask)
