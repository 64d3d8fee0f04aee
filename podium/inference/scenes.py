"""Whole scenes → probability and mask GeoTIFFs: overlapping windows, weighted blending, memory
bounded by the window and the scene's width, never its area.

    predictor = ScenePredictor(predict, window=512, overlap=128, weight="gaussian",
                               normalizer=build_normalizer({"mode": "fixed", "max_value": 255}),
                               post=PostProcess(threshold=0.5))
    summary = predictor("scene.tif", "out/")   # out/scene_probability.tif, out/scene_mask.tif

`predict` maps a batch of windows B×C×h×w (normalised as the run's validation read them) to
probabilities B×K×h×w: a `Predictor` (TTA included) or an ensemble of them.

* **Windows** follow MONAI's sliding-window grid (`sliding_starts`): every `window - overlap`
  pixels, the last row and column shifted back to end at the scene's edge, so only a scene
  smaller than the window is padded (with zeros, marked invalid, as training read it).
* **Blending**: each window's probabilities are weighted by `window_weights` (gaussian: MONAI's
  importance map; mean = MONAI's constant; pyramid) and the weighted sums divided by the summed
  weights: no seams.
* **Streaming**: a row of windows reads one strip of the scene (window height × scene width);
  windows go to the model in batches of `batch_size` in reading order (a batch may end one row
  and start the next, as MONAI's do). Weighted sums are kept only for rows a later window row
  still overlaps; once a row of windows is blended, the rows before the next window row are
  final: divided, written to the probability GeoTIFF, then post-processed and written to the
  mask GeoTIFF.
* **Post-processing** (`PostProcess`: threshold, fill_holes, min_size) runs on bands of final
  rows with `context` rows above and below (min_size, and the window height with fill_holes):
  min_size is exact, as a blob of fewer than min_size pixels spans fewer rows than that, and a
  blob that reaches the context's edge has more pixels than that in it; holes are filled when
  they fit in the band with its context.
* **Memory**: GDAL's block cache is bounded to two rows of blocks per band (its default, 5 % of
  the RAM, would otherwise grow with the scene).
* **Nodata**: pixels nodata in every band (or outside the raster) are masked in the probability
  map (GDAL's internal mask band: every uint8 value is a probability), 255 in the mask, and
  background for post-processing.

Outputs (geotiff.py): tiled, deflate-compressed, the scene's CRS and transform; probabilities
uint8 round(p × 255) with one band per class, masks uint8 (binary 0/1, multiclass class index,
multilabel one 0/1 band per class). Both are written to temp files and renamed at the end.
"""

import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from podium.datasets.normalize import build_normalizer
from podium.datasets.scenes.dataset import window_size
from podium.datasets.scenes.rasters import check_bands, open_raster, raster_info, read_window
from podium.datasets.scenes.table import Scene, check_not_all_nodata
from podium.datasets.scenes.windows import sliding_starts
from podium.errors import PodiumError
from podium.inference.geotiff import GeoTiffOutput
from podium.inference.postprocess import PostProcess
from podium.inference.probability_maps import SCALE
from podium.inference.tiles import window_weights
from podium.validation import check_int

__all__ = ["ScenePredictor", "MASK_NODATA", "scene_outputs"]

MASK_NODATA = 255


def scene_outputs(out, scene) -> Dict[str, Path]:
    """The files written for `scene`: OUT/<stem>_probability.tif and OUT/<stem>_mask.tif."""
    stem = Path(scene).stem
    return {kind: Path(out) / f"{stem}_{kind}.tif" for kind in ("probability", "mask")}


