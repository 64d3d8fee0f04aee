"""Windowed reading of georeferenced rasters (any GDAL format) with rasterio.

A window is read on its own (the part inside the raster, padded with zeros outside), so a
scene never has to fit in memory. Pixels are "valid" unless every selected band is masked there
(GDAL's nodata value, an internal mask or alpha; NaN in float rasters) or they lie outside the
raster: GDAL's convention for RGB nodata, so one saturated band does not hide a pixel. Invalid
pixels read as 0 and are marked in the returned `valid` array; the scene dataset gives them the
ignore value in the mask.

Bands are numbered from 1, as in GDAL and rasterio (`bands: [4, 3, 2]`).
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from podium.errors import PodiumError
from podium.validation import is_int

__all__ = ["RasterInfo", "open_raster", "raster_info", "check_bands", "read_window"]


class RasterInfo(NamedTuple):
    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: object  # rasterio CRS or None
    transform: object  # affine.Affine
    nodata: Optional[float]
    bounds: Tuple[float, float, float, float]  # left, bottom, right, top in the raster's CRS


def open_raster(path: str):
    """A rasterio dataset; an unreadable file is one PodiumError naming it."""
    import rasterio

    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise PodiumError(
            f"cannot read raster {path}: {error}; expected a GDAL-readable image"
        ) from None


def raster_info(path: str) -> RasterInfo:
    with open_raster(path) as src:
        return RasterInfo(
            str(path),
            src.width,
            src.height,
            src.count,
            src.dtypes[0],
            src.crs,
            src.transform,
            src.nodata,
            tuple(src.bounds),
        )


def check_bands(bands, count: int, path: str) -> List[int]:
    """1-based band numbers (None = all bands), each checked against the raster's band count."""
    if bands is None:
        return list(range(1, count + 1))
    if is_int(bands):
        bands = [bands]
    if not isinstance(bands, (list, tuple)) or not bands or not all(is_int(b) for b in bands):
        raise PodiumError(
            f"bands must be a list of 1-based band numbers like [1, 2, 3], got {bands!r}"
        )
    wrong = [b for b in bands if not 1 <= b <= count]
    if wrong:
        raise PodiumError(
            f"band {wrong[0]} is out of range for raster {path}, which has {count} band(s); "
            f"expected band numbers 1..{count}"
        )
    return [int(b) for b in bands]


def read_window(src, window, bands: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(image H×W×C in the raster's dtype, valid H×W bool) of `window`, padded outside.

    Only the part inside the raster is read: GDAL's boundless reads go through a VRT and cost
    several times a plain read, which showed in scene prediction."""
    from rasterio.windows import Window

    bands = list(bands)
    row, col = int(window.row_off), int(window.col_off)
    height, width = int(window.height), int(window.width)
    top, left = max(row, 0), max(col, 0)
    bottom, right = min(row + height, src.height), min(col + width, src.width)
    if bottom <= top or right <= left:  # wholly outside
        dtype = np.result_type(*(src.dtypes[b - 1] for b in bands))
        return np.zeros((height, width, len(bands)), dtype), np.zeros((height, width), bool)
    inside = Window(left, top, right - left, bottom - top)
    pixels = src.read(bands, window=inside)
    masks = src.read_masks(bands, window=inside).max(axis=0) > 0
    if (top, left, bottom, right) == (row, col, row + height, col + width):
        image, valid = pixels, masks
    else:
        rows, cols = slice(top - row, bottom - row), slice(left - col, right - col)
        image = np.zeros((len(bands), height, width), pixels.dtype)
        valid = np.zeros((height, width), bool)
        image[:, rows, cols], valid[rows, cols] = pixels, masks
    if np.issubdtype(image.dtype, np.floating):
        valid &= ~np.isnan(image).all(axis=0)
        image = np.nan_to_num(image, nan=0.0)
    image[:, ~valid] = 0
    return np.ascontiguousarray(image.transpose(1, 2, 0)), valid
