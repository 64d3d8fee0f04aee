"""Probability maps on disk: 8-bit PNGs, value = round(p × 255), one folder per run.

Layout of a folder written by `write_probability_map`:

    DIR/classes.json        {"classes": [...], "scale": 255}: the channel order
    DIR/NAME.png            one class (binary): grey PNG
    DIR/CLASS/NAME.png      several classes: one sub-folder per class, named as the class
    DIR/_presence/NAME.json {"presence": [p per class]}: a presence head's probabilities

8 bits keep the files small and lossless PNG keeps them exact: reading back gives p within
1/510 of what was written (round-to-nearest of p × 255), far below any threshold step worth
tuning. Every PNG is written to a temporary file and renamed, so a killed run never leaves a
truncated map for `podium tune-postprocess` to read. Without classes.json (maps written by
other tools) the layout is inferred: PNGs directly in DIR are one class, else every sub-folder
holding PNGs is a class, in sorted order. 16-bit PNGs are read as value / 65535.
"""

import json
import os
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from podium.errors import PodiumError
from podium.files import write_atomically, write_image
from podium.inference.postprocess import as_numpy
from podium.metrics.segmentation import default_class_names

__all__ = [
    "MANIFEST",
    "write_probability_map",
    "read_probability_map",
    "read_probability_maps",
    "probability_map_names",
    "probability_map_classes",
    "write_presence",
    "read_presence",
    "PRESENCE_FOLDER",
]

MANIFEST = "classes.json"
PRESENCE_FOLDER = "_presence"
SCALE = 255
_OUT_OF_RANGE = 1e-3  # averaging may overshoot 1 by float error; more than this is a bug (logits?)


def write_probability_map(
    folder, name: str, probabilities, class_names: Optional[Sequence[str]] = None
) -> None:
    """Write C×H×W (or H×W) probabilities of image `name` as uint8 PNG(s) into `folder`."""
    probabilities = as_numpy(probabilities).astype(np.float32, copy=False)
    if probabilities.ndim == 2:
        probabilities = probabilities[None]
    if probabilities.ndim != 3:
        raise PodiumError(
            f"probability map of {name} has shape {probabilities.shape}; expected C×H×W or H×W"
        )
    _check_name(name)
    finite = np.isfinite(probabilities).all()
    low, high = (
        (float(probabilities.min()), float(probabilities.max()))
        if probabilities.size
        else (0.0, 0.0)
    )
    if not finite or low < -_OUT_OF_RANGE or high > 1 + _OUT_OF_RANGE:
        raise PodiumError(
            f"probability map of {name} has values {low:g}..{high:g}; "
            "expected probabilities in [0, 1]"
        )
    classes = _class_names(class_names, probabilities.shape[0])
    folder = Path(folder)
    _write_manifest(folder, classes)
    quantised = np.rint(np.clip(probabilities, 0.0, 1.0) * SCALE).astype(np.uint8)
    for c, _class_name in enumerate(classes):
        write_image(_png_path(folder, classes, c, name), quantised[c])


def write_presence(folder, name: str, presence) -> None:
    """Write image `name`'s presence probabilities (one per class) into folder/_presence/."""
    _check_name(name)
    values = [float(v) for v in np.asarray(as_numpy(presence), dtype=np.float64).reshape(-1)]
    path = Path(folder) / PRESENCE_FOLDER / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps({"presence": values})))


