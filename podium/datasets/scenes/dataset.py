"""Training straight from georeferenced scenes:
`data: {layout: scenes, scenes: scenes.csv, window: 512}`.

`build_scene_datasets` reads scenes.csv (table.py), splits its rows by `split` or `fold` like
split.csv, checks that train and valid regions of a raster are disjoint (windows.py) and
returns {train, valid} SceneDatasets:

* train: `train_windows` random windows per epoch (default: as many as the grid has), drawn
  uniformly or, with probability `positive_p`, centred on a labelled pixel;
* valid: the fixed grid of each valid region (every pixel once).

Items are those of ImageFolderDataset — `image` float32 C×H×W (bands read by window, scaled
and standardised by `normalize`, augmented by the transforms), `mask` (binary: float32 1×H×W
of 0/1; multiclass: int64 H×W class indices) and `name` (SCENE_xCOL_yROW). Mask pixels that are
nodata in the raster, outside it (padding) or outside the row's region hold `ignore_index`
(default 255): give the losses `ignore_index` and the metrics `ignore_value` of the same value.
"""

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.normalize import build_normalizer
from podium.datasets.scenes.rasters import open_raster, read_window
from podium.datasets.scenes.windows import check_split_guard, grid_windows, random_window
from podium.datasets.scenes.table import Scene, load_scenes, read_scenes
from podium.datasets.exclusion import resolve_data_path
from podium.datasets.split import select_names
from podium.datasets.transforms import build_transforms
from podium.errors import PodiumError
from podium.validation import POSITIVE, check_choice, check_int, check_probability, is_int

__all__ = ["SceneDataset", "build_scene_datasets", "window_size"]

LOGGER = logging.getLogger("podium.datasets")


class SceneDataset(Dataset):
    """Windows of scenes: a fixed list (`windows`), or `length` random windows per epoch."""

    def __init__(
        self,
        scenes: Sequence[Scene],
        size: Tuple[int, int],
        windows: Optional[Sequence[Tuple[int, object]]] = None,
        length: Optional[int] = None,
        positive_p: float = 0.5,
        transforms=None,
        normalize=None,
        num_classes: int = 1,
        ignore_index: int = 255,
        all_touched: bool = False,
    ):
        self.scenes = list(scenes)
        self.size = size
        self.windows = None if windows is None else list(windows)
        self.length = len(self.windows) if self.windows is not None else int(length)
        self.positive_p = positive_p
        self.transforms = build_transforms(transforms) if not callable(transforms) else transforms
        self.normalizer = build_normalizer(normalize)
        self.num_classes = num_classes
        self.target = "binary" if num_classes == 1 else "multiclass"
        self.ignore_index = ignore_index
        self.all_touched = all_touched
        self._weights = np.array([s.region.width * s.region.height for s in self.scenes], float)
        self._weights /= self._weights.sum()
        self._sources: Dict[str, object] = {}

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> Tuple[int, object]:
        """(scene index, rasterio Window) of item `index` (random ones are drawn anew each call)."""
        if self.windows is not None:
            return self.windows[index]
        rng = np.random.default_rng(np.random.randint(2**31))  # seeded by podium's seeding
        which = int(rng.choice(len(self.scenes), p=self._weights))
        return which, random_window(self.scenes[which], self.size, rng, self.positive_p)

    def read(self, which: int, window) -> Tuple[np.ndarray, np.ndarray]:
        """Raw (image H×W×C, mask H×W with ignore_index) of one window, before any transform."""
        scene = self.scenes[which]
        src = self._source(scene.image)
        image, valid = read_window(src, window, scene.bands)
        valid &= _inside_region(window, scene.region, valid.shape)
        image[~valid] = 0
        from rasterio.windows import transform as window_transform

        classes = scene.labels.rasterize(
            window_transform(window, src.transform), valid.shape, self.all_touched
        )
        if self.target == "binary":
            classes = (classes > 0).astype(np.uint8)
        dtype = np.uint8 if 0 <= self.ignore_index <= 255 and self.num_classes <= 256 else np.int32
        mask = classes.astype(dtype)
        mask[~valid] = self.ignore_index
        return image, mask

    def __getitem__(self, index: int) -> Dict[str, object]:
        which, window = self.window(index)
        image, mask = self.read(which, window)
        image = self.normalizer.scale(image)
        if self.transforms is not None:
            out = self.transforms(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image = self.normalizer.standardize(image)
        name = f"{self.scenes[which].name}_x{int(window.col_off)}_y{int(window.row_off)}"
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": self._mask_tensor(mask),
            "name": name,
        }

    def _mask_tensor(self, mask: np.ndarray) -> torch.Tensor:
        if self.target == "multiclass":
            return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None])

    def _source(self, path: str):
        """One open raster per file and process (DataLoader workers open their own)."""
        if path not in self._sources:
            self._sources[path] = open_raster(path)
        return self._sources[path]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sources"] = {}
        return state


