"""A segmentation dataset over a folder of images and masks (or a Kaggle CSV of RLE masks).

Layouts (`layout:`):
    folders        root/IMAGE_DIR/NAME.ext + root/MASK_DIR/NAME.png   (defaults images/, masks/)
    side_by_side   NAME.ext + NAME_mask.png in one folder: root/IMAGE_DIR if it exists, else root
                   (the suffix is `mask_suffix`; files whose name ends with it are never images)
    auto           (default) folders if root/IMAGE_DIR is a folder other than root (or root itself
                   has a MASK_DIR folder), else side_by_side
With `masks_csv:` the masks come from a run-length-encoded CSV instead (see csv_rle.py).

Targets (`target:`; by default binary for num_classes 1, multiclass otherwise, multilabel for a
CSV with classes), as `mask` in the item:
    binary       float32 1×H×W of 0/1 (any mask value > 0 is foreground)
    multiclass   int64 H×W class indices, checked to be < num_classes
    multilabel   float32 C×H×W of 0/1, C = num_classes: a C-channel mask file (TIFF/PNG, H×W×C or
                 C×H×W, value > 0 = on) or a CSV with one row per image and class
    regression   float32 C×H×W of the mask file's values (e.g. a float TIFF), C = num_classes; no
                 class check

Order of operations per item, chosen so augmentation behaves the same for 8- and 16-bit data:
read raw pixels → select channels → scale to float32 [0, 1] (`Normalizer.scale`) → augment image
and mask jointly (albumentations `image=`, `mask=`) → mean/std (`Normalizer.standardize`) →
tensors. Brightness/contrast transforms thus see [0, 1] floats whatever the bit depth; the flip
side is that transforms needing uint8 input (CLAHE, JPEG compression …) are not supported.

Everything checkable without decoding images (folders, files, names) is checked on
construction, so a bad data block fails at start-up and not after an epoch. What only decoding
reveals (a corrupt file, a mask of another size, a class value ≥ num_classes, a wrong channel
count, an RLE overrunning its image) is a PodiumError naming the file — or, with
`on_bad_sample: skip`, a warning line (once per file) and the next good sample in its place.
`dataset.skipped` counts the skipped files; the flags live in shared memory, so the count
includes what DataLoader worker processes found, and it is printed to stderr when the
process exits.
"""

import atexit
import logging
import os
import weakref
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.csv_rle import RleTable
from podium.datasets.exclusion import resolve_data_path
from podium.datasets.normalize import build_normalizer
from podium.datasets.readers import IMAGE_EXTENSIONS, MASK_EXTENSIONS, read_image, read_mask
from podium.datasets.transforms import build_transforms
from podium.errors import PodiumError
from podium.validation import POSITIVE, check_choice, check_int, is_int

__all__ = [
    "ImageFolderDataset",
    "FolderLayout",
    "LAYOUTS",
    "TARGETS",
    "ON_BAD_SAMPLE",
    "resolve_layout",
    "index_images",
    "index_masks",
    "index_folder",
]

LAYOUTS = ("auto", "folders", "side_by_side")
TARGETS = ("binary", "multiclass", "multilabel", "regression")
ON_BAD_SAMPLE = ("error", "skip")
LOGGER = logging.getLogger("podium.datasets")


class FolderLayout(NamedTuple):
    kind: str  # folders | side_by_side
    image_folder: str
    mask_folder: str
    mask_suffix: str  # "" for folders


