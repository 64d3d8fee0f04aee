"""Where windows fall in a scene: a fixed grid (validation, tiling), random ones (training), and
the split guard.

* `grid_windows`: non-overlapping windows of the given size from the region's top-left corner;
  the last row and column overrun the region (read padded, the overrun ignored), so every pixel
  of the region is in exactly one window.
* `random_window`: uniform inside the region, or — with probability `positive_p`, podium's
  positive-biased crop sampling (crops.py) — centred on a foreground pixel drawn uniformly from
  the labels' area (a label polygon chosen by its area inside the region, then a uniform point in
  it), shifted to stay inside the region. A window larger than the region is centred on it.
* `sliding_starts`: overlapping window offsets along one side for whole-scene prediction,
  MONAI's `dense_patch_slices` grid: every `window - overlap` pixels from 0, the last window
  shifted back to end at the scene's edge (no padding unless the scene is smaller than a window).
* `check_split_guard`: train and valid rows of one raster must have disjoint regions, so no
  random training window can show a validation pixel.
"""

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from podium.datasets.crops import centred_start, choose_window
from podium.datasets.scenes.table import Scene, windows_overlap
from podium.errors import PodiumError

__all__ = [
    "grid_windows",
    "sliding_starts",
    "random_window",
    "foreground_pixel",
    "check_split_guard",
]


def grid_windows(region, size: Tuple[int, int]) -> List:
    """Windows of `size` (h, w) tiling `region` exactly once, row by row."""
    from rasterio.windows import Window

    height, width = size
    r0, c0 = int(region.row_off), int(region.col_off)
    return [
        Window(col, row, width, height)
        for row in range(r0, r0 + int(region.height), height)
        for col in range(c0, c0 + int(region.width), width)
    ]


def sliding_starts(length: int, window: int, overlap: int) -> List[int]:
    """Offsets of overlapping windows covering 0..length (see the module docstring)."""
    if length <= window:
        return [0]
    step = window - overlap
    starts = list(range(0, length - window, step)) + [length - window]
    return starts


def random_window(scene: Scene, size: Tuple[int, int], rng, positive_p: float = 0.0):
    """A window of `size` inside the scene's region (see the module docstring)."""
    from rasterio.windows import Window

    region = scene.region
    shape = (int(region.height), int(region.width))
    pixel = foreground_pixel(scene, rng) if positive_p > 0 and rng.random() < positive_p else None
    if pixel is None:
        top, left = choose_window(shape, size, None, rng)
    else:
        row, col = pixel
        top = centred_start(row - int(region.row_off), shape[0], size[0])
        left = centred_start(col - int(region.col_off), shape[1], size[1])
    return Window(int(region.col_off) + left, int(region.row_off) + top, size[1], size[0])


def foreground_pixel(scene: Scene, rng, tries: int = 100) -> Optional[Tuple[int, int]]:
    """(row, col) of a uniform random labelled pixel of the region; None without labels there."""
    import shapely
    from rasterio.windows import bounds

    labels = scene.labels
    if labels is None or not len(labels):
        return None
    area = shapely.box(*bounds(scene.region, scene.info.transform))
    picked = labels.query(area.bounds)
    if not len(picked):
        return None
    parts = shapely.intersection(labels.geometries[picked], area)
    weights = shapely.area(parts)
    if not weights.sum() > 0:
        return None
    shape = parts[rng.choice(len(parts), p=weights / weights.sum())]
    left, bottom, right, top = shape.bounds
    for _ in range(tries):
        x, y = rng.uniform(left, right), rng.uniform(bottom, top)
        if shapely.contains_xy(shape, x, y):
            break
    else:
        point = shape.representative_point()
        x, y = point.x, point.y
    col, row = ~scene.info.transform * (x, y)
    return int(np.floor(row)), int(np.floor(col))


def check_split_guard(train: Sequence[Scene], valid: Sequence[Scene], path: str) -> None:
    """A train region overlapping a valid region of the same raster is an error."""
    for t in train:
        for v in valid:
            if os.path.realpath(t.image) == os.path.realpath(v.image) and windows_overlap(
                t.region, v.region
            ):
                raise PodiumError(
                    f"{path}: train scene {t.name} and valid scene {v.name} overlap in raster "
                    f"{t.image} (regions {_text(t.region)} and {_text(v.region)}); expected "
                    f"disjoint col_off,row_off,width,height regions so no validation pixel is "
                    f"trained on"
                )


def _text(window) -> str:
    return f"{int(window.col_off)},{int(window.row_off)},{int(window.width)},{int(window.height)}"
