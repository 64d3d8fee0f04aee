"""CenterNet targets (Gaussian heatmaps, size, offset) and tiles of the real deepforest tree crowns.

Targets of one image with boxes (xyxy, pixel edges) on an output grid of stride s
(`render_targets`), as in CenterNet (Zhou et al. 2019):

- `heatmap` C×h×w: per box, a 2-D Gaussian at its centre cell (⌊cx/s⌋, ⌊cy/s⌋) of its class
  channel, radius `gaussian_radius(h/s, w/s, min_overlap)` (CenterNet's formula: the corner
  shift that keeps IoU ≥ min_overlap), σ = (2r + 1) / 6; overlapping Gaussians keep the max,
  so every centre is exactly 1 (a peak for `CenterNetFocalLoss`);
- `size` 2×h×w: (w/s, h/s) at centre cells, `IGNORE` (NaN) elsewhere;
- `offset` 2×h×w: (cx/s − (j + ½), cy/s − (i + ½)) ∈ [−½, ½) at centre cells, NaN elsewhere.
  Measured from the cell *centre*, so a mirrored map is exactly a sign change of that offset
  component, which is what flip/D4 test-time augmentation needs (`podium.inference.tta`, rule
  `xy` for offsets and `wh` for sizes: tested against rendering the moved boxes).

NaN marks "no target": `podium.losses.L1Loss(ignore_value: .nan)` then averages the size and
offset errors over the centre cells only (CenterNet's RegL1Loss). When two centres fall into
one cell, the later box's size/offset wins (as in CenterNet's reference code).

Flips: augmentations move the *boxes* (albumentations `bbox_params`) before rendering, so
targets are always rendered from the flipped boxes.

The deepforest tiles (`build_deepforest_tiles`, a `data: {_target_: ...}` builder): the four
annotated NEON scenes of the deepforest wheel (`podium.datasets.deepforest`), resized by
`scale` (0.5: crowns of ~40 px become ~20 px, four times the scene per input pixel), cut into
`tile_size` tiles. Split: the right-most `valid_fraction` of every scene is validation — tiled
without overlap (the last tile of a row/column is moved inwards to stay inside the region) —
and the rest is training, tiled with `train_stride`; no validation pixel ever enters a
training tile. A region narrower than a tile (the 400 px scenes) gives narrower tiles, padded
at the right/bottom with the mean colour (0 after standardisation; no targets there). A box cut
by the tile border is kept, clipped, when at least `min_visibility` of its area is inside.

Per sample: `image` C×T×T, `heatmap_target` C×h×w, `size_target` and `offset_target` 2×h×w,
`boxes` max_objects×4 (xyxy tile pixels, NaN rows after the real ones), `labels` max_objects
(class index, −1 padding), `num_boxes`, `window` (x0, y0, x1, y1 in scaled scene pixels),
`source` (scene index), `name`.
"""

import math
import os
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.deepforest import (
    CLASSES,
    SPLITS,
    ForestImage,
    read_deepforest_annotations,
    read_scene,
    split_region,
)
from podium.datasets.normalize import IMAGENET_NORMALIZE, build_normalizer
from podium.datasets.transforms import build_transforms_with
from podium.errors import PodiumError
from podium.validation import check_int, check_number, check_subset

__all__ = [
    "IGNORE",
    "CrownTiles",
    "Scene",
    "TileWindow",
    "boxes_in_window",
    "build_deepforest_tiles",
    "class_indices",
    "draw_gaussian",
    "gaussian_radius",
    "load_scenes",
    "render_targets",
    "resize_by",
    "tile_windows",
]

IGNORE = float("nan")


# ---------------------------------------------------------------- target rendering (numpy)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's `gaussian_radius` (CornerNet's, as in CenterNet/src/lib/utils/image.py).

    The smallest of three radii for which corners moved by r keep IoU ≥ min_overlap with the
    true box. Kept exactly as the reference code computes it (each root is (b + √Δ)/2 rather
    than the textbook (−b ± √Δ)/2a), since that is the radius CenterNet models are trained
    with; it is smaller than the exact root, i.e. sharper Gaussians.
    """
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, column: int, row: int, radius: int) -> None:
    """Max a (2r+1)² Gaussian (σ = (2r+1)/6, peak 1) into an h×w map at (row, column), clipped."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    axis = np.arange(-radius, radius + 1, dtype=np.float64)
    gaussian = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma * sigma))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    height, width = heatmap.shape
    left, right = min(column, radius), min(width - column, radius + 1)
    top, bottom = min(row, radius), min(height - row, radius + 1)
    region = heatmap[row - top : row + bottom, column - left : column + right]
    patch = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch.astype(heatmap.dtype), out=region)


