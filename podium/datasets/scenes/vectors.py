"""Vector labels (any OGR format: GeoJSON, GeoPackage, Shapefile …) as class-index masks.

`read_labels` reads a file with geopandas (pyogrio engine), reprojects it to the raster's CRS,
repairs invalid geometries (`shapely.make_valid`, counted) or refuses them, drops empty ones,
and gives each geometry a class index: 1 for all (no class column), the position of the
column's value in `class_names` (index 0 is the background), or the column's integer value.
`Labels.rasterize` burns the geometries that touch a window into an array with
`rasterio.features.rasterize` (later rows paint over earlier ones; 0 = background).

Labels without a CRS are taken to be in the raster's CRS (pixel-free map coordinates); labels
with a CRS on a raster without one are refused, as are labels that do not overlap the raster.
"""

import logging
from typing import List, Optional, Sequence

import numpy as np

from podium.errors import PodiumError, did_you_mean
from podium.validation import check_choice, is_int

__all__ = ["Labels", "read_labels", "INVALID_GEOMETRIES"]

INVALID_GEOMETRIES = ("repair", "error")
LOGGER = logging.getLogger("podium.datasets")


class Labels:
    """Geometries in the raster's CRS with their class index, indexed for window queries."""

    def __init__(self, geometries: Sequence, classes: Sequence[int], path: str = ""):
        from shapely import STRtree

        self.path = path
        self.geometries = np.asarray(list(geometries), dtype=object)
        self.classes = np.asarray(list(classes), dtype=np.int64)
        self.tree = STRtree(self.geometries)

    def __len__(self) -> int:
        return len(self.geometries)

    def query(self, bounds) -> np.ndarray:
        """Indices (in file order) of the geometries whose extent meets `bounds` (l, b, r, t)."""
        from shapely import box

        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return np.sort(self.tree.query(box(*bounds)))

    def rasterize(self, transform, shape, all_touched: bool = False) -> np.ndarray:
        """uint8/int32 H×W class indices of a window with affine `transform` (0 = background)."""
        from rasterio.features import rasterize
        from rasterio.transform import array_bounds

        dtype = np.uint8 if (not len(self) or self.classes.max() < 256) else np.int32
        height, width = shape
        west, south, east, north = array_bounds(height, width, transform)
        picked = self.query(
            (min(west, east), min(south, north), max(west, east), max(south, north))
        )
        if not len(picked):
            return np.zeros(shape, dtype=dtype)
        shapes = zip(self.geometries[picked], self.classes[picked].tolist())
        return rasterize(
            shapes,
            out_shape=shape,
            transform=transform,
            fill=0,
            all_touched=all_touched,
            dtype=dtype,
        )


def read_labels(
    path: str,
    raster_crs,
    raster_bounds,
    raster_path: str,
    class_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    num_classes: int = 1,
    invalid_geometries: str = "repair",
) -> Labels:
    """The label file of one scene, checked against its raster (see the module docstring)."""
    frame = _read_frame(path)
    if not len(frame):
        return Labels([], [], path)  # an all-background scene
    if frame.crs is not None and raster_crs is None:
        raise PodiumError(
            f"labels {path} are in {frame.crs.to_string()} but raster {raster_path} has no CRS; "
            f"expected a georeferenced raster (or labels without a CRS, in its coordinates)"
        )
    if frame.crs is not None and frame.crs != raster_crs:
        original = tuple(frame.total_bounds)
        frame = frame.to_crs(raster_crs)
        _check_overlap(frame, raster_bounds, path, raster_path, original, raster_crs)
    else:
        _check_overlap(frame, raster_bounds, path, raster_path, None, raster_crs)
    frame = _clean_geometries(frame, path, invalid_geometries)
    classes = _class_indices(frame, path, class_column, class_names, num_classes)
    return Labels(frame.geometry.values, classes, path)


def _read_frame(path: str):
    import geopandas

    try:
        return geopandas.read_file(path, engine="pyogrio")
    except Exception as error:  # pyogrio raises DataSourceError, DataLayerError …
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "no features" in text.lower() or "empty" in text.lower():
            return geopandas.GeoDataFrame(geometry=[])
        raise PodiumError(
            f"cannot read labels {path}: {text}; expected a vector file (GeoJSON, GeoPackage, …)"
        ) from None


def _check_overlap(frame, raster_bounds, path, raster_path, original, crs) -> None:
    left, bottom, right, top = frame.total_bounds
    r_left, r_bottom, r_right, r_top = raster_bounds
    if np.isfinite([left, bottom, right, top]).all() and (
        left <= r_right and right >= r_left and bottom <= r_top and top >= r_bottom
    ):
        return
    name = crs.to_string() if crs is not None else "pixel/map units"
    extent = f"{_fmt((left, bottom, right, top))} in {name}"
    if original is not None:
        extent = f"{_fmt(original)} in their own CRS, {extent}"
    raise PodiumError(
        f"labels {path} do not overlap raster {raster_path}: labels span {extent}, the raster "
        f"spans {_fmt(raster_bounds)}; expected labels of this scene"
    )


def _fmt(bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def _clean_geometries(frame, path: str, invalid_geometries: str):
    """Drop null/empty geometries; repair invalid ones with make_valid (or refuse them)."""
    import shapely

    check_choice(invalid_geometries, INVALID_GEOMETRIES, "invalid_geometries")
    geometries = frame.geometry.values
    empty = shapely.is_missing(geometries) | shapely.is_empty(geometries)
    invalid = ~empty & ~shapely.is_valid(geometries)
    if invalid.any() and invalid_geometries == "error":
        rows = ", ".join(str(i) for i in np.flatnonzero(invalid)[:5])
        raise PodiumError(
            f"labels {path} have {int(invalid.sum())} invalid geometries (rows {rows}: "
            f"{shapely.is_valid_reason(geometries[invalid][0])}); expected valid geometries "
            f"(or invalid_geometries: repair)"
        )
    if invalid.any():
        frame = frame.copy()
        frame.loc[invalid, frame.geometry.name] = shapely.make_valid(geometries[invalid])
    if invalid.any() or empty.any():
        LOGGER.warning(
            f"podium: warning: labels {path}: repaired {int(invalid.sum())} invalid and dropped "
            f"{int(empty.sum())} empty geometries"
        )
    return frame[~empty].reset_index(drop=True)


def _class_indices(frame, path, class_column, class_names, num_classes) -> List[int]:
    if class_column is None:
        return [1] * len(frame)
    if class_column not in frame.columns:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        raise PodiumError(
            f'class_column "{class_column}" is not a column of labels {path}'
            f"{did_you_mean(class_column, columns)}; columns: {columns}"
        )
    values = frame[class_column].tolist()
    if class_names is not None:
        lookup = {str(name): i for i, name in enumerate(class_names)}
        for value in values:
            if str(value) not in lookup or lookup[str(value)] == 0:
                raise PodiumError(
                    f'labels {path}: class value "{value}" of column {class_column} is not in '
                    f"class_names {list(class_names)[1:]} (index 0, {class_names[0]}, is the "
                    f"background); expected one of them"
                )
        return [lookup[str(v)] for v in values]
    for value in values:
        if not is_int(value) or not 1 <= int(value) < max(num_classes, 2):
            raise PodiumError(
                f"labels {path}: class value {value!r} of column {class_column} is not a class "
                f"index 1..{max(num_classes, 2) - 1} (num_classes {num_classes}); expected "
                f"integers, or list the values in class_names"
            )
    return [int(v) for v in values]
