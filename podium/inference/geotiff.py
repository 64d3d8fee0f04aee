"""A GeoTIFF written window by window, whole or not at all.

`GeoTiffOutput(path, like=src, count=1, dtype="uint8")` creates a tiled (256² blocks),
deflate-compressed GeoTIFF with the CRS and transform of the raster `like`, in a temp file
beside `path` (podium.files.temporary_path); `write(array, row)` writes full-width rows as they
are finished, so a scene never has to be held in memory; `commit()` renames the temp file over
`path`, `discard()` removes it. A write that fails (disk full, read-only folder) is one
OutputWriteError naming `path`, and the file an earlier run wrote at `path` stays as it was.

Nodata: `nodata=` sets the nodata value (masks: 255); `masked=True` instead adds GDAL's internal
per-dataset mask band (`write(..., valid=...)`), for outputs where every value of the dtype is
meaningful (uint8 probabilities 0..255).
"""

import contextlib
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from podium.files import OutputWriteError, temporary_path, writing

try:  # GDAL's errors (a full disk while flushing a block) are not OSErrors
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - rasterio's private module moved
    from rasterio.errors import RasterioError as CPLE_BaseError

__all__ = ["GeoTiffOutput", "BLOCK"]

BLOCK = 256


class GeoTiffOutput:
    """See the module docstring."""

    def __init__(
        self,
        path,
        like,
        count: int = 1,
        dtype: str = "uint8",
        nodata: Optional[float] = None,
        masked: bool = False,
        descriptions: Optional[Sequence[str]] = None,
    ):
        import rasterio

        self.path = Path(path)
        self.temp = temporary_path(self.path)
        self.masked = masked
        profile = dict(
            driver="GTiff",
            width=like.width,
            height=like.height,
            count=int(count),
            dtype=dtype,
            crs=like.crs,
            transform=like.transform,
            nodata=nodata,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            compress="deflate",
            predictor=2,  # horizontal differencing: smaller files for smooth maps
            BIGTIFF="IF_SAFER",
        )
        self.dst = None
        with self._writing():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.dst = rasterio.open(self.temp, "w", **profile)
            for band, text in enumerate(descriptions or (), start=1):
                self.dst.set_band_description(band, str(text))

    def write(self, array: np.ndarray, row: int, valid: Optional[np.ndarray] = None) -> None:
        """Bands × rows × width (or rows × width) starting at scene row `row`."""
        from rasterio.windows import Window

        array = array[None] if array.ndim == 2 else array
        window = Window(0, row, array.shape[2], array.shape[1])
        with self._writing():
            self.dst.write(array, window=window)
            if self.masked:
                self.dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)

    def commit(self) -> Path:
        """Close the temp file and rename it over `path`."""
        with self._writing():
            self.dst.close()
            os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        """Close and remove the temp file; `path` is left as it was."""
        try:
            if self.dst is not None and not self.dst.closed:
                self.dst.close()
        except Exception:  # closing flushes: on a full disk this fails too
            pass
        if self.temp.exists() or self.temp.is_symlink():
            self.temp.unlink()

    @contextlib.contextmanager
    def _writing(self):
        """podium.files.writing, GDAL's own write errors (not OSErrors) included; the temp file
        goes on any failure."""
        from rasterio.errors import RasterioError

        try:
            with writing(self.path):
                yield
        except OutputWriteError:
            self.discard()
            raise
        except (RasterioError, CPLE_BaseError) as error:
            self.discard()
            raise OutputWriteError(
                f"cannot write {self.path}: {str(error).splitlines()[0]}; expected a writable "
                f"output folder with free space (the files written before it are kept)"
            ) from error