class ImageFolderDataset(Dataset):
    """Items: `image` float32 C×H×W, `mask` (see the targets above; absent without masks),
    `name`, and one float32 tensor of shape (1,) per key of `columns` ({key: one value per
    name}, e.g. a split-file column for an aux head)."""

    def __init__(
        self,
        root,
        names: Sequence[str],
        transforms=None,
        normalize=None,
        channels: Optional[Sequence[int]] = None,
        num_classes: int = 1,
        image_dir: str = "images",
        mask_dir: str = "masks",
        with_masks: bool = True,
        layout: str = "auto",
        mask_suffix: str = "_mask",
        target: Optional[str] = None,
        masks_csv=None,
        class_names: Optional[Sequence[str]] = None,
        in_channels: Optional[int] = None,
        on_bad_sample: str = "error",
        columns: Optional[Dict[str, Sequence[float]]] = None,
    ):
        self.root = str(root)
        if not os.path.isdir(self.root):
            raise PodiumError(
                f"data folder {self.root} does not exist (expected images/ and masks/ inside)"
            )
        self.names = [str(n) for n in names]
        self.columns = {
            str(key): torch.tensor(values, dtype=torch.float32).view(-1, 1)
            for key, values in (columns or {}).items()
        }
        self.transforms = build_transforms(transforms) if not callable(transforms) else transforms
        self.normalizer = build_normalizer(normalize)
        self.channels = _check_channels(channels)
        self.num_classes = check_int(
            num_classes, "num_classes", 1, f"{POSITIVE} (1 for a binary mask)"
        )
        self.in_channels = _check_in_channels(in_channels, self.channels)
        self.on_bad_sample = check_choice(on_bad_sample, ON_BAD_SAMPLE, "on_bad_sample")
        self.with_masks = bool(with_masks)
        if self.channels is not None:
            self.normalizer.check_channels(len(self.channels))
        self.rle = (
            _load_table(self.root, masks_csv, class_names)
            if (masks_csv is not None and self.with_masks)
            else None
        )
        self.target = _resolve_target(target, self.num_classes, self.rle)
        self.class_names = _check_class_names(class_names, self.rle, self.num_classes, self.target)
        self._bad = _shared_flags(len(self.names))
        self._reasons: Dict[int, str] = {}
        self.layout = resolve_layout(self.root, layout, image_dir, mask_dir, mask_suffix)
        self.image_paths = self._find_images()
        self.mask_paths = self._find_masks() if (self.with_masks and self.rle is None) else None
        if self.on_bad_sample == "skip":
            _report_at_exit(self)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if self.on_bad_sample == "error":
            return self._load(index)
        count = len(self.names)
        for step in range(count):
            i = (index + step) % count
            if self._bad[i]:
                continue
            try:
                return self._load(i)
            except PodiumError as error:
                self._mark_bad(i, str(error))
        last = self._reasons.get(max(self._reasons), "") if self._reasons else ""
        raise PodiumError(
            f"all {count} samples of {self.root} are bad (on_bad_sample: skip); "
            f"expected at least one good sample. Last: {last}"
        )

    @property
    def skipped(self) -> int:
        """Number of distinct bad samples skipped so far (in this process and its DataLoader
        workers)."""
        return int(self._bad.sum())

    @property
    def skipped_names(self) -> List[str]:
        return [self.names[i] for i in torch.nonzero(self._bad).flatten().tolist()]

    def skipped_summary(self) -> str:
        """One line: how many samples were skipped and which (empty if none)."""
        names = self.skipped_names
        if not names:
            return ""
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        return (
            f"podium: {len(names)} of {len(self.names)} samples in {self.root} were skipped as "
            f"bad (on_bad_sample: skip): {shown}"
        )

    # ------------------------------------------------------------------ loading
    def _load(self, index: int) -> Dict[str, object]:
        name = self.names[index]
        if self.image_paths[index] is None or (
            self.mask_paths is not None and self.mask_paths[index] is None
        ):
            raise PodiumError(self._reasons.get(index, f"sample {name} has no image or mask file"))
        image = self.normalizer.scale(self._read_image(index))
        mask = self._read_mask(index, image.shape[:2]) if self.with_masks else None
        if mask is not None and mask.shape[:2] != image.shape[:2]:
            raise PodiumError(
                f"mask {self.mask_paths[index]} is {mask.shape[1]}×{mask.shape[0]} "
                f"but image {self.image_paths[index]} "
                f"is {image.shape[1]}×{image.shape[0]}; expected the same size"
            )
        if self.transforms is not None:
            image, mask = _augment(self.transforms, image, mask)
        image = self.normalizer.standardize(image)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "name": name,
        }
        if mask is not None:
            item["mask"] = self._mask_tensor(mask)
        for key, values in self.columns.items():
            item[key] = values[index]
        return item

    def _mark_bad(self, index: int, reason: str) -> None:
        """Flag a sample (shared with workers) and log it once."""
        if not self._bad[index]:
            self._bad[index] = 1
            LOGGER.warning(f"podium: warning: skipping bad sample {self.names[index]}: {reason}")
        self._reasons[index] = reason

    def _find_images(self) -> List[Optional[str]]:
        """Image path per name; all names missing an image are reported at once."""
        if not self.names:
            raise PodiumError(f"no image names were given for data folder {self.root}")
        folder = self.layout.image_folder
        index = index_images(self.layout)
        missing = [n for n in self.names if n not in index]
        if missing:
            message = (
                f"{len(missing)} name(s) have no image file "
                f"in {folder}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} "
                f"(expected NAME with extension {'/'.join(IMAGE_EXTENSIONS)})"
            )
            if self.on_bad_sample == "error" or len(missing) == len(self.names):
                raise PodiumError(message)
            for i, n in enumerate(self.names):
                if n not in index:
                    self._mark_bad(
                        i,
                        f"image {n} not found in {folder}; expected NAME with "
                        f"extension {'/'.join(IMAGE_EXTENSIONS)}",
                    )
        return [os.path.join(folder, index[n]) if n in index else None for n in self.names]

    def _find_masks(self) -> List[Optional[str]]:
        """Mask path per name; the first image without a mask is named with the path expected."""
        folder, suffix = self.layout.mask_folder, self.layout.mask_suffix
        index = index_masks(self.layout)
        missing = [
            i
            for i, n in enumerate(self.names)
            if n not in index and self.image_paths[i] is not None
        ]
        if missing and self.on_bad_sample == "skip" and len(missing) < len(self.names):
            for i in missing:
                expected = os.path.join(folder, self.names[i] + suffix + ".png")
                self._mark_bad(i, f"image {self.image_paths[i]} has no mask; expected {expected}")
        elif missing:
            first = missing[0]
            others = f" ({len(missing) - 1} more images have no mask)" if len(missing) > 1 else ""
            raise PodiumError(
                f"image {self.image_paths[first]} has no mask; expected "
                f"{os.path.join(folder, self.names[first] + suffix + '.png')}{others}"
            )
        return [os.path.join(folder, index[n]) if n in index else None for n in self.names]

    def _read_image(self, index: int) -> np.ndarray:
        path = self.image_paths[index]
        image = read_image(path)
        if self.channels is not None:
            if max(self.channels) >= image.shape[-1]:
                raise PodiumError(
                    f"channels {self.channels} requested but image {path} has "
                    f"{image.shape[-1]} channel(s) (indices 0..{image.shape[-1] - 1})"
                )
            image = np.ascontiguousarray(image[..., self.channels])
        if self.in_channels is not None and image.shape[-1] != self.in_channels:
            selected = (
                f" after selecting channels {self.channels}" if self.channels is not None else ""
            )
            raise PodiumError(
                f"image {path} has {image.shape[-1]} channel(s){selected} but "
                f"in_channels is {self.in_channels}; expected {self.in_channels} "
                "channel(s) (set channels: [...] to pick them)"
            )
        return image

    def _read_mask(self, index: int, shape) -> np.ndarray:
        """Mask ready for albumentations: uint8 0/1 H×W (binary) or H×W×C (multilabel),
        uint8/int32 class indices (multiclass), float32 H×W×C (regression)."""
        if self.rle is not None:
            mask = self.rle.mask(self.names[index], shape)
            return mask if self.target == "multilabel" else (mask > 0).astype(np.uint8)
        path = self.mask_paths[index]
        if self.target == "binary":
            return (read_mask(path) > 0).astype(np.uint8)
        if self.target == "multiclass":
            mask = read_mask(path)
            if mask.min() < 0 or mask.max() >= self.num_classes:
                raise PodiumError(
                    f"mask {path} has values {int(mask.min())}..{int(mask.max())} but "
                    f"num_classes is {self.num_classes}; expected class indices "
                    f"0..{self.num_classes - 1}"
                )
            return mask.astype(np.uint8 if self.num_classes <= 256 else np.int32)
        mask = _channels_last(read_image(path), self.num_classes)
        if mask.shape[-1] != self.num_classes:
            per = (
                "channel per class" if self.target == "multilabel" else "target channel per output"
            )
            raise PodiumError(
                f"mask {path} has {mask.shape[-1]} channel(s) but num_classes is "
                f"{self.num_classes}; expected one {per} ({self.target} target)"
            )
        if self.target == "multilabel":
            return (mask > 0).astype(np.uint8)
        return mask.astype(np.float32)

    def _mask_tensor(self, mask: np.ndarray) -> torch.Tensor:
        if self.target == "multiclass":
            return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        if mask.ndim == 2:
            return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None])
        return torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1), dtype=np.float32))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_reasons"] = {}  # per process; the shared flags travel
        return state


