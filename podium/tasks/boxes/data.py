"""Crops with one box each, from the real deepforest tree crowns, letterboxed for a box classifier.

Each sample is a crop (a *window*) of a deepforest scene (`podium.datasets.deepforest`):

- `label` 1.0 when a tree crown lies mostly inside the window (at least `min_inside` of its
  box area; Tree, Alive and Dead count alike), else 0.0;
- `bbox` the *main* crown: of those crowns, the one whose centre is nearest the window
  centre, clipped to the window. A function of the window alone, so every crop has exactly
  one well-defined answer;
- with `max_other` (default 0.25) only *unambiguous* windows are drawn, as in the seed's
  one-object images: a positive window holds its crown and no other crown more than
  `max_other` inside, a negative window no crown more than `max_other` inside (so neither
  half-visible crowns nor a second candidate blur the answer). `max_other: null` draws any
  window and lets the rule above decide;
- `image` the crop letterboxed to `size`×`size` (windows have random sides in `crop_size`,
  so aspect ratios vary), scaled and standardised by `normalize` (default ImageNet mean/std).

Box convention (what `podium.tasks.boxes.model` predicts): `bbox` = (cx, cy, w, h) normalised to
the letterboxed network input (padding included), all in [0, 1]; negatives carry
`[-1, -1, -1, -1]`, which the box loss and `BoxIoUCallback` leave out via `ignore_value: -1`.
Why the input frame rather than the crop: a conv net sees the padded image, and box
coordinates in that frame move with the content (translation-equivariant), while crop-relative
coordinates would also depend on the invisible amount of padding. `letterbox_boxes` /
`unletterbox_boxes` map pixel boxes between a crop and its letterboxed frame exactly, so the
prediction maps back to crop, then scene pixels (`window_to_scene`).

Split (spatial, as for `podium samples`): in each scene, windows of `valid` lie in the
right-most `valid_fraction` of the width and windows of `train` in the rest, so no validation
pixel is ever in a training crop. Windows are drawn once, deterministically from `seed`: about
`positive_fraction` placed around a random crown of the split, the rest random windows kept
only if they hold no crown (rejection sampling; measured on the wheel's data with the
defaults, about 1 in 7 tries around a crown of the large scenes is unambiguous).

Other keys per sample: `window` (x0, y0, x1, y1 in scene pixels), `source` (index of the scene in
`read_deepforest_annotations()`), `name` (`<scene>_x<x0>_y<y0>_w<w>_h<h>`).

YAML (`data:` of a config)::

    data:
      _target_: podium.tasks.boxes.build_deepforest_datasets
      size: 128
      crop_size: [64, 160]
      num_train: 1024
      num_valid: 256
      train_transforms: [{D4: {}}, {RandomBrightnessContrast: {p: 0.5}}]

`train_transforms` run on the letterboxed float image with the box attached (albumentations
`bbox_params`), so flips/rotations move it; a transform that removes the box turns its target
into the ignore value (the label stays 1).
"""

import os
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.deepforest import (
    SPLITS,
    ForestImage,
    read_deepforest_annotations,
    read_scene,
    split_region,
)
from podium.datasets.letterbox import letterbox
from podium.datasets.normalize import IMAGENET_NORMALIZE, Normalizer, build_normalizer
from podium.datasets.transforms import build_transforms_with
from podium.errors import PodiumError
from podium.validation import check_int, check_number, check_subset

__all__ = [
    "IGNORE",
    "CrownCrops",
    "Window",
    "build_deepforest_datasets",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "inside_fractions",
    "letterbox_boxes",
    "unletterbox_boxes",
    "main_box",
    "prepare_input",
    "sample_windows",
]

IGNORE = -1.0


