"""The real tree-crown boxes shipped in the deepforest wheel (NEON aerial RGB, MIT code).

`pip install --no-deps deepforest==2.1.0` ships four annotated images in `deepforest/data`:
two large Yellowstone scenes (2299×2472 and 1249×1035, 574 + 279 boxes, all "Tree") and two
400×400 tiles (OSBS_029: 61 "Tree"; SOAP_061: 9 "Alive" + 28 "Dead"), 951 hand-drawn boxes in
all, as Pascal VOC XML files next to the images they name. The package is never imported (it
would pull torch-lightning, GDAL, …): the files are read from its folder.

    for item in read_deepforest_annotations():
        image = read_image(item.image_path)     # H×W×3 uint8 RGB
        item.boxes                              # N×4 float32 xyxy, pixels, as stored in the XML
        item.labels                             # N names from CLASSES

Coordinates are kept exactly as written in the XML (x to the right, y down, xmax/ymax the
right/bottom edge); every box is checked to lie inside the image it belongs to. The tasks that
train on these scenes split each one alike (`split_region`): the right-most part is validation.
"""

import importlib.util
import os
import xml.etree.ElementTree as ElementTree
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from podium.datasets.readers import read_image
from podium.errors import PodiumError

__all__ = [
    "CLASSES",
    "SPLITS",
    "ForestImage",
    "deepforest_folder",
    "read_deepforest_annotations",
    "read_scene",
    "read_voc_boxes",
    "split_region",
    "window_to_scene",
]

CLASSES = ("Tree", "Alive", "Dead")
SPLITS = ("train", "valid")


class ForestImage(NamedTuple):
    image_path: str
    boxes: np.ndarray  # N×4 float32, xyxy pixels
    labels: List[str]
    size: Tuple[int, int]  # (height, width) from the XML


def deepforest_folder() -> str:
    """`deepforest/data` of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        raise PodiumError(
            "the deepforest tree-crown data needs the deepforest wheel: "
            "pip install --no-deps deepforest==2.1.0"
        )
    folder = os.path.join(spec.submodule_search_locations[0], "data")
    if not os.path.isdir(folder):
        raise PodiumError(f"{folder} is missing; expected deepforest==2.1.0 with its data folder")
    return folder


def read_deepforest_annotations(folder: Optional[str] = None) -> List[ForestImage]:
    """Every annotated image in `folder` (default: the wheel's data folder), sorted by XML name."""
    folder = folder or deepforest_folder()
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(".xml"))
    if not names:
        raise PodiumError(f"no Pascal VOC .xml annotation files in {folder}")
    return [read_voc_boxes(os.path.join(folder, name)) for name in names]


def read_voc_boxes(xml_path: str) -> ForestImage:
    """One Pascal VOC annotation file: the image it names (same folder) and its boxes."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise PodiumError(f"cannot read Pascal VOC annotation {xml_path}: {error}") from error
    image_path = os.path.join(os.path.dirname(xml_path), _text(root, "filename", xml_path))
    if not os.path.isfile(image_path):
        raise PodiumError(f"{xml_path} names image {image_path}, which does not exist")
    height, width = (int(_number(root, f"size/{key}", xml_path)) for key in ("height", "width"))
    boxes, labels = [], []
    for obj in root.iter("object"):
        label = _text(obj, "name", xml_path)
        box = [_number(obj, f"bndbox/{key}", xml_path) for key in ("xmin", "ymin", "xmax", "ymax")]
        if label not in CLASSES:
            raise PodiumError(
                f"{xml_path}: object class {label!r} is unknown; "
                f"expected one of {', '.join(CLASSES)}"
            )
        if not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
            raise PodiumError(
                f"{xml_path}: box {box} of {label!r} is empty or outside the {width}×{height} image"
            )
        boxes.append(box)
        labels.append(label)
    return ForestImage(
        image_path, np.asarray(boxes, np.float32).reshape(-1, 4), labels, (height, width)
    )


def _text(node, path: str, xml_path: str) -> str:
    found = node.find(path)
    if found is None or not (found.text or "").strip():
        raise PodiumError(f"{xml_path}: missing <{path}>; expected a Pascal VOC annotation")
    return found.text.strip()


def _number(node, path: str, xml_path: str) -> float:
    text = _text(node, path, xml_path)
    try:
        return float(text)
    except ValueError:
        raise PodiumError(f"{xml_path}: <{path}> is {text!r}; expected a number") from None


def read_scene(item: ForestImage) -> np.ndarray:
    """The H×W×3 RGB image of an annotated scene, checked against its annotation's size."""
    image = read_image(item.image_path)
    if image.shape[:2] != tuple(item.size):
        raise PodiumError(
            f"{item.image_path} is {image.shape[1]}×{image.shape[0]}, its annotation says "
            f"{item.size[1]}×{item.size[0]}"
        )
    return image[..., :3]


def split_region(width: int, split: str, valid_fraction: float) -> Tuple[int, int]:
    """[start, end) of the columns a split may use: valid = the right-most `valid_fraction`."""
    if split not in SPLITS:
        raise PodiumError(f'unknown split "{split}"; expected one of: {", ".join(SPLITS)}')
    boundary = int(round(width * (1.0 - valid_fraction)))
    return (0, boundary) if split == "train" else (boundary, width)


def window_to_scene(boxes, window) -> np.ndarray:
    """Window-pixel xyxy boxes (..., 4) → scene pixels, for a window (x0, y0, x1, y1)."""
    x0, y0 = float(window[0]), float(window[1])
    return np.asarray(boxes, dtype=np.float64) + np.array([x0, y0, x0, y0])
