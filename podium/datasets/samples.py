"""Small real annotated datasets written in podium's folder format (`podium samples NAME`).

`nuclei`: the 512×512 uint16 fluorescence image of the 2018 Data Science Bowl shipped in the
stardist wheel (BSD-3), with its manual instance labels turned into a binary mask. The split is
spatial — validation is the right-most quarter (x ≥ 384) — so no validation pixel ever appears
in a training tile and the validation score measures generalisation, not memorisation.

On-disk format (what ImageFolderDataset reads):
    images/NAME.png   16-bit greyscale PNG, raw uint16 intensities (max ≈ 235: use percentile normalisation)
    masks/NAME.png    8-bit PNG, 0 = background, 255 = nucleus (num_classes: 1)
    split.csv         name,split   with split in {train, valid}
    README.txt        source, licence, split rule
NAME is `{split}_y{Y:03d}_x{X:03d}` (top-left corner of the tile in the source image).
"""
import importlib.util
import os
import re
from typing import Callable, Dict, List, NamedTuple, Tuple

import cv2
import numpy as np
import tifffile

from podium.errors import PodiumError, did_you_mean

__all__ = ["SAMPLES", "TILE_SIZES", "sample_names", "write_sample", "write_nuclei", "nuclei_tiles"]

TILE_SIZES = (32, 64, 128, 256)
VALID_X0 = 384  # right-most quarter of the 512-wide image is validation
_TILE_NAME = re.compile(r"^(train|valid)_y\d{3}_x\d{3}\.png$")
Tile = Tuple[str, int, int, int, int]  # (split, y, x, height, width)


class Sample(NamedTuple):
    description: str
    write: Callable[..., Dict]


def sample_names() -> List[str]:
    return sorted(SAMPLES)


def write_sample(name: str, out, **options) -> Dict:
    """Write sample `name` into folder `out`; returns a summary dict."""
    if name not in SAMPLES:
        raise PodiumError(f'unknown sample "{name}"{did_you_mean(name, SAMPLES)}; expected one of: {", ".join(SAMPLES)}')
    return SAMPLES[name].write(out, **options)


def write_nuclei(out, tile: int = 128, train_stride: int = 32) -> Dict:
    """Tile the DSB2018 image: overlapping train tiles in x < 384, non-overlapping valid tiles in x ≥ 384."""
    image, labels = _read_stardist_nuclei()
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    tiles = nuclei_tiles(image.shape, tile, train_stride)
    names = [_tile_name(t) for t in tiles]
    _prepare_folders(out, set(names))
    for name, (_, y, x, h, w) in zip(names, tiles):
        _write_png(os.path.join(out, "images", name + ".png"), image[y : y + h, x : x + w])
        _write_png(os.path.join(out, "masks", name + ".png"), mask[y : y + h, x : x + w])
    _write_text(os.path.join(out, "split.csv"), "name,split\n" + "".join(f"{n},{t[0]}\n" for n, t in zip(names, tiles)))
    _write_text(os.path.join(out, "README.txt"), _nuclei_readme(tile, train_stride))
    return _summary(out, tiles, labels > 0)


def nuclei_tiles(shape: Tuple[int, int], tile: int, train_stride: int) -> List[Tile]:
    """Tile rectangles: train tiles inside x < 384 (stride `train_stride`, last row/column flush
    with the border so everything is covered); valid tiles tile×min(tile, 128) covering x ≥ 384."""
    if tile not in TILE_SIZES:
        raise PodiumError(f"--tile {tile} is not supported; expected one of {', '.join(map(str, TILE_SIZES))}")
    if not 8 <= train_stride <= tile:
        raise PodiumError(f"--train-stride {train_stride} must be between 8 and the tile size {tile}")
    height, width = shape
    train = [("train", y, x, tile, tile) for y in _starts(height, tile, train_stride) for x in _starts(VALID_X0, tile, train_stride)]
    valid_width = min(tile, width - VALID_X0)
    valid = [("valid", y, x, tile, valid_width) for y in range(0, height, tile) for x in range(VALID_X0, width, valid_width)]
    return train + valid