# ---------------------------------------------------------------- box geometry (numpy, float64)


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate(
        [(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1
    )


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate(
        [boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], axis=-1
    )


def _axis_scales(meta) -> Tuple[float, float]:
    """Per-axis scales of the resize inside the letterbox (rounding makes them differ slightly)."""
    (height, width), (new_h, new_w) = meta["original"], meta["resized"]
    return new_w / width, new_h / height


def letterbox_boxes(boxes, meta) -> np.ndarray:
    """xyxy pixel boxes (..., 4) of the original image → the letterboxed image (`letterbox_meta`).

    Pixel-edge coordinates: x = 0 is the left edge of the first column and x = W the right edge
    of the last, which is how cv2.resize maps the image, so the mapping is exact."""
    boxes = np.asarray(boxes, dtype=np.float64)
    sx, sy = _axis_scales(meta)
    top, _, left, _ = meta["pad"]
    return boxes * np.array([sx, sy, sx, sy]) + np.array([left, top, left, top], dtype=np.float64)


def unletterbox_boxes(boxes, meta) -> np.ndarray:
    """The exact inverse of `letterbox_boxes`: letterboxed-frame pixels → original pixels."""
    boxes = np.asarray(boxes, dtype=np.float64)
    sx, sy = _axis_scales(meta)
    top, _, left, _ = meta["pad"]
    return (boxes - np.array([left, top, left, top], dtype=np.float64)) / np.array([sx, sy, sx, sy])


def main_box(boxes: np.ndarray, window: Sequence[int], min_inside: float) -> Optional[np.ndarray]:
    """The main crown of a window in crop pixels (xyxy, clipped), or None if no crown has at
    least `min_inside` of its area inside. Main = centre nearest the window centre."""
    if len(boxes) == 0:
        return None
    x0, y0, x1, y1 = (float(v) for v in window)
    boxes = np.asarray(boxes, dtype=np.float64)
    clipped = _clip(boxes, window)
    fraction = inside_fractions(boxes, window)
    keep = (fraction > 0) & (fraction >= min_inside)
    if not keep.any():
        return None
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = np.hypot(centres[:, 0] - (x0 + x1) / 2, centres[:, 1] - (y0 + y1) / 2)
    best = int(np.argmin(np.where(keep, distance, np.inf)))
    return clipped[best] - np.array([x0, y0, x0, y0])


def _clip(boxes: np.ndarray, window: Sequence[int]) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in window)
    return np.stack(
        [
            np.clip(boxes[:, 0], x0, x1),
            np.clip(boxes[:, 1], y0, y1),
            np.clip(boxes[:, 2], x0, x1),
            np.clip(boxes[:, 3], y0, y1),
        ],
        axis=1,
    )


def inside_fractions(boxes, window: Sequence[int]) -> np.ndarray:
    """Share of each box's area (N×4 xyxy) that lies inside the window (x0, y0, x1, y1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = _clip(boxes, window)
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inside / np.maximum(area, 1e-12)


# ---------------------------------------------------------------- windows


class Window(NamedTuple):
    source: int
    x0: int
    y0: int
    x1: int
    y1: int


def sample_windows(
    items: Sequence[ForestImage],
    split: str,
    count: int,
    rng: np.random.Generator,
    crop_size: Tuple[int, int] = (64, 160),
    positive_fraction: float = 0.5,
    min_inside: float = 0.75,
    valid_fraction: float = 0.25,
    max_other: Optional[float] = 0.25,
) -> List[Window]:
    """`count` windows of `split`: round(count·positive_fraction) around crowns, the rest empty
    (with `max_other`: unambiguous ones only, see the module docstring)."""
    regions = [split_region(item.size[1], split, valid_fraction) for item in items]
    crowns = [
        (s, box)
        for s, item in enumerate(items)
        for box in item.boxes
        if regions[s][0] <= box[0] and box[2] <= regions[s][1]
    ]
    num_positive = int(round(count * positive_fraction))
    if num_positive and not crowns:
        raise PodiumError(f"the {split} region holds no crown: cannot draw positive windows")
    windows = [
        _around_crown(items, regions, crowns, rng, crop_size, max_other)
        for _ in range(num_positive)
    ]
    areas = np.array(
        [(r[1] - r[0]) * item.size[0] for r, item in zip(regions, items)], dtype=np.float64
    )
    tries = 0
    while len(windows) < count:
        tries += 1
        if tries > 200 * count:
            raise PodiumError(
                f"found only {len(windows) - num_positive} of {count - num_positive} "
                f"crown-free {split} windows of size {list(crop_size)}; "
                "lower crop_size or raise positive_fraction"
            )
        source = int(rng.choice(len(items), p=areas / areas.sum()))
        window = _random_window(items[source].size, regions[source], source, rng, crop_size)
        boxes = items[source].boxes
        if max_other is None:
            empty = main_box(boxes, window[1:], min_inside) is None
        else:
            empty = not (inside_fractions(boxes, window[1:]) > max_other).any()
        if empty:
            windows.append(window)
    return windows


def _sides(rng, crop_size, region_width: int, height: int) -> Tuple[int, int]:
    low, high = crop_size
    width = min(int(rng.integers(low, high + 1)), region_width)
    return width, min(int(rng.integers(low, high + 1)), height)


def _random_window(size, region, source, rng, crop_size) -> Optional[Window]:
    height = size[0]
    width, win_h = _sides(rng, crop_size, region[1] - region[0], height)
    x0 = int(rng.integers(region[0], region[1] - width + 1))
    y0 = int(rng.integers(0, height - win_h + 1))
    return Window(source, x0, y0, x0 + width, y0 + win_h)


def _around_crown(items, regions, crowns, rng, crop_size, max_other) -> Window:
    """A window that holds a random crown of the split entirely (so the window is positive) and,
    with `max_other`, no other crown more than that share inside."""
    for _ in range(10000):
        source, box = crowns[int(rng.integers(len(crowns)))]
        region, height = regions[source], items[source].size[0]
        width, win_h = _sides(rng, crop_size, region[1] - region[0], height)
        bx0, by0, bx1, by1 = (
            int(np.floor(box[0])),
            int(np.floor(box[1])),
            int(np.ceil(box[2])),
            int(np.ceil(box[3])),
        )
        x_low, x_high = max(region[0], bx1 - width), min(bx0, region[1] - width)
        y_low, y_high = max(0, by1 - win_h), min(by0, height - win_h)
        if x_low <= x_high and y_low <= y_high:
            x0, y0 = int(rng.integers(x_low, x_high + 1)), int(rng.integers(y_low, y_high + 1))
            window = Window(source, x0, y0, x0 + width, y0 + win_h)
            if (
                max_other is None
                or _second_largest(inside_fractions(items[source].boxes, window[1:])) <= max_other
            ):
                return window
    raise PodiumError(
        f"no window of size {list(crop_size)} holds one crown alone (other crowns at most "
        f"max_other={max_other} inside) in 10000 tries; raise max_other or lower crop_size"
    )


def _second_largest(values: np.ndarray) -> float:
    """The largest share of a crown other than the one the window was drawn around (which is 1)."""
    return float(np.sort(values)[-2]) if len(values) > 1 else 0.0


# ---------------------------------------------------------------- samples


def prepare_input(
    crop: np.ndarray,
    size: int,
    normalizer: Normalizer,
    transforms=None,
    box: Optional[np.ndarray] = None,
):
    """(C×size×size float tensor, letterbox meta, box) for a crop; `box` (xyxy crop pixels) comes
    back normalised to the letterboxed frame (xyxy in [0, 1]) after the transforms, or None."""
    image, meta = letterbox(normalizer.scale(crop), size)
    boxed = None
    if box is not None:
        boxed = np.clip(letterbox_boxes(box, meta) / size, 0.0, 1.0)
    if transforms is not None:
        out = transforms(
            image=image,
            bboxes=np.asarray([boxed] if boxed is not None else [], np.float32).reshape(-1, 4),
            box_labels=[1] * (boxed is not None),
        )
        image = out["image"]
        boxed = (
            np.asarray(out["bboxes"][0], np.float64)
            if boxed is not None and len(out["bboxes"])
            else None
        )
    tensor = torch.from_numpy(
        np.ascontiguousarray(normalizer.standardize(image).transpose(2, 0, 1))
    )
    return tensor, meta, boxed


class CrownCrops(Dataset):
    """Letterboxed windows of the deepforest scenes with label and main-crown box (see module
    doc)."""

    def __init__(
        self,
        items: Sequence[ForestImage],
        images: Sequence[np.ndarray],
        windows: Sequence[Window],
        size: int = 128,
        normalize=None,
        transforms=None,
        min_inside: float = 0.75,
    ):
        self.items, self.images, self.windows = list(items), list(images), list(windows)
        self.size, self.min_inside = int(size), float(min_inside)
        self.normalizer = build_normalizer(normalize, default=IMAGENET_NORMALIZE)
        if isinstance(transforms, A.BasicTransform):
            transforms = A.Compose([transforms])
        self.transforms = build_transforms_with(  # moving an attached normalised xyxy box
            transforms,
            bbox_params=A.BboxParams(
                format="albumentations", label_fields=["box_labels"], clip=True, min_visibility=0.0
            ),
        )

    def __len__(self) -> int:
        return len(self.windows)

    def target(self, index: int) -> Optional[np.ndarray]:
        """The main crown of window `index` in crop pixels (xyxy), or None."""
        window = self.windows[index]
        return main_box(self.items[window.source].boxes, window[1:], self.min_inside)

    def name(self, index: int) -> str:
        s, x0, y0, x1, y1 = self.windows[index]
        stem = os.path.splitext(os.path.basename(self.items[s].image_path))[0].replace(" ", "_")
        return f"{stem}_x{x0}_y{y0}_w{x1 - x0}_h{y1 - y0}"

    def __getitem__(self, index: int) -> Dict[str, object]:
        s, x0, y0, x1, y1 = self.windows[index]
        box = self.target(index)
        image, _, boxed = prepare_input(
            self.images[s][y0:y1, x0:x1], self.size, self.normalizer, self.transforms, box
        )
        bbox = xyxy_to_cxcywh(boxed) if boxed is not None else np.full(4, IGNORE)
        return {
            "image": image,
            "label": torch.tensor([float(box is not None)]),
            "bbox": torch.as_tensor(bbox, dtype=torch.float32),
            "window": torch.tensor([x0, y0, x1, y1], dtype=torch.float32),
            "source": s,
            "name": self.name(index),
        }


def build_deepforest_datasets(
    size: int = 128,
    crop_size: Sequence[int] = (64, 160),
    num_train: int = 1024,
    num_valid: int = 256,
    positive_fraction: float = 0.5,
    min_inside: float = 0.75,
    valid_fraction: float = 0.25,
    max_other: Optional[float] = 0.25,
    seed: int = 0,
    normalize=None,
    train_transforms=None,
    valid_transforms=None,
    splits: Sequence[str] = SPLITS,
    folder: Optional[str] = None,
) -> "OrderedDict[str, CrownCrops]":
    """{"train", "valid"} CrownCrops of the deepforest scenes (`data: {_target_: ...}` builder).

    size: letterbox side of the network input. crop_size: [min, max] window side in scene
    pixels (drawn per side; crowns are 8-108 px, median ~40). num_train / num_valid: windows per
    split. max_other: draw only unambiguous windows (module docstring); null: any window. seed:
    the window draw (independent of the training seed). folder: another folder of
    Pascal VOC XMLs + images (default: the deepforest wheel's data). splits: which to build.
    """
    size = check_int(size, "data size", 8)
    crop_size = _crop_size(crop_size)
    counts = {
        "train": check_int(num_train, "data num_train", 1),
        "valid": check_int(num_valid, "data num_valid", 1),
    }
    for key, value in (("positive_fraction", positive_fraction), ("min_inside", min_inside)):
        check_number(value, f"data {key}", "[0, 1]")
    check_number(valid_fraction, "data valid_fraction", "(0, 1)")
    if max_other is not None:
        check_number(
            max_other, "data max_other", f"[0, {min_inside})", "null or a number in [0, min_inside)"
        )
    if min_inside == 0:
        raise PodiumError(
            "data min_inside must be > 0 (0 would count crowns entirely outside the crop)"
        )
    splits = check_subset(splits, SPLITS, "data splits")
    items = read_deepforest_annotations(folder)
    images = [read_scene(item) for item in items]
    transforms = {"train": train_transforms, "valid": valid_transforms}
    datasets = OrderedDict()
    for index, split in enumerate(SPLITS):
        if split not in splits:
            continue
        rng = np.random.default_rng([int(seed), index])
        windows = sample_windows(
            items,
            split,
            counts[split],
            rng,
            crop_size,
            positive_fraction,
            min_inside,
            valid_fraction,
            max_other,
        )
        datasets[split] = CrownCrops(
            items, images, windows, size, normalize, transforms[split], min_inside
        )
    return datasets


def _crop_size(value) -> Tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise PodiumError(f"data crop_size must be [min, max] window side in pixels, got {value!r}")
    low, high = (check_int(v, "data crop_size", 8) for v in value)
    if low > high:
        raise PodiumError(f"data crop_size {list(value)}: min must not exceed max")
    return low, high