class ScenePredictor:
    """Predict whole rasters window by window (see the module docstring)."""

    def __init__(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        window=512,
        overlap: Optional[int] = None,
        weight: str = "gaussian",
        batch_size: int = 8,
        normalizer=None,
        bands: Optional[Sequence[int]] = None,
        post: Optional[PostProcess] = None,
        mode: str = "binary",
        num_classes: int = 1,
        class_names: Optional[Sequence[str]] = None,
        transforms=None,
        progress: bool = False,
    ):
        self.predict = predict
        self.window = window_size(window)
        overlap = min(self.window) // 4 if overlap is None else overlap
        self.overlap = check_int(overlap, "overlap", 0, "a number of pixels >= 0")
        if self.overlap >= min(self.window):
            raise PodiumError(
                f"overlap {self.overlap} must be smaller than the window "
                f"{self.window[0]}×{self.window[1]}"
            )
        self.weights = torch.from_numpy(window_weights(self.window, weight))
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.normalizer = normalizer if normalizer is not None else build_normalizer(None)
        self.bands = bands
        self.mode = mode
        self.post = post if post is not None else PostProcess(mode=mode)
        self.channels = 1 if mode == "binary" else int(num_classes)
        if mode == "multiclass" and self.channels > MASK_NODATA:
            raise PodiumError(
                f"scene masks are uint8 with nodata {MASK_NODATA}: at most {MASK_NODATA} classes, "
                f"got {self.channels}"
            )
        self.class_names = list(class_names) if class_names else None
        self.transforms = transforms  # geometry.ImagePipeline of the run's valid_transforms
        self.progress = progress

    def __call__(self, path, out) -> Dict:
        """Predict the raster at `path` into the folder `out`; returns what was written."""
        started = time.perf_counter()
        path = str(path)
        info = raster_info(path)
        bands = check_bands(self.bands, info.count, path)
        from rasterio.windows import Window

        whole = Window(0, 0, info.width, info.height)
        check_not_all_nodata(Scene(Path(path).stem, path, info, None, whole, bands))
        paths = scene_outputs(out, path)
        with _gdal_cache(info.width, len(bands) + 3 * self.channels), open_raster(path) as src:
            outputs = self._open(paths, src)
            try:
                windows = self._predict(src, bands, outputs)
                for output in outputs.values():
                    output.commit()
            except BaseException:
                for output in outputs.values():
                    output.discard()
                raise
        seconds = time.perf_counter() - started
        return {
            "scene": path,
            "width": info.width,
            "height": info.height,
            "windows": windows,
            "seconds": round(seconds, 4),
            "megapixels_per_second": round(info.width * info.height / 1e6 / seconds, 4),
            **{kind: str(p) for kind, p in paths.items()},
        }

    # ------------------------------------------------------------------------ outputs
    def _open(self, paths: Dict[str, Path], src) -> Dict[str, GeoTiffOutput]:
        names = self.class_names
        if names is not None and self.mode == "multiclass" and len(names) != self.channels:
            names = None
        if self.mode == "binary":
            names = names[-1:] if names else None
        mask_bands = self.channels if self.mode == "multilabel" else 1
        outputs = {}
        try:
            outputs["probability"] = GeoTiffOutput(
                paths["probability"], src, self.channels, "uint8", masked=True, descriptions=names
            )
            outputs["mask"] = GeoTiffOutput(
                paths["mask"],
                src,
                mask_bands,
                "uint8",
                nodata=MASK_NODATA,
                descriptions=names if self.mode == "multilabel" else None,
            )
        except BaseException:
            for output in outputs.values():
                output.discard()
            raise
        return outputs

    # ------------------------------------------------------------------------ the loop
    def _predict(self, src, bands: List[int], outputs: Dict[str, GeoTiffOutput]) -> int:
        post = BandPostProcess(self.post, self._context(), src.height)
        windows = 0
        for top, probabilities, valid, counted in self.blended_rows(src, bands):
            windows = counted
            quantised = np.rint(np.clip(probabilities, 0.0, 1.0) * SCALE).astype(np.uint8)
            outputs["probability"].write(quantised, top, valid=valid)
            for mask_row, mask in post.add(probabilities, valid):
                outputs["mask"].write(mask, mask_row)
        return windows

    def blended_rows(
        self, src, bands: Sequence[int]
    ) -> Iterator[Tuple[int, np.ndarray, np.ndarray, int]]:
        """(first row, float32 probabilities K×n×width, valid n×width, windows so far) of the
        final rows of an open raster, top to bottom."""
        from tqdm.auto import tqdm

        height, width = src.height, src.width
        rows = sliding_starts(height, self.window[0], self.overlap)
        cols = sliding_starts(width, self.window[1], self.overlap)
        blend = Blending(self.channels, max(width, self.window[1]))
        progress = tqdm(
            total=len(rows) * len(cols), desc="windows", unit="win", disable=not self.progress
        )
        finished = 0  # window rows whose every window is blended
        for batch in self._batches(src, bands, rows, cols, blend):
            probabilities = self._probabilities(torch.stack([item[3] for item in batch]))
            for (_, row, col, _), p in zip(batch, probabilities):
                blend.add(p, row, col, self.weights)
            progress.update(len(batch))
            index, _, col, _ = batch[-1]
            complete = index + 1 if col == cols[-1] else index
            if complete > finished:
                end = rows[complete] if complete < len(rows) else height
                top, probabilities, valid = blend.pop_to(min(end, height), width)
                yield top, probabilities, valid, min(complete * len(cols), len(rows) * len(cols))
                finished = complete
        progress.close()

    def _batches(self, src, bands, rows, cols, blend) -> Iterator[List[Tuple]]:
        """Batches of (row index, row, col, window tensor) in reading order; a batch may span
        two rows of windows (as MONAI's do), so every forward but the last is full. Each row of
        windows reads one strip (window height × scene width)."""
        from rasterio.windows import Window

        window_h, window_w = self.window
        batch: List[Tuple] = []
        for index, row in enumerate(rows):
            strip = Window(0, row, max(src.width, window_w), window_h)
            image, valid = read_window(src, strip, list(bands))
            blend.extend_to(row + window_h, valid, row)
            for col in cols:
                batch.append((index, row, col, self._tensor(image[:, col : col + window_w])))
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        """One raw H×W×C window → C×H×W float32, as the scene dataset makes its items."""
        image = self.normalizer.scale(image)
        if self.transforms is not None:
            image = self.transforms(image=image)["image"]
        image = self.normalizer.standardize(image)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def _probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        probabilities = self.predict(batch)
        probabilities = torch.as_tensor(probabilities).float().cpu()
        if self.transforms is not None and self.transforms.compose is not None:
            size = self.window
            probabilities = torch.stack(
                [torch.from_numpy(self.transforms.inverse(p.numpy(), size)) for p in probabilities]
            )
        if probabilities.shape[1] != self.channels:
            raise PodiumError(
                f"the model gives {probabilities.shape[1]} output channel(s), expected "
                f"{self.channels} for a {self.mode} prediction"
            )
        return probabilities

    def _context(self) -> int:
        """Rows of context the post-processing needs above and below a band."""
        _, min_sizes, fills = self.post.per_class(self.channels)
        context = max(min_sizes)
        if any(fills):
            context = max(context, self.window[0])
        return int(context)