def render_targets(
    boxes: np.ndarray,
    labels: Sequence[int],
    image_size: Tuple[int, int],
    num_classes: int = 1,
    output_stride: int = 4,
    min_overlap: float = 0.7,
) -> Dict[str, np.ndarray]:
    """{"heatmap": C×h×w, "size": 2×h×w, "offset": 2×h×w} (float32, NaN = no target) for
    xyxy pixel `boxes` in an image of `image_size` (H, W); h, w = ceil(H / s), ceil(W / s)."""
    height, width = (math.ceil(int(v) / output_stride) for v in image_size)
    heatmap = np.zeros((num_classes, height, width), np.float32)
    size = np.full((2, height, width), IGNORE, np.float32)
    offset = np.full((2, height, width), IGNORE, np.float32)
    for box, label in zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels):
        x1, y1, x2, y2 = box / output_stride
        box_w, box_h = x2 - x1, y2 - y1
        if box_w <= 0 or box_h <= 0:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        column, row = min(int(math.floor(cx)), width - 1), min(int(math.floor(cy)), height - 1)
        radius = max(0, int(gaussian_radius(math.ceil(box_h), math.ceil(box_w), min_overlap)))
        draw_gaussian(heatmap[int(label)], column, row, radius)
        size[:, row, column] = box_w, box_h
        offset[:, row, column] = cx - (column + 0.5), cy - (row + 0.5)
    return {"heatmap": heatmap, "size": size, "offset": offset}


# ---------------------------------------------------------------- deepforest scenes and tiles


class Scene(NamedTuple):
    """A deepforest scene resized by `scale`: RGB image, boxes (scaled pixels), class indices."""

    item: ForestImage
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scale: Tuple[float, float]  # (x, y): scaled = original · scale


class TileWindow(NamedTuple):
    source: int
    x0: int
    y0: int
    x1: int
    y1: int


def class_indices(
    labels: Sequence[str], classes: Optional[Sequence[str]], where: str
) -> np.ndarray:
    """Class index per deepforest label: all 0 without `classes`, else the label's position."""
    if classes is None:
        return np.zeros(len(labels), np.int64)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise PodiumError(
            f"{where} has boxes of class {unknown[0]!r}, not in data classes {list(classes)}; "
            f"list every class ({', '.join(CLASSES)}) or leave classes null (one class)"
        )
    return np.asarray([list(classes).index(label) for label in labels], np.int64)


def load_scenes(
    scale: float = 0.5, classes: Optional[Sequence[str]] = None, folder: Optional[str] = None
) -> List[Scene]:
    """Every annotated deepforest scene, resized by `scale` (cv2 INTER_AREA), boxes scaled alike."""
    scenes = []
    for item in read_deepforest_annotations(folder):
        image, (sx, sy) = resize_by(read_scene(item), scale)
        boxes = item.boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
        scenes.append(
            Scene(
                item, image, boxes, class_indices(item.labels, classes, item.image_path), (sx, sy)
            )
        )
    return scenes


def resize_by(image: np.ndarray, scale: float) -> Tuple[np.ndarray, Tuple[float, float]]:
    """(image resized by `scale`: sides rounded, ≥ 1, cv2 INTER_AREA; its real (x, y) scales)."""
    height, width = image.shape[:2]
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return image, (new_w / width, new_h / height)


def _starts(start: int, end: int, tile: int, stride: int) -> List[int]:
    """Tile starts covering [start, end): every `stride`, the last moved inwards to end at `end`."""
    if end - start <= tile:
        return [start]
    starts = list(range(start, end - tile + 1, stride))
    if starts[-1] + tile < end:
        starts.append(end - tile)
    return starts


def tile_windows(
    scenes: Sequence[Scene], split: str, tile_size: int, stride: int, valid_fraction: float = 0.25
) -> List[TileWindow]:
    """Windows of `split` (≤ tile_size per side) covering its region of every scene."""
    windows = []
    for source, scene in enumerate(scenes):
        height, width = scene.image.shape[:2]
        left, right = split_region(width, split, valid_fraction)
        if right <= left:
            continue
        for y0 in _starts(0, height, tile_size, stride):
            for x0 in _starts(left, right, tile_size, stride):
                windows.append(
                    TileWindow(
                        source, x0, y0, min(x0 + tile_size, right), min(y0 + tile_size, height)
                    )
                )
    return windows


