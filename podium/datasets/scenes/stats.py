"""`podium stats` and `podium folds` on a scenes table (DATA = scenes.csv).

Stats: one pass over every row's region in 1024-pixel windows (never a whole scene in memory),
per-channel moments of the valid pixels (nodata left out) and pixel counts of the rasterised
labels — the JSON of `podium stats` on a folder, one "image" per scene row.

Folds: the scenes table with a `fold` column, stratified by each scene's label coverage (share of
valid pixels inside a label) and grouped by a column of the table if asked, with the image-folder
folds' strata and splitters. Paths are rewritten relative to the output's folder.
"""

import os
from collections import Counter
from typing import Optional

import numpy as np
import pandas as pd

from podium.datasets.folds import STRATIFY, assign_folds, coverage_strata
from podium.datasets.scenes.dataset import SceneDataset
from podium.datasets.scenes.windows import grid_windows
from podium.datasets.scenes.table import load_scenes, read_scenes
from podium.datasets.split import select_names
from podium.datasets.stats import RunningMoments, dtype_max_value, pixel_summary
from podium.errors import PodiumError, did_you_mean
from podium.validation import check_choice, check_int

__all__ = ["compute_scene_stats", "make_scene_folds", "is_scenes_table"]

BLOCK = 1024
IGNORE = 255


def is_scenes_table(path) -> bool:
    """DATA of `podium stats` / `podium folds` is a scenes table rather than an image folder."""
    return str(path).lower().endswith(".csv") and os.path.isfile(path)


def compute_scene_stats(scenes, split: Optional[str] = None, max_value: Optional[float] = None):
    """The `podium stats` JSON of the scenes (all rows, or those of `split`)."""
    table = read_scenes(scenes)
    if split is not None:
        table = table[table["name"].isin(select_names(table, split=split))]
    loaded = load_scenes(table, num_classes=2)
    moments, sizes, dtypes, pixels, classes, scenes_with = (
        RunningMoments(),
        Counter(),
        Counter(),
        0,
        Counter(),
        Counter(),
    )
    empty, foreground, per_scene = 0, 0, {}
    for scene in loaded:
        dataset = SceneDataset([scene], (BLOCK, BLOCK), windows=[], num_classes=2)
        sizes[f"{int(scene.region.height)}x{int(scene.region.width)}"] += 1
        dtypes[scene.info.dtype] += 1
        seen, on, total = set(), 0, 0
        for window in grid_windows(scene.region, (BLOCK, BLOCK)):
            image, mask = dataset.read(0, window)
            valid = mask != IGNORE
            moments.update(image[valid].reshape(-1, image.shape[-1]))
            values, counts = np.unique(mask[valid], return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                classes[int(value)] += count
                seen.add(int(value))
            on += int((mask[valid] > 0).sum())
            total += int(valid.sum())
        for value in seen:
            scenes_with[value] += 1
        pixels += total
        foreground += on
        empty += int(on == 0)
        per_scene[scene.name] = on / max(total, 1)
    if moments.mean is None:
        raise PodiumError(f"the scenes of {scenes} have no valid pixels")
    dtype_max = max(dtype_max_value(d) for d in dtypes)
    summary = pixel_summary(scenes, len(loaded), moments, dtypes, dtype_max, sizes, max_value)
    return {
        **summary,
        "masks": {
            "count": len(loaded),
            "kind": "labels",
            "empty": empty,
            "foreground_fraction": foreground / max(pixels, 1),
            "classes": {
                str(key): {
                    "pixels": classes[key],
                    "fraction": classes[key] / max(pixels, 1),
                    "images": scenes_with[key],
                }
                for key in sorted(classes)
            },
        },
        "coverage": per_scene,
    }


def make_scene_folds(
    scenes,
    out,
    k: int = 5,
    stratify: str = "coverage",
    group: Optional[str] = None,
    seed: int = 42,
    bins: int = 5,
    split: Optional[str] = "train",
) -> pd.DataFrame:
    """The scenes table with `fold` (0..k-1; -1 for other splits), paths relative to `out`."""
    stratify = "none" if stratify in (None, "") else stratify
    check_choice(stratify, STRATIFY, "--stratify")
    check_int(k, "--k", 2)
    table = read_scenes(scenes)
    pool = np.ones(len(table), bool)
    if "split" in table and split is not None:
        pool = table["name"].isin(select_names(table, split=split)).to_numpy()
    names = table.loc[pool, "name"].tolist()
    if len(names) < k:
        raise PodiumError(
            f"cannot make {k} folds of {len(names)} scene(s) of {scenes}; expected at least k"
        )
    groups = None
    if group is not None:
        if group not in table:
            raise PodiumError(
                f'--group "{group}" is not a column of {scenes}{did_you_mean(group, table.columns)}'
            )
        groups = table.loc[pool, group].tolist()
    if stratify == "coverage":
        stats = compute_scene_stats(scenes)
        y = coverage_strata(np.array([stats["coverage"][n] for n in names]), k, bins)
    elif stratify == "classes":
        raise PodiumError("--stratify classes is not supported for scenes; use coverage or none")
    else:
        y = np.zeros(len(names), dtype=int)
    table["fold"] = -1
    table.loc[pool, "fold"] = assign_folds(y, groups, k, seed, stratify != "none")
    folder = os.path.dirname(os.path.abspath(out))
    for column in ("image", "labels"):
        if column in table:
            table[column] = [p if p is None else os.path.relpath(p, folder) for p in table[column]]
    return table
