"""The scenes table (`scenes.csv`): one row per raster (or per region of one), its labels and split.

Columns:
    image        raster path (any GDAL format), relative to the CSV's folder
    labels       vector label path (any OGR format), relative to the CSV's folder; an empty file
                 is an all-background scene
    split        train / valid / test …, and/or
    fold         integer fold for cross-validation (`data: {fold: k}`)
    name         optional unique scene name (default: the image's file stem)
    col_off, row_off, width, height
                 optional pixel region of the raster this row covers (default: all of it), so one
                 large raster can give train and valid rows; the split guard refuses a train and a
                 valid region of the same raster that overlap.

`load_scenes` opens every raster's header and reads every label file at once, so a bad table
fails at start-up, not after an epoch.
"""

import os
from typing import List, NamedTuple, Optional, Sequence

import pandas as pd

from podium.datasets.scenes.rasters import RasterInfo, check_bands, open_raster, raster_info
from podium.datasets.scenes.vectors import Labels, read_labels
from podium.errors import PodiumError, did_you_mean

__all__ = ["Scene", "read_scenes", "load_scenes", "check_not_all_nodata", "REGION"]

REGION = ("col_off", "row_off", "width", "height")
KNOWN = ("image", "labels", "split", "fold", "name") + REGION


class Scene(NamedTuple):
    name: str
    image: str
    info: RasterInfo
    labels: Optional[Labels]
    region: object  # rasterio Window inside the raster
    bands: List[int]


def read_scenes(path) -> pd.DataFrame:
    """The validated table, paths made absolute (relative ones are read from the CSV's folder)."""
    path = str(path)
    if not os.path.isfile(path):
        raise PodiumError(
            f"scenes file {path} does not exist; expected a CSV with columns image,labels,split"
        )
    try:
        df = pd.read_csv(path, dtype={"name": str, "split": str, "image": str, "labels": str})
    except Exception as error:  # EmptyDataError, ParserError …
        raise PodiumError(f"cannot read scenes file {path}: {error}") from None
    columns = [str(c) for c in df.columns]
    unknown = [c for c in columns if c not in KNOWN]
    if "image" not in columns or not ({"split", "fold"} & set(columns)) or unknown:
        hint = "".join(did_you_mean(c, KNOWN) for c in unknown)
        raise PodiumError(
            f"scenes file {path} has columns {columns}; expected image, labels, split and/or fold "
            f"(optional: name, {', '.join(REGION)}){hint}"
        )
    if df["image"].isna().any():
        raise PodiumError(f"scenes file {path} has rows without an image")
    folder = os.path.dirname(os.path.abspath(path))
    df["image"] = [os.path.join(folder, p) for p in df["image"]]
    if "labels" in df:
        df["labels"] = [None if pd.isna(p) else os.path.join(folder, p) for p in df["labels"]]
    if "name" not in df:
        df["name"] = _default_names(df["image"])
    if df["name"].isna().any() or df["name"].duplicated().any():
        raise PodiumError(f"scenes file {path} has empty or repeated names; expected unique names")
    if "fold" in df:
        folds = pd.to_numeric(df["fold"], errors="coerce")
        if folds.isna().any() or (folds != folds.round()).any():
            raise PodiumError(f"scenes file {path} has non-integer fold values")
        df["fold"] = folds.astype(int)
    df.attrs["path"] = path
    return df.reset_index(drop=True)


def load_scenes(
    rows: pd.DataFrame,
    bands=None,
    class_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    num_classes: int = 1,
    invalid_geometries: str = "repair",
    with_labels: bool = True,
) -> List[Scene]:
    """A Scene per row: raster header, band check, region, labels in the raster's CRS."""
    scenes = []
    for row in rows.to_dict("records"):
        info = raster_info(row["image"])
        labels = None
        if with_labels:
            labels_path = row.get("labels")
            if labels_path is None:
                raise PodiumError(
                    f"scene {row['name']} of {rows.attrs.get('path', 'scenes.csv')} has no labels "
                    f"file; expected a labels column (an empty vector file for an all-background "
                    f"scene)"
                )
            labels = read_labels(
                labels_path,
                info.crs,
                info.bounds,
                info.path,
                class_column,
                class_names,
                num_classes,
                invalid_geometries,
            )
        region = _region(row, info, rows.attrs.get("path", "scenes.csv"))
        scene = Scene(
            str(row["name"]),
            info.path,
            info,
            labels,
            region,
            check_bands(bands, info.count, info.path),
        )
        check_not_all_nodata(scene)
        scenes.append(scene)
    return scenes


def _default_names(images) -> List[str]:
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    seen, names = {}, []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if stems.count(stem) == 1 else f"{stem}_{seen[stem]}")
    return names


def _region(row, info: RasterInfo, path: str):
    """The row's pixel region intersected with the raster (the whole raster by default)."""
    from rasterio.windows import Window

    whole = Window(0, 0, info.width, info.height)
    given = [row.get(k) for k in REGION]
    if all(v is None or pd.isna(v) for v in given):
        return whole
    if any(v is None or pd.isna(v) for v in given):
        raise PodiumError(
            f"scene {row['name']} of {path} gives only part of the region {', '.join(REGION)}; "
            f"expected all four or none"
        )
    col_off, row_off, width, height = (int(v) for v in given)
    region = Window(col_off, row_off, width, height)
    if width <= 0 or height <= 0 or not _overlaps(region, whole):
        raise PodiumError(
            f"scene {row['name']} of {path}: region {col_off},{row_off},{width},{height} is empty "
            f"or outside raster {info.path} ({info.width}×{info.height} pixels)"
        )
    return region.intersection(whole)


def _overlaps(a, b) -> bool:
    return (
        a.col_off < b.col_off + b.width
        and b.col_off < a.col_off + a.width
        and a.row_off < b.row_off + b.height
        and b.row_off < a.row_off + a.height
    )


def check_not_all_nodata(scene: Scene) -> None:
    """Block by block until a valid pixel turns up: an all-nodata scene is an error."""
    from rasterio.windows import Window

    step = 1024
    region = scene.region
    with open_raster(scene.image) as src:
        for row in range(int(region.row_off), int(region.row_off + region.height), step):
            for col in range(int(region.col_off), int(region.col_off + region.width), step):
                height = min(step, int(region.row_off + region.height) - row)
                width = min(step, int(region.col_off + region.width) - col)
                masks = src.read_masks(scene.bands, window=Window(col, row, width, height))
                if masks.max() > 0:
                    return
    raise PodiumError(
        f"raster {scene.image} (scene {scene.name}) is all nodata (nodata value "
        f"{scene.info.nodata}) in bands {scene.bands}; expected some valid pixels"
    )


def windows_overlap(a, b) -> bool:
    """Whether two rasterio Windows share a pixel."""
    return _overlaps(a, b)
