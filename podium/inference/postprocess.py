"""Probabilities → masks, per class: threshold, hole filling, minimum blob size.

    post = PostProcess.from_config(
        {"threshold": [0.45, 0.6], "min_size": [16, 32], "fill_holes": False},
        mode="multilabel", class_names=["Fish", "Flower"],
    )
    mask = post(probabilities)          # C×H×W floats in [0, 1] → uint8 mask

Each of `threshold`, `min_size`, `fill_holes` is one value for every class or a list with one
value per class (the `postprocess:` block of an inference YAML; `podium tune-postprocess`
writes it). Per class, in this order:

1. **threshold**: a pixel is on where `p > threshold` (strict, like `podium predict` and the
   metrics). Defaults: 0.5 (binary, multilabel), 0.0 (multiclass, i.e. plain argmax).
2. **fill_holes**: background regions enclosed by the mask are filled
   (`scipy.ndimage.binary_fill_holes`; background is 4-connected, so a hole that leaks out
   through a diagonal gap of the 8-connected mask is not a hole).
3. **min_size**: 8-connected blobs with fewer than `min_size` pixels are removed (a blob of
   exactly `min_size` pixels stays; 0 or 1 keeps everything). The size of a blob counts the
   holes filled in step 2, so a ring-shaped prediction is one object of its filled size. When
   nothing survives the mask is empty.

Modes (what `__call__` returns):

- `binary`: 1×H×W (or H×W) → H×W uint8 {0, 1}.
- `multilabel`: C×H×W → C×H×W uint8 {0, 1}; every class on its own.
- `multiclass` (softmax outputs, class 0 = background): C×H×W → H×W class indices (uint8 for up
  to 256 classes). `argmax` first; then for every class c ≥ 1: its pixels with `p_c <=
  threshold_c` become background 0; `fill_holes` fills the holes of class c where the argmax
  is background or c (never over another class; where the holes of two classes nest, the
  lower class index is filled first); blobs of class c smaller than `min_size_c` become
  background 0 (not the runner-up class). The background's own entries in per-class lists are
  ignored. Class c's mask thus depends only on the argmax and class c's own values, which is
  what lets `podium tune-postprocess` tune each class on its own.
"""

from typing import List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage

from podium.errors import PodiumError, check_keys
from podium.validation import check_choice, check_probability, is_number

__all__ = [
    "MODES",
    "CONFIG_KEYS",
    "PostProcess",
    "default_threshold",
    "fill_enclosed",
    "components",
    "remove_small",
    "binary_class_mask",
    "multiclass_class_mask",
    "as_numpy",
]

MODES = ("binary", "multilabel", "multiclass")
CONFIG_KEYS = ("threshold", "min_size", "fill_holes")
CONNECTIVITY = 8


def default_threshold(mode: str) -> float:
    """0.5 for sigmoid outputs; 0.0 (plain argmax) for multiclass."""
    return 0.0 if mode == "multiclass" else 0.5


def as_numpy(array) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor on any device."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """Boolean mask with its enclosed background regions filled."""
    return ndimage.binary_fill_holes(mask)


def components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(labels H×W int32, areas) of the 8-connected blobs; label 0 / areas[0] is the background."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=CONNECTIVITY
    )
    return labels, stats[:, cv2.CC_STAT_AREA]


def remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Boolean mask without its blobs of fewer than `min_size` pixels."""
    mask = mask.astype(bool)
    if min_size <= 1 or not mask.any():
        return mask
    labels, areas = components(mask)
    keep = areas >= min_size
    keep[0] = False
    return keep[labels]


def binary_class_mask(probability: np.ndarray, threshold: float, fill: bool) -> np.ndarray:
    """Steps 1–2 for one sigmoid channel: `p > threshold`, holes filled if asked."""
    mask = probability > threshold
    return fill_enclosed(mask) if fill else mask


def multiclass_class_mask(
    argmax: np.ndarray, probability: np.ndarray, index: int, threshold: float, fill: bool
) -> np.ndarray:
    """Steps 1–2 for class `index` ≥ 1 of a softmax output (see the module docstring)."""
    mask = (argmax == index) & (probability > threshold)
    if fill:
        mask |= fill_enclosed(mask) & ((argmax == 0) | (argmax == index))
    return mask