def resolve_layout(
    root,
    layout: str = "auto",
    image_dir: str = "images",
    mask_dir: str = "masks",
    mask_suffix: str = "_mask",
) -> FolderLayout:
    """Where images and masks are for this `layout` (see the module docstring)."""
    layout = check_choice(layout, LAYOUTS, "layout")
    root = str(root)
    image_folder = os.path.join(root, image_dir)
    if layout == "auto":
        is_root = os.path.realpath(image_folder) == os.path.realpath(root)
        inside = os.path.isdir(image_folder) and (
            not is_root or os.path.isdir(os.path.join(root, mask_dir))
        )
        layout = "folders" if inside else "side_by_side"
    if layout == "folders":
        return FolderLayout("folders", image_folder, os.path.join(root, mask_dir), "")
    if not isinstance(mask_suffix, str) or not mask_suffix:
        raise PodiumError(
            f'mask_suffix must be a non-empty string like "_mask", got {mask_suffix!r}'
        )
    folder = image_folder if os.path.isdir(image_folder) else root
    return FolderLayout("side_by_side", folder, folder, mask_suffix)


def index_images(layout: FolderLayout) -> Dict[str, str]:
    """{name: file name} of the images (mask files of a side-by-side folder left out)."""
    if layout.kind == "side_by_side" and not os.path.isdir(layout.image_folder):
        raise PodiumError(
            f"image folder {layout.image_folder} does not exist; expected a data folder with "
            f"images/ (and masks/), or images side by side with their masks"
        )
    index = index_folder(
        layout.image_folder, IMAGE_EXTENSIONS, "image", skip_suffix=layout.mask_suffix or None
    )
    if not index and layout.kind == "side_by_side":
        raise PodiumError(
            f"no image files in {layout.image_folder}; expected images/NAME.ext + masks/NAME.png, "
            f"or NAME.ext + NAME{layout.mask_suffix}.png side by side"
        )
    return index