def _gdal_cache(width: int, bands: int):
    """GDAL's block cache sized for two rows of 256² blocks of every band read and written.

    GDAL's default is 5 % of the RAM: it fills with blocks of the scene and the outputs, and
    the process's memory grows with the scene up to that size. Rows are written whole, so two
    rows of blocks per band are all the cache needs to hold."""
    import rasterio

    megabytes = max(64, 2 * bands * width * 256 * 4 // 2**20)
    return rasterio.Env(GDAL_CACHEMAX=megabytes)


class Blending:
    """Weighted sums Σ w·p and Σ w of the rows still being predicted (a band of the scene)."""

    def __init__(self, channels: int, width: int):
        self.top = 0  # scene row of the first row held
        self.sums = torch.zeros((channels, 0, width))
        self.weights = torch.zeros((0, width))
        self.valid = np.zeros((0, width), bool)

    def extend_to(self, end: int, valid: np.ndarray, row: int) -> None:
        """Hold rows up to scene row `end` (new rows zero); record the validity read at `row`."""
        extra = end - self.top - self.weights.shape[0]
        if extra > 0:
            width = self.weights.shape[1]
            more = self.sums.new_zeros(self.sums.shape[0], extra, width)
            self.sums = torch.cat([self.sums, more], 1)
            self.weights = torch.cat([self.weights, self.weights.new_zeros(extra, width)])
            self.valid = np.concatenate([self.valid, np.zeros((extra, width), bool)])
        self.valid[row - self.top : row - self.top + valid.shape[0]] = valid

    def add(self, probabilities: torch.Tensor, row: int, col: int, weights: torch.Tensor) -> None:
        h, w = weights.shape
        r = row - self.top
        self.sums[:, r : r + h, col : col + w].addcmul_(probabilities, weights)
        self.weights[r : r + h, col : col + w] += weights

    def pop_to(self, end: int, width: int) -> Tuple[int, np.ndarray, np.ndarray]:
        """(first row, probabilities K×n×width, valid n×width) of the final rows before `end`."""
        n = end - self.top
        probabilities = (self.sums[:, :n, :width] / self.weights[:n, :width]).numpy()
        valid = self.valid[:n, :width].copy()
        top = self.top
        self.sums, self.weights = self.sums[:, n:].clone(), self.weights[n:].clone()
        self.valid = self.valid[n:].copy()
        self.top = end
        return top, probabilities, valid


class BandPostProcess:
    """Final probability rows in, mask rows out, `context` rows behind (see the docstring)."""

    def __init__(self, post: PostProcess, context: int, height: int):
        self.post, self.context, self.height = post, context, height
        self.top = 0  # scene row of the first row held
        self.done = 0  # first row whose mask is not written yet
        self.probabilities: Optional[np.ndarray] = None
        self.valid: Optional[np.ndarray] = None

    def add(self, probabilities: np.ndarray, valid: np.ndarray) -> List[Tuple[int, np.ndarray]]:
        """Take the next final rows; returns (first row, mask rows) ready to be written."""
        probabilities = np.where(valid[None], probabilities, 0.0).astype(np.float32)
        if self.probabilities is None:
            self.probabilities, self.valid = probabilities, valid
        else:
            self.probabilities = np.concatenate([self.probabilities, probabilities], axis=1)
            self.valid = np.concatenate([self.valid, valid])
        end = self.top + self.valid.shape[0]
        last = end >= self.height
        band_end = self.height if last else end - self.context
        if band_end <= self.done:
            return []
        first = max(self.done - self.context, self.top)
        stop = min(band_end + self.context, end)
        held = self.probabilities[:, first - self.top : stop - self.top]
        mask = self.post(held)[..., self.done - first : band_end - first, :]
        valid_band = self.valid[self.done - self.top : band_end - self.top]
        mask = np.where(valid_band, mask, MASK_NODATA).astype(np.uint8)
        ready = [(self.done, mask)]
        self.done = band_end
        keep = max(self.done - self.context, self.top)
        self.probabilities = self.probabilities[:, keep - self.top :]
        self.valid = self.valid[keep - self.top :]
        self.top = keep
        return ready
