"""Probabilities of body/border/contact → an instance label map (0 = background, 1..N = objects).

`watershed`: seeds are the 8-connected blobs where body·(1 − contact)·(1 − border) > t
(`seed_threshold`); each seed grows over the elevation −score (`skimage.segmentation.watershed`)
within the mask body > t2 (`mask_threshold`). A blob of the mask that holds no seed keeps its
own label (a weak object is not lost). `components`: the 8-connected blobs of one probability
channel > t2 — the simple fallback, and what a binary model gives. Both then drop objects of
fewer than `min_size` pixels and number the rest 1..N (keeping their order).
"""

from typing import Mapping, Optional

import numpy as np
from skimage.measure import label
from skimage.segmentation import relabel_sequential, watershed

from podium.errors import PodiumError, check_keys
from podium.validation import check_choice, check_int, check_probability

__all__ = ["METHODS", "InstanceSettings", "split_instances", "components", "seeded_watershed"]

METHODS = ("watershed", "components")
BODY, BORDER, CONTACT = 0, 1, 2


def components(probability: np.ndarray, mask_threshold: float = 0.5) -> np.ndarray:
    """int32 labels of the 8-connected blobs of `probability > mask_threshold`."""
    return label(np.asarray(probability) > mask_threshold, connectivity=2).astype(np.int32)


def seeded_watershed(
    probabilities: np.ndarray, seed_threshold: float = 0.7, mask_threshold: float = 0.5
) -> np.ndarray:
    """int32 labels from 3×H×W body/border/contact probabilities (see the module docstring)."""
    body, border, contact = (np.asarray(probabilities[c], np.float32) for c in (0, 1, 2))
    score = body * (1 - contact) * (1 - border)
    mask = body > mask_threshold
    seeds = label((score > seed_threshold) & mask, connectivity=2)
    labels = watershed(-score, seeds, mask=mask, connectivity=2).astype(np.int32)
    orphans = label(mask & (labels == 0), connectivity=2)  # mask blobs no seed reached
    labels[orphans > 0] = orphans[orphans > 0] + labels.max()
    return labels


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Objects of fewer than `min_size` pixels removed, the rest numbered 1..N."""
    if min_size > 1 and labels.any():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel_sequential(labels)[0].astype(np.int32)


class InstanceSettings:
    """How probabilities become objects: `method`, `seed_threshold` (t), `mask_threshold` (t2),
    `min_size`, and `channel` (the probability channel `components` reads: 0 = body, or a binary
    model's only channel)."""

    KEYS = ("method", "seed_threshold", "mask_threshold", "min_size", "channel")

    def __init__(
        self,
        method: str = "watershed",
        seed_threshold: float = 0.7,
        mask_threshold: float = 0.5,
        min_size: int = 0,
        channel: int = 0,
    ):
        self.method = check_choice(method, METHODS, "instances method")
        self.seed_threshold = check_probability(seed_threshold, "instances seed_threshold")
        self.mask_threshold = check_probability(mask_threshold, "instances mask_threshold")
        self.min_size = check_int(min_size, "instances min_size", 0)
        self.channel = check_int(channel, "instances channel", 0)

    @classmethod
    def from_config(cls, config: Optional[Mapping]) -> "InstanceSettings":
        config = dict(config or {})
        check_keys(config.keys(), cls.KEYS, "instances")
        return cls(**config)

    def to_config(self) -> dict:
        return {key: getattr(self, key) for key in self.KEYS}

    def __call__(self, probabilities) -> np.ndarray:
        return split_instances(probabilities, self)


def split_instances(probabilities, settings: InstanceSettings) -> np.ndarray:
    """C×H×W probabilities → H×W int32 instance labels, by `settings`."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 2:
        probabilities = probabilities[None]
    channels = probabilities.shape[0] if probabilities.ndim == 3 else 0
    needed = 3 if settings.method == "watershed" else settings.channel + 1
    if probabilities.ndim != 3 or channels < needed:
        raise PodiumError(
            f"instances method {settings.method} needs at least {needed} probability channel(s) "
            f"(body, border, contact for watershed), got shape {probabilities.shape}"
        )
    if settings.method == "watershed":
        labels = seeded_watershed(probabilities, settings.seed_threshold, settings.mask_threshold)
    else:
        labels = components(probabilities[settings.channel], settings.mask_threshold)
    return remove_small_objects(labels, settings.min_size)