def index_masks(layout: FolderLayout) -> Dict[str, str]:
    """{name: mask file name}: masks/NAME.png, or NAME{suffix}.png next to the image."""
    if layout.kind == "folders":
        return index_folder(layout.mask_folder, MASK_EXTENSIONS, "mask")
    suffix = layout.mask_suffix
    found = index_folder(layout.mask_folder, MASK_EXTENSIONS, "mask")
    return {
        stem[: -len(suffix)]: f
        for stem, f in found.items()
        if stem.endswith(suffix) and len(stem) > len(suffix)
    }


def index_folder(
    folder: str, extensions: Sequence[str], kind: str, skip_suffix: Optional[str] = None
) -> Dict[str, str]:
    """{stem: file name} for files with the given extensions; ambiguous stems are an error.
    Stems ending with `skip_suffix` (mask files next to images) are left out."""
    if not os.path.isdir(folder):
        raise PodiumError(
            f"{kind} folder {folder} does not exist (expected NAME{extensions[0]} files inside)"
        )
    index: Dict[str, str] = {}
    rank = {ext: i for i, ext in enumerate(extensions)}
    for file_name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file_name)
        if ext.lower() not in rank or (skip_suffix and stem.endswith(skip_suffix)):
            continue
        if stem in index and kind == "image":
            raise PodiumError(
                f"two image files for one name in {folder}: {index[stem]} and {file_name}"
            )
        if stem not in index or rank[ext.lower()] < rank[os.path.splitext(index[stem])[1].lower()]:
            index[stem] = file_name
    return index


def _augment(transforms, image: np.ndarray, mask: Optional[np.ndarray]):
    """Apply one albumentations call to image and mask together, so geometry stays aligned."""
    if mask is None:
        return transforms(image=image)["image"], None
    out = transforms(image=image, mask=mask)
    return out["image"], out["mask"]