def build_scene_datasets(
    scenes: str,
    window=512,
    layout: str = "scenes",
    root: Optional[str] = None,
    fold: Optional[int] = None,
    train_split: str = "train",
    valid_split: str = "valid",
    train_windows: Optional[int] = None,
    positive_p: float = 0.5,
    bands: Optional[Sequence[int]] = None,
    num_classes: int = 1,
    class_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    ignore_index: int = 255,
    all_touched: bool = False,
    invalid_geometries: str = "repair",
    normalize=None,
    train_transforms=None,
    valid_transforms=None,
    in_channels: Optional[int] = None,
) -> "OrderedDict[str, SceneDataset]":
    """{train, valid} SceneDatasets from a scenes table (see the module docstring).

    `scenes` is read relative to `root` if given; `window` is a size or [height, width];
    `bands` are 1-based; `class_names` (with `class_column`) name the classes, index 0 being
    the background.
    """
    check_choice(layout, ("scenes",), "layout")
    size = window_size(window)
    num_classes = check_int(num_classes, "num_classes", 1, f"{POSITIVE} (1 for a binary mask)")
    positive_p = check_probability(positive_p, "positive_p")
    if not is_int(ignore_index):
        raise PodiumError(f"ignore_index must be an integer like 255, got {ignore_index!r}")
    _check_class_names(class_names, num_classes)
    path = resolve_data_path(root, scenes) if root is not None else str(scenes)
    table = read_scenes(path)
    names = _split_names(table, fold, train_split, valid_split)
    options = dict(
        bands=bands,
        class_column=class_column,
        class_names=class_names,
        num_classes=num_classes,
        invalid_geometries=invalid_geometries,
    )
    chosen = {}
    for key in ("train", "valid"):
        rows = table[table["name"].isin(names[key])]
        rows.attrs.update(table.attrs)
        if rows.empty:
            raise PodiumError(
                f"the {key} selection of scenes file {path} is empty (fold={fold}); expected at "
                f"least one scene"
            )
        chosen[key] = load_scenes(rows, **options)
    check_split_guard(chosen["train"], chosen["valid"], path)
    _check_channels(chosen["train"] + chosen["valid"], in_channels, path)
    grid = {key: _grid(scenes_, size) for key, scenes_ in chosen.items()}
    common = dict(
        normalize=normalize,
        num_classes=num_classes,
        ignore_index=int(ignore_index),
        all_touched=all_touched,
    )
    length = len(grid["train"]) if train_windows is None else train_windows
    length = check_int(length, "train_windows", 1, POSITIVE)
    return OrderedDict(
        train=SceneDataset(
            chosen["train"],
            size,
            length=length,
            positive_p=positive_p,
            transforms=train_transforms,
            **common,
        ),
        valid=SceneDataset(
            chosen["valid"], size, windows=grid["valid"], transforms=valid_transforms, **common
        ),
    )


def window_size(window) -> Tuple[int, int]:
    """(height, width) from `window: 512` or `window: [height, width]`."""
    if is_int(window):
        window = [window, window]
    if (
        not isinstance(window, (list, tuple))
        or len(window) != 2
        or not all(is_int(v) and v > 0 for v in window)
    ):
        raise PodiumError(f"window must be a size like 512 or [height, width], got {window!r}")
    return int(window[0]), int(window[1])


def _grid(scenes: Sequence[Scene], size) -> List[Tuple[int, object]]:
    return [(i, w) for i, scene in enumerate(scenes) for w in grid_windows(scene.region, size)]


def _split_names(table, fold, train_split, valid_split) -> Dict[str, List[str]]:
    """Like the image-folder builder: by split, or (fold) valid = fold k, train = the rest."""
    if fold is None:
        return {
            "train": select_names(table, split=train_split),
            "valid": select_names(table, split=valid_split),
        }
    pool = table
    if "split" in table:
        select_names(table, split=train_split)
        pool = table[table["split"] == str(train_split)]
        pool.attrs.update(table.attrs)
    return {
        "train": select_names(pool, exclude_fold=fold),
        "valid": select_names(pool, fold=fold),
    }


def _check_class_names(class_names, num_classes: int) -> None:
    if class_names is None:
        return
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise PodiumError(f"class_names must be a list of class names, got {class_names!r}")
    if len(class_names) != max(num_classes, 2):
        raise PodiumError(
            f"class_names lists {len(class_names)} names but num_classes is {num_classes}; "
            f"expected {max(num_classes, 2)} names, the background first"
        )


def _check_channels(scenes: Sequence[Scene], in_channels, path: str) -> None:
    counts = {len(s.bands) for s in scenes}
    if len(counts) > 1:
        raise PodiumError(
            f"scenes of {path} give different band counts {sorted(counts)}; expected the same "
            f"(select them with bands: [...])"
        )
    if in_channels is not None and counts != {in_channels}:
        raise PodiumError(
            f"the scenes of {path} have {counts.pop()} band(s) but in_channels is {in_channels}; "
            f"expected {in_channels} (select them with bands: [...])"
        )


def _inside_region(window, region, shape) -> np.ndarray:
    rows = np.arange(shape[0]) + int(window.row_off)
    cols = np.arange(shape[1]) + int(window.col_off)
    r0, c0 = int(region.row_off), int(region.col_off)
    inside_rows = (rows >= r0) & (rows < r0 + int(region.height))
    inside_cols = (cols >= c0) & (cols < c0 + int(region.width))
    return inside_rows[:, None] & inside_cols[None]