class PostProcess:
    """Callable turning C×H×W probabilities into a mask (see the module docstring)."""

    def __init__(
        self,
        threshold=None,
        min_size=0,
        fill_holes=False,
        mode: str = "binary",
        class_names: Optional[Sequence[str]] = None,
    ):
        self.mode = check_choice(mode, MODES, "post-processing mode")
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if self.class_names is not None and mode == "binary" and len(self.class_names) != 1:
            raise PodiumError(
                "binary post-processing has one class, but class_names "
                f"lists {len(self.class_names)}: {self.class_names}"
            )
        self.threshold = _check_values(
            "threshold", default_threshold(mode) if threshold is None else threshold, _threshold
        )
        self.min_size = _check_values("min_size", min_size, _min_size)
        self.fill_holes = _check_values("fill_holes", fill_holes, _flag)
        if self.class_names is not None:
            self.per_class(
                len(self.class_names)
            )  # list lengths checked now, not at the first image

    @classmethod
    def from_config(
        cls,
        config: Optional[Mapping],
        mode: str = "binary",
        class_names: Optional[Sequence[str]] = None,
    ) -> "PostProcess":
        """From a `postprocess:` block: keys `threshold`, `min_size`, `fill_holes` (all
        optional)."""
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise PodiumError(
                f"postprocess must be a mapping with keys {', '.join(CONFIG_KEYS)}, got {config!r}"
            )
        check_keys(config.keys(), CONFIG_KEYS, "postprocess")
        return cls(
            config.get("threshold"),
            config.get("min_size", 0),
            config.get("fill_holes", False),
            mode,
            class_names,
        )

    def to_config(self) -> dict:
        """The `postprocess:` block that rebuilds this object."""
        return {
            "threshold": self.threshold,
            "min_size": self.min_size,
            "fill_holes": self.fill_holes,
        }

    def __call__(self, probabilities) -> np.ndarray:
        probabilities = as_numpy(probabilities)
        if probabilities.ndim == 4:  # a batch
            return np.stack([self(p) for p in probabilities])
        if probabilities.ndim == 2 and self.mode == "binary":
            probabilities = probabilities[None]
        if probabilities.ndim != 3:
            raise PodiumError(
                f"post-processing needs C×H×W probabilities, got shape {probabilities.shape}"
            )
        num_classes = probabilities.shape[0]
        if self.mode == "binary" and num_classes != 1:
            raise PodiumError(
                f"binary post-processing needs 1 channel, got {num_classes}; "
                "use mode multilabel or multiclass"
            )
        if self.mode == "multiclass" and num_classes < 2:
            raise PodiumError(
                "multiclass post-processing needs at least 2 channels (background + classes)"
            )
        thresholds, min_sizes, fills = self.per_class(num_classes)
        if self.mode == "multiclass":
            return self._multiclass(probabilities, thresholds, min_sizes, fills)
        masks = np.stack(
            [
                remove_small(
                    binary_class_mask(probabilities[c], thresholds[c], fills[c]), min_sizes[c]
                )
                for c in range(num_classes)
            ]
        ).astype(np.uint8)
        return masks[0] if self.mode == "binary" else masks

    def _multiclass(self, probabilities, thresholds, min_sizes, fills) -> np.ndarray:
        num_classes = probabilities.shape[0]
        argmax = probabilities.argmax(axis=0)
        out = np.zeros(argmax.shape, dtype=np.uint8 if num_classes <= 256 else np.int32)
        for c in range(1, num_classes):
            mask = multiclass_class_mask(argmax, probabilities[c], c, thresholds[c], fills[c])
            mask = remove_small(mask, min_sizes[c]) & (out == 0)  # nested holes: lower class first
            out[mask] = c
        return out

    def per_class(self, num_classes: int) -> Tuple[List, List, List]:
        """(thresholds, min_sizes, fill_holes), one value per class; a list of the wrong length is
        an error."""
        return tuple(self._expand(key, num_classes) for key in CONFIG_KEYS)

    def _expand(self, key: str, num_classes: int) -> list:
        value = getattr(self, key)
        if not isinstance(value, list):
            return [value] * num_classes
        if len(value) != num_classes:
            names = f" ({', '.join(self.class_names)})" if self.class_names else ""
            raise PodiumError(
                f"postprocess {key} lists {len(value)} values {value} but there "
                f"are {num_classes} classes{names}; expected one value or one per class"
            )
        return value

    def __repr__(self) -> str:
        return (
            f"PostProcess(mode={self.mode!r}, threshold={self.threshold}, "
            f"min_size={self.min_size}, fill_holes={self.fill_holes})"
        )


def _check_values(key: str, value, check):
    """One value, or a non-empty list of them (tuples become lists, so to_config is YAML-ready)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise PodiumError(
                f"postprocess {key} is an empty list; expected one value or one per class"
            )
        return [check(key, v) for v in value]
    return check(key, value)


def _threshold(key, value) -> float:
    return check_probability(value, f"postprocess {key}", note=" (or a list of them)")


def _min_size(key, value) -> int:
    if not is_number(value, finite=True) or value < 0 or value != int(value):
        raise PodiumError(
            f"postprocess {key} must be a whole number of "
            f"pixels >= 0 (or a list of them), got {value!r}"
        )
    return int(value)


def _flag(key, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise PodiumError(
            f"postprocess {key} must be true or false (or a list of them), got {value!r}"
        )
    return bool(value)