def boxes_in_window(
    boxes: np.ndarray, labels: np.ndarray, window: Sequence[int], min_visibility: float
) -> Tuple[np.ndarray, np.ndarray]:
    """(boxes clipped to the window, in window pixels; their labels) with ≥ min_visibility
    inside."""
    if not len(boxes):
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    x0, y0, x1, y1 = (float(v) for v in window)
    clipped = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (inside > 0) & (inside >= min_visibility * area)
    return clipped[keep] - np.array([x0, y0, x0, y0]), labels[keep]


class CrownTiles(Dataset):
    """Tiles of deepforest scenes with CenterNet targets (see the module docstring)."""

    def __init__(
        self,
        scenes: Sequence[Scene],
        windows: Sequence[TileWindow],
        tile_size: int = 128,
        num_classes: int = 1,
        output_stride: int = 4,
        min_overlap: float = 0.7,
        min_visibility: float = 0.5,
        max_objects: int = 128,
        normalize=None,
        transforms=None,
    ):
        self.scenes, self.windows = list(scenes), list(windows)
        self.tile_size, self.num_classes, self.output_stride = (
            int(tile_size),
            int(num_classes),
            int(output_stride),
        )
        self.min_overlap, self.min_visibility = float(min_overlap), float(min_visibility)
        self.max_objects = int(max_objects)
        self.normalizer = build_normalizer(normalize, default=IMAGENET_NORMALIZE)
        self.transforms = build_transforms_with(  # moving pixel xyxy boxes with the image
            transforms,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["labels"],
                clip=True,
                min_visibility=min_visibility,
            ),
        )

    def __len__(self) -> int:
        return len(self.windows)

    def name(self, index: int) -> str:
        source, x0, y0, x1, y1 = self.windows[index]
        stem = os.path.splitext(os.path.basename(self.scenes[source].item.image_path))[0].replace(
            " ", "_"
        )
        return f"{stem}_x{x0}_y{y0}_w{x1 - x0}_h{y1 - y0}"

    def target_boxes(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The window's boxes in tile pixels (clipped, ≥ min_visibility inside) and class
        indices."""
        scene = self.scenes[self.windows[index].source]
        return boxes_in_window(
            scene.boxes, scene.labels, self.windows[index][1:], self.min_visibility
        )

    def _pad(self, image: np.ndarray) -> np.ndarray:
        """Pad bottom/right to tile_size with the mean colour (0 once standardised)."""
        height, width = image.shape[:2]
        if (height, width) == (self.tile_size, self.tile_size):
            return image
        fill = (
            self.normalizer.mean if self.normalizer.mean is not None else np.zeros(image.shape[-1])
        )
        padded = np.empty((self.tile_size, self.tile_size, image.shape[-1]), np.float32)
        padded[...] = np.asarray(fill, np.float32)
        padded[:height, :width] = image
        return padded

    def __getitem__(self, index: int) -> Dict[str, object]:
        source, x0, y0, x1, y1 = self.windows[index]
        boxes, labels = self.target_boxes(index)
        image = self._pad(self.normalizer.scale(self.scenes[source].image[y0:y1, x0:x1]))
        if self.transforms is not None:
            out = self.transforms(
                image=image, bboxes=boxes.astype(np.float32).reshape(-1, 4), labels=labels.tolist()
            )
            image = out["image"]
            boxes = np.asarray(out["bboxes"], np.float64).reshape(-1, 4)
            labels = np.asarray(out["labels"], np.int64).reshape(-1)
        if image.shape[:2] != (self.tile_size, self.tile_size):
            raise PodiumError(
                "train/valid transforms changed the tile size "
                f"to {image.shape[1]}×{image.shape[0]}; "
                f"expected {self.tile_size}×{self.tile_size} (use size-preserving transforms)"
            )
        if len(boxes) > self.max_objects:
            raise PodiumError(
                f"tile {self.name(index)} holds {len(boxes)} boxes, more than data max_objects "
                f"{self.max_objects}; raise max_objects"
            )
        targets = render_targets(
            boxes, labels, image.shape[:2], self.num_classes, self.output_stride, self.min_overlap
        )
        padded_boxes = np.full((self.max_objects, 4), IGNORE, np.float32)
        padded_boxes[: len(boxes)] = boxes
        padded_labels = np.full(self.max_objects, -1, np.int64)
        padded_labels[: len(labels)] = labels
        standardized = self.normalizer.standardize(image)
        return {
            "image": torch.from_numpy(
                np.ascontiguousarray(standardized.transpose(2, 0, 1), np.float32)
            ),
            "heatmap_target": torch.from_numpy(targets["heatmap"]),
            "size_target": torch.from_numpy(targets["size"]),
            "offset_target": torch.from_numpy(targets["offset"]),
            "boxes": torch.from_numpy(padded_boxes),
            "labels": torch.from_numpy(padded_labels),
            "num_boxes": len(boxes),
            "window": torch.tensor([x0, y0, x1, y1], dtype=torch.float32),
            "source": source,
            "name": self.name(index),
        }


def build_deepforest_tiles(
    tile_size: int = 128,
    scale: float = 0.5,
    train_stride: Optional[int] = None,
    valid_fraction: float = 0.25,
    classes: Optional[Sequence[str]] = None,
    output_stride: int = 4,
    min_overlap: float = 0.7,
    min_visibility: float = 0.5,
    max_objects: int = 128,
    num_train: Optional[int] = None,
    num_valid: Optional[int] = None,
    normalize=None,
    train_transforms=None,
    valid_transforms=None,
    splits: Sequence[str] = SPLITS,
    folder: Optional[str] = None,
) -> "OrderedDict[str, CrownTiles]":
    """{"train", "valid"} CrownTiles of the deepforest scenes (`data: {_target_: ...}` builder).

    tile_size: tile side in (scaled) pixels, a multiple of output_stride. scale: resize of the
    scenes (crowns are 8–108 px, median ~40, at scale 1). train_stride: step of the training
    tiles (default tile_size // 2; validation tiles never overlap but at the region's edge).
    classes: null = one class (every crown), or deepforest class names, one heatmap channel
    each. output_stride: the model's. min_overlap: CenterNet's Gaussian radius parameter.
    min_visibility: share of a box that must be inside a tile (or survive a transform) to count.
    num_train / num_valid: keep only that many tiles of the split, evenly spaced over its list
    (quick runs and tests); null keeps every tile.
    """
    tile_size = check_int(tile_size, "data tile_size", 8)
    output_stride = check_int(output_stride, "data output_stride", 1)
    if tile_size % output_stride:
        raise PodiumError(
            f"data tile_size {tile_size} must be a multiple of output_stride {output_stride}"
        )
    train_stride = (
        tile_size // 2 if train_stride is None else check_int(train_stride, "data train_stride", 1)
    )
    max_objects = check_int(max_objects, "data max_objects", 1)
    limits = {
        split: None if value is None else check_int(value, f"data num_{split}", 1)
        for split, value in (("train", num_train), ("valid", num_valid))
    }
    check_number(scale, "data scale", "(0.0, 4.0]")
    check_number(valid_fraction, "data valid_fraction", "(0.0, 1.0)")
    check_number(min_overlap, "data min_overlap", "(0.0, 1.0)")
    check_number(min_visibility, "data min_visibility", "(0.0, 1.0]")
    if classes is not None:
        if isinstance(classes, str) or not classes or len(set(classes)) != len(classes):
            raise PodiumError(
                "data classes must be null or a list of distinct "
                f"names from {list(CLASSES)}, got {classes!r}"
            )
        classes = [str(c) for c in classes]
    splits = check_subset(splits, SPLITS, "data splits")
    scenes = load_scenes(scale, classes, folder)
    num_classes = 1 if classes is None else len(classes)
    transforms = {"train": train_transforms, "valid": valid_transforms}
    datasets = OrderedDict()
    for split in SPLITS:
        if split not in splits:
            continue
        stride = train_stride if split == "train" else tile_size
        windows = tile_windows(scenes, split, tile_size, stride, valid_fraction)
        if not windows:
            raise PodiumError(f"data: the {split} region of the deepforest scenes holds no tile")
        if limits[split] is not None and limits[split] < len(windows):
            keep = np.unique(np.linspace(0, len(windows) - 1, limits[split]).round().astype(int))
            windows = [windows[i] for i in keep]
        datasets[split] = CrownTiles(
            scenes,
            windows,
            tile_size,
            num_classes,
            output_stride,
            min_overlap,
            min_visibility,
            max_objects,
            normalize,
            transforms[split],
        )
    return datasets
