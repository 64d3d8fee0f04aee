"""Sliding-window prediction of large images: overlapping tiles, weighted merging, bounded memory.

pytorch-toolbelt 0.8.0 has the pieces: `ImageSlicer` computes the tile grid, the margins that
make the grid cover the image and the per-tile weights ("pyramid": high in the centre, low at
the edges, so seams between tiles fade), and `TileMerger` accumulates weighted tiles on any
device. Used as they are, with these fixes:

- `ImageSlicer.iter_split` / `split` pad the margins with a *constant* 0 through
  `cv2.copyMakeBorder`: on a standardised image that is a mean-grey frame the model never saw,
  which shifts predictions near the image border (and cv2 needs H×W×C numpy on the CPU). Tiles
  are cut here from the C×H×W tensor on its own device, margins filled by *reflection*
  (replicate when a margin is wider than the image), the padding the model itself uses.
- `ImageSlicer.crop_to_orignal_size` slices the first two axes (H×W×C), but `TileMerger` merges
  C×H×W: the crop here slices the last two.
- A step larger than the tile, or < 1, raises a bare `ValueError()`: sizes are checked first
  with a message.

Weights (`weight`): toolbelt's "pyramid" and "mean", and "gaussian": MONAI's importance map
(`compute_importance_map(mode="gaussian", sigma_scale=0.125)`: a separable gaussian of sigma
size / 8 centred on the tile, clamped below at 1e-3 so no pixel has zero weight), the usual
choice for U-Nets, whose predictions are worst at the tile edges. "mean" is MONAI's "constant".
`window_weights` is the one place these are computed: whole scenes (scenes.py) blend with it too.

Memory: the model never sees more than `batch_size` tiles at once; the merger holds one
C×H×W float32 accumulator (+ one H×W weight sum) of the image being predicted.
"""

from typing import Callable, Sequence, Tuple, Union

import numpy as np
import torch
from pytorch_toolbelt.inference.tiles import (
    ImageSlicer,
    TileMerger,
    compute_pyramid_patch_weight_loss,
)

from podium.errors import PodiumError
from podium.models.base import reflect_pad

__all__ = ["WEIGHTS", "TiledPrediction", "tile_grid", "window_weights"]

Size = Union[int, Sequence[int]]
WEIGHTS = ("pyramid", "mean", "gaussian")
GAUSSIAN_SIGMA_SCALE = 0.125  # sigma = size / 8, MONAI's default
MIN_WEIGHT = 1e-3  # MONAI's floor of the importance map


def window_weights(size: Tuple[int, int], weight: str = "gaussian") -> np.ndarray:
    """float32 h×w blending weights of one tile: pyramid | mean | gaussian (see the docstring)."""
    height, width = int(size[0]), int(size[1])
    if weight == "mean":
        return np.ones((height, width), np.float32)
    if weight == "pyramid":
        return compute_pyramid_patch_weight_loss(height, width)[0].astype(np.float32)  # as toolbelt
    if weight != "gaussian":
        raise PodiumError(
            f"tile weight {weight!r} is unknown; expected one of: {', '.join(WEIGHTS)}"
        )
    axes = []
    for side in (height, width):  # MONAI's arithmetic, in float32 as there
        x = torch.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=torch.float)
        axes.append(torch.exp(x**2 / (-2 * (side * GAUSSIAN_SIGMA_SCALE) ** 2)))
    weights = axes[0][:, None] * axes[1][None]
    return weights.clamp_(min=max(weights.min().item(), MIN_WEIGHT)).numpy()


def tile_grid(
    image_shape: Tuple[int, int], size: Size, overlap: int, weight: str = "pyramid"
) -> ImageSlicer:
    """toolbelt's ImageSlicer for tiles of `size` (int or [h, w]) overlapping by `overlap`
    pixels."""
    tile_h, tile_w = (
        (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    )
    if overlap < 0 or overlap >= min(tile_h, tile_w):
        raise PodiumError(
            f"tile overlap {overlap} must be >= 0 and smaller than the tile size {tile_h}×{tile_w}"
        )
    step = (tile_h - overlap, tile_w - overlap)
    if weight == "gaussian":
        weight = window_weights((tile_h, tile_w), weight)
    return ImageSlicer(tuple(image_shape[:2]), (tile_h, tile_w), step, weight=weight)


class TiledPrediction:
    """Predict C×H×W images tile by tile: `TiledPrediction(size, overlap)(fn, image)` → K×H×W.

    `fn` maps a batch of tiles B×C×h×w to B×K×h×w (probabilities: merging averages them);
    it may itself be a TTA wrapper around the model.
    """

    def __init__(self, size: Size, overlap: int, weight: str = "pyramid", batch_size: int = 8):
        self.size, self.overlap, self.weight = size, int(overlap), weight
        self.batch_size = int(batch_size)
        self.tiles_seen = 0  # tiles predicted so far (all images): for the timings report

    def __call__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor
    ) -> torch.Tensor:
        if image.ndim != 3:
            raise PodiumError(
                f"tiled prediction takes one C×H×W image, got shape {tuple(image.shape)}"
            )
        slicer = tile_grid(image.shape[-2:], self.size, self.overlap, self.weight)
        padded = _pad_margins(image, slicer)
        merger = None
        coords = [
            tuple(int(v) for v in crop) for crop in slicer.crops
        ]  # x, y, w, h in padded coordinates
        for start in range(0, len(coords), self.batch_size):
            chunk = coords[start : start + self.batch_size]
            tiles = torch.stack([padded[:, y : y + h, x : x + w] for x, y, w, h in chunk])
            probabilities = fn(tiles)
            if merger is None:
                merger = TileMerger(
                    slicer.target_shape,
                    probabilities.shape[1],
                    slicer.weight,
                    device=probabilities.device,
                    dtype=torch.float32,
                )
            merger.integrate_batch(probabilities.float(), chunk)
            self.tiles_seen += len(chunk)
        merged = merger.merge_()
        top, left = slicer.margin_top, slicer.margin_left
        return merged[:, top : top + slicer.image_height, left : left + slicer.image_width]


def _pad_margins(image: torch.Tensor, slicer: ImageSlicer) -> torch.Tensor:
    """The image with ImageSlicer's margins added by reflection (replicate if a margin ≥ the
    side)."""
    pad = (slicer.margin_left, slicer.margin_right, slicer.margin_top, slicer.margin_bottom)
    return reflect_pad(image[None], pad)[0] if any(pad) else image
