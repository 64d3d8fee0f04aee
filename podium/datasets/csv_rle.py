"""Masks given as a Kaggle CSV of run-length encodings (`masks_csv:` in the `data:` block).

Three table forms are recognised by their columns:

    ImageId,EncodedPixels          binary; several rows of one image are merged (instances)
    Image_Label,EncodedPixels      one row per image and class, Image_Label = "img1.jpg_Fish":
                                   multi-label, one channel per class
    ImageId,ClassId,EncodedPixels  one row per image and class (Severstal): multi-label

Image ids may carry the image's extension (`img1.jpg`); they are matched to podium names (file
names without extension). An empty or missing EncodedPixels is an empty mask, and so is an image
with no row at all (Kaggle leaves defect-free images out). Class names come from the table (in
order of first appearance; ClassId values sorted) unless `class_names` is given, which fixes
the channel order and must cover every class in the table.
"""

import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.datasets.rle import rle_decode
from podium.errors import PodiumError, did_you_mean

__all__ = ["RleTable", "image_id_to_name"]

_PIXELS = "EncodedPixels"
_ID_COLUMNS = ("ImageId", "image_id", "id", "name")


def image_id_to_name(image_id: str) -> str:
    """`img1.jpg` → `img1` (only known image extensions are removed)."""
    stem, ext = os.path.splitext(str(image_id))
    return stem if ext.lower() in IMAGE_EXTENSIONS else str(image_id)


class RleTable:
    """Parsed RLE table: `mask(name, (H, W))` gives H×W (binary) or H×W×C (multi-label) uint8
    0/1."""

    def __init__(self, path, class_names: Optional[Sequence[str]] = None, order: str = "F"):
        self.path = str(path)
        self.order = order
        df = _read(self.path)
        columns = [str(c) for c in df.columns]
        if "Image_Label" in columns:
            ids_labels = [
                _split_image_label(v, self.path, row)
                for row, v in enumerate(df["Image_Label"], start=2)
            ]
            ids, labels = [i for i, _ in ids_labels], [lab for _, lab in ids_labels]
        elif "ClassId" in columns:
            ids = df[_id_column(columns, self.path)].tolist()
            labels = [_class_id(v, self.path, row) for row, v in enumerate(df["ClassId"], start=2)]
        else:
            ids, labels = df[_id_column(columns, self.path)].tolist(), None
        self.multilabel = labels is not None
        table_classes = _unique(labels) if labels is not None else []
        if labels is not None and labels and all(isinstance(c, int) for c in table_classes):
            table_classes = sorted(table_classes)
        self.class_names = self._class_names(table_classes, class_names)
        channel = {str(c): i for i, c in enumerate(self.class_names)}
        self._runs: Dict[str, List[Tuple[int, str, object]]] = OrderedDict()
        for k, (image_id, rle) in enumerate(zip(ids, df[_PIXELS].tolist())):
            name = image_id_to_name(image_id)
            c = channel[str(labels[k])] if labels is not None else 0
            self._runs.setdefault(name, []).append((c, str(image_id), rle))

    @property
    def names(self) -> List[str]:
        """Every image named in the table (with or without a non-empty mask)."""
        return list(self._runs)

    @property
    def num_channels(self) -> int:
        return len(self.class_names) if self.multilabel else 1

    def __contains__(self, name: str) -> bool:
        return name in self._runs

    def mask(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """Decoded mask for image `name` of size `shape` = (H, W); overruns name the image id."""
        height, width = int(shape[0]), int(shape[1])
        out = np.zeros((height, width, self.num_channels), dtype=np.uint8)
        for c, image_id, rle in self._runs.get(name, []):
            label = f"{image_id} (class {self.class_names[c]})" if self.multilabel else image_id
            out[..., c] |= rle_decode(
                rle, (height, width), name=f"image {label} in {self.path}", order=self.order
            )
        return out if self.multilabel else out[..., 0]

    def _class_names(self, table_classes, class_names) -> List[str]:
        if not self.multilabel:
            if class_names is not None and len(class_names) != 1:
                raise PodiumError(
                    f"masks_csv {self.path} has one binary mask per image (no Image_Label or "
                    f"ClassId column) but class_names lists {len(class_names)} classes; "
                    "expected one name or none"
                )
            return [str(class_names[0])] if class_names else ["foreground"]
        if class_names is None:
            return [str(c) for c in table_classes]
        if isinstance(class_names, str) or not all(isinstance(c, (str, int)) for c in class_names):
            raise PodiumError(f"class_names must be a list of class names, got {class_names!r}")
        given = [str(c) for c in class_names]
        for c in table_classes:
            if str(c) not in given:
                raise PodiumError(
                    f'masks_csv {self.path} has class "{c}", which is not in class_names'
                    f"{did_you_mean(str(c), given)}; expected one of: {', '.join(given)}"
                )
        return given


def _read(path: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise PodiumError(
            f"masks_csv file {path} does not exist; expected a CSV with an {_PIXELS} column"
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:  # EmptyDataError, ParserError, UnicodeDecodeError …
        raise PodiumError(f"cannot read masks_csv file {path}: {error}") from error
    if _PIXELS not in df.columns:
        hint = "".join(did_you_mean(c, [_PIXELS]) for c in map(str, df.columns))
        raise PodiumError(
            f"masks_csv file {path} has columns {list(map(str, df.columns))}; "
            f"expected ImageId,{_PIXELS} or Image_Label,{_PIXELS} or "
            f"ImageId,ClassId,{_PIXELS}{hint}"
        )
    return df


def _id_column(columns: List[str], path: str) -> str:
    for column in _ID_COLUMNS:
        if column in columns:
            return column
    hint = "".join(did_you_mean(c, _ID_COLUMNS) for c in columns if c != _PIXELS)
    raise PodiumError(
        f"masks_csv file {path} has columns {columns}; expected an image id column: "
        f"ImageId (or Image_Label){hint}"
    )


def _split_image_label(value: str, path: str, row: int) -> Tuple[str, str]:
    image_id, sep, label = str(value).rpartition("_")
    if not sep or not image_id or not label:
        raise PodiumError(
            f"masks_csv file {path} line {row}: "
            f'Image_Label "{value}" is not IMAGE_CLASS (e.g. img1.jpg_Fish)'
        )
    return image_id, label


def _class_id(value, path: str, row: int):
    text = str(value).strip()
    if not text:
        raise PodiumError(f"masks_csv file {path} line {row}: empty ClassId; expected a class id")
    return int(text) if text.lstrip("-").isdigit() else text


def _unique(values) -> list:
    return list(OrderedDict.fromkeys(values))