def _check_channels(channels) -> Optional[List[int]]:
    if channels is None:
        return None
    if is_int(channels):
        channels = [channels]
    if (
        not isinstance(channels, (list, tuple))
        or not channels
        or not all(is_int(c) and c >= 0 for c in channels)
    ):
        raise PodiumError(
            f"channels must be a non-empty list of channel indices like [0, 2], got {channels!r}"
        )
    return list(channels)


def _channels_last(array: np.ndarray, channels: int) -> np.ndarray:
    """read_image gives H×W×C; a C×H×W file whose first axis is `channels` is moved to the end."""
    if array.ndim == 3 and array.shape[-1] != channels and array.shape[0] == channels:
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 4 and array.shape[0] == channels and array.shape[-1] == 1:
        array = np.moveaxis(array[..., 0], 0, -1)
    return np.ascontiguousarray(array)


def _check_in_channels(in_channels, channels) -> Optional[int]:
    if in_channels is None:
        return None
    check_int(in_channels, "in_channels", 1, POSITIVE)
    if channels is not None and len(channels) != in_channels:
        raise PodiumError(
            f"channels {channels} selects {len(channels)} channel(s) but in_channels "
            f"is {in_channels}; expected as many"
        )
    return in_channels


def _load_table(root: str, masks_csv, class_names) -> RleTable:
    if isinstance(masks_csv, RleTable):
        return masks_csv
    return RleTable(resolve_data_path(root, masks_csv), class_names=class_names)


def _resolve_target(target, num_classes: int, table: Optional[RleTable]) -> str:
    if target is None:
        if table is not None and table.multilabel:
            target = "multilabel"
        else:
            target = "binary" if num_classes == 1 else "multiclass"
    target = check_choice(target, TARGETS, "target")
    if target == "binary" and num_classes != 1:
        raise PodiumError(
            f"target binary needs num_classes 1, got {num_classes}; "
            "for index masks use target: multiclass"
        )
    if target == "multiclass" and num_classes < 2:
        raise PodiumError(
            "target multiclass needs num_classes >= 2 (background counts as a class); "
            "for one class use target: binary"
        )
    if table is not None:
        if target in ("multiclass", "regression"):
            raise PodiumError(
                f"masks_csv {table.path} gives binary or multilabel masks; "
                f"target {target} is not supported with it"
            )
        if target == "multilabel" and table.num_channels != num_classes:
            raise PodiumError(
                f"masks_csv {table.path} has {table.num_channels} class(es) "
                f"({', '.join(table.class_names)}) but num_classes is {num_classes}; "
                f"expected num_classes {table.num_channels} (or list the classes in class_names)"
            )
        if target == "binary" and table.multilabel and table.num_channels != 1:
            raise PodiumError(
                f"masks_csv {table.path} has {table.num_channels} classes; use target: "
                f"multilabel with num_classes {table.num_channels}"
            )
    return target


def _check_class_names(
    class_names, table: Optional[RleTable], num_classes: int, target: str
) -> Optional[List[str]]:
    if table is not None:
        return list(table.class_names)
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise PodiumError(f"class_names must be a list of class names, got {class_names!r}")
    if len(class_names) != num_classes:
        raise PodiumError(
            f"class_names lists {len(class_names)} names but num_classes is {num_classes}; "
            "expected one name per class"
        )
    return [str(c) for c in class_names]


def _shared_flags(count: int) -> torch.Tensor:
    """One byte per sample in shared memory, so DataLoader workers' bad-sample flags reach the
    parent."""
    flags = torch.zeros(max(count, 1), dtype=torch.uint8)
    try:
        flags.share_memory_()
    except (RuntimeError, OSError):  # no /dev/shm: counts stay per process
        pass
    return flags


def _report_at_exit(dataset: ImageFolderDataset) -> None:
    """Print the skipped-sample summary when the creating process exits (not in workers)."""
    ref, pid = weakref.ref(dataset), os.getpid()

    def report():
        ds = ref()
        if ds is not None and os.getpid() == pid and ds.skipped:
            import sys

            sys.stderr.write(ds.skipped_summary() + "\n")

    atexit.register(report)