def _starts(length: int, tile: int, stride: int) -> List[int]:
    starts = list(range(0, length - tile + 1, stride))
    return starts if starts[-1] == length - tile else starts + [length - tile]


def _tile_name(tile: Tile) -> str:
    split, y, x, _, _ = tile
    return f"{split}_y{y:03d}_x{x:03d}"


def _read_stardist_nuclei() -> Tuple[np.ndarray, np.ndarray]:
    """The image and instance labels from the stardist wheel, read as files (never imported)."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise PodiumError("the nuclei sample needs the stardist wheel: pip install --no-deps stardist==0.9.2")
    folder = os.path.join(spec.submodule_search_locations[0], "data", "images")
    paths = [os.path.join(folder, f) for f in ("img2d.tif", "mask2d.tif")]
    for path in paths:
        if not os.path.isfile(path):
            raise PodiumError(f"sample file {path} is missing; expected stardist==0.9.2 with its data folder")
    return tifffile.imread(paths[0]), tifffile.imread(paths[1])


def _prepare_folders(out, keep: set) -> None:
    """Create the folders and remove tiles of an earlier run with other options (only files named like ours)."""
    for sub in ("images", "masks"):
        folder = os.path.join(out, sub)
        os.makedirs(folder, exist_ok=True)
        for file_name in os.listdir(folder):
            if _TILE_NAME.match(file_name) and file_name[:-4] not in keep:
                os.remove(os.path.join(folder, file_name))


def _write_png(path: str, array: np.ndarray) -> None:
    """Lossless PNG keeping the dtype (uint16 stays 16-bit); same array → same bytes."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise PodiumError(f"cannot encode {path} as PNG")
    with open(path, "wb") as handle:
        handle.write(data.tobytes())


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _summary(out, tiles: List[Tile], foreground: np.ndarray) -> Dict:
    counts = {s: sum(t[0] == s for t in tiles) for s in ("train", "valid")}
    fractions = {s: float(np.mean([foreground[y : y + h, x : x + w].mean() for t_s, y, x, h, w in tiles if t_s == s])) for s in counts}
    return {"out": str(out), "tile": tiles[0][3], "counts": counts, "foreground": {"image": float(foreground.mean()), **fractions}}


def _nuclei_readme(tile: int, train_stride: int) -> str:
    return f"""podium sample "nuclei" (written by: podium samples nuclei --tile {tile} --train-stride {train_stride})

Source: one fluorescence microscopy image of cell nuclei (512x512, uint16) with manual
instance annotation (125 nuclei) from the 2018 Data Science Bowl (stage 1 training set),
as redistributed in the stardist Python package 0.9.2 (stardist/data/images/img2d.tif, mask2d.tif).
Licence: BSD-3-Clause (stardist); the DSB2018 data is from the Broad Bioimage Benchmark
Collection (BBBC038, Caicedo et al., Nature Methods 2019).

Files:
  images/NAME.png  16-bit greyscale PNG, raw intensities (max about 235: use percentile normalisation)
  masks/NAME.png   8-bit PNG, 0 = background, 255 = nucleus (binary: num_classes 1)
  split.csv        name,split (train / valid)

Split rule (spatial, so no validation pixel is ever seen in training):
  valid: the right-most quarter of the image (x >= {VALID_X0}), cut into non-overlapping
         tiles {tile} tall and {min(tile, 512 - VALID_X0)} wide;
  train: {tile}x{tile} tiles lying entirely in x < {VALID_X0}, stride {train_stride} (the last row and
         column of tiles are flush with the border).
NAME = SPLIT_yYYY_xXXX, the tile's top-left corner in the source image.
"""


SAMPLES = {
    "nuclei": Sample("DSB2018 fluorescence nuclei, 512x512 uint16, binary masks, spatial train/valid split (BSD-3)", write_nuclei),
}