def read_presence(folder, name: str) -> Optional[np.ndarray]:
    """float64 presence probabilities of image `name` (one per class); None if not written."""
    path = Path(folder) / PRESENCE_FOLDER / f"{name}.json"
    if not path.is_file():
        return None
    try:
        values = np.asarray(json.loads(path.read_text())["presence"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        raise PodiumError(
            f'cannot read {path}: {error}; expected {{"presence": [probabilities]}}'
        ) from None
    if values.ndim != 1 or not values.size or not np.all((values >= 0) & (values <= 1)):
        raise PodiumError(f"{path} holds {values.tolist()}; expected probabilities in [0, 1]")
    return values


def read_probability_map(folder, name: str) -> np.ndarray:
    """float32 C×H×W in [0, 1] of image `name` (channels in the folder's class order)."""
    folder = Path(folder)
    classes = probability_map_classes(folder)
    channels = []
    for c in range(len(classes)):
        path = _png_path(folder, classes, c, name)
        if not path.is_file():
            raise PodiumError(
                f"probability map {path} does not exist (image {name}, class {classes[c]})"
            )
        array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None or array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
            raise PodiumError(f"probability map {path} is not a readable 8- or 16-bit grey PNG")
        if channels and array.shape != channels[0].shape:
            raise PodiumError(
                f"probability map {path} is {array.shape[1]}×{array.shape[0]} but "
                f"class {classes[0]} of {name} is {channels[0].shape[1]}×{channels[0].shape[0]}; "
                "expected one size per image"
            )
        channels.append(array.astype(np.float32) / np.iinfo(array.dtype).max)
    return np.stack(channels)


def read_probability_maps(folder) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, float32 C×H×W in [0, 1]) for every image in `folder`, in sorted name order."""
    names = probability_map_names(folder)  # checks the folder now, not at the first next()
    return ((name, read_probability_map(folder, name)) for name in names)


def probability_map_names(folder) -> List[str]:
    """Sorted image names of a probability-map folder; every class must have every image."""
    folder = Path(folder)
    classes = probability_map_classes(folder)
    per_class = [set(_pngs(_class_folder(folder, classes, c))) for c in range(len(classes))]
    names = sorted(set.union(*per_class))
    if not names:
        raise PodiumError(
            f"probability map folder {folder} holds no PNG maps; "
            "expected NAME.png or CLASS/NAME.png files"
        )
    for c, found in enumerate(per_class):
        missing = [n for n in names if n not in found]
        if missing:
            raise PodiumError(
                f"probability maps of class {classes[c]} in {_class_folder(folder, classes, c)} "
                f"miss {len(missing)} "
                f"image(s): {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
                "expected one map per image and class"
            )
    return names


def probability_map_classes(folder) -> List[str]:
    """Class (channel) names of a probability-map folder: classes.json, else from its layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PodiumError(f"probability map folder {folder} does not exist")
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            classes = json.loads(manifest.read_text())["classes"]
        except (ValueError, KeyError, TypeError) as error:
            raise PodiumError(
                f'cannot read {manifest}: {error}; expected {{"classes": [names]}}'
            ) from None
        if not isinstance(classes, list) or not classes:
            raise PodiumError(
                f"{manifest} has classes {classes!r}; expected a non-empty list of names"
            )
        return [str(c) for c in classes]
    if _pngs(folder):
        return ["foreground"]
    subfolders = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and _pngs(p)
    )
    if not subfolders:
        raise PodiumError(
            f"probability map folder {folder} holds no PNG maps; "
            "expected NAME.png or CLASS/NAME.png files"
        )
    return subfolders


def _class_names(class_names, count: int) -> List[str]:
    if class_names is None:
        return ["foreground"] if count == 1 else default_class_names(count)
    names = [str(c) for c in class_names]
    if len(names) != count:
        raise PodiumError(
            f"class_names lists {len(names)} names {names} for {count} probability channels; "
            "expected one name per channel"
        )
    if len(set(names)) != len(names):
        raise PodiumError(f"class_names {names} has duplicates; expected one folder name per class")
    for n in names:
        if count > 1:
            _check_name(n, "class name")
    return names


def _check_name(name: str, what: str = "image name") -> None:
    text = str(name)
    if not text or text in (".", "..") or text.startswith(".") or "/" in text or os.sep in text:
        raise PodiumError(
            f"{what} {name!r} cannot be a file name; "
            "expected a name without path separators or a leading dot"
        )


def _class_folder(folder: Path, classes: List[str], c: int) -> Path:
    return folder if len(classes) == 1 else folder / classes[c]


def _png_path(folder: Path, classes: List[str], c: int, name: str) -> Path:
    return _class_folder(folder, classes, c) / f"{name}.png"


def _pngs(folder: Path) -> List[str]:
    if not folder.is_dir():
        return []
    return [f[:-4] for f in os.listdir(folder) if f.endswith(".png") and not f.startswith(".")]


def _write_manifest(folder: Path, classes: List[str]) -> None:
    """classes.json, written once; a folder holding maps of other classes is an error."""
    path = folder / MANIFEST
    if path.is_file():
        present = probability_map_classes(folder)
        if present != classes:
            raise PodiumError(
                f"{path} lists classes {present} but these maps have {classes}; "
                "expected an empty folder or the same classes"
            )
        return
    write_atomically(
        path, lambda tmp: tmp.write_text(json.dumps({"classes": classes, "scale": SCALE}, indent=1))
    )
