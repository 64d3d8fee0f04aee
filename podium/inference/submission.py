"""Kaggle submission CSV: one RLE row per image (and class), written atomically, sorted.

    with SubmissionWriter("submission.csv") as w:                 # ImageId,EncodedPixels
        w.add("img1", mask)                                        # H×W mask, > 0 = on
    SubmissionWriter("sub.csv", columns=("Image_Label", "EncodedPixels"),          # Clouds
                     name_format="{name}.jpg_{class}",
                     class_names=["Fish", "Flower", "Gravel", "Sugar"])
    SubmissionWriter("sub.csv", columns=("ImageId", "ClassId", "EncodedPixels"))   # Severstal
    SubmissionWriter.merge(["part0.csv", "part1.csv"], "submission.csv")           # sharded runs

RLE is `podium.datasets.rle_encode`: column-major (top to bottom, then left to right), 1-based
`start length` pairs; `rle_order="C"` for row-major competitions. Rows per image:

- binary mask H×W: one row.
- multilabel mask C×H×W: one row per class, empty ones included (as Kaggle's sample
  submissions list every image × class).
- multiclass mask H×W of class indices (`mode="multiclass"`, `class_names` with the background
  first): one row per class except the background (index 0), empty ones included.
- `instances=True`: instead of one row per image (and class), one row per 8-connected blob
  (Airbus ships, DSB2018 nuclei), and one row with the empty value when there is none.

`columns` is 2 names (id, RLE) or 3 names (id, class, RLE); the id column holds `name_format`
and the class column `{class}`. For any other layout give a mapping column → template, e.g.
`{"ImageId": "{name}", "EncodedPixels": "{rle}", "ClassId": "{class_id}"}`. Template fields:
`{name}` (as given to `add`), `{class}` (class name; by default the 1-based class id),
`{class_id}` (1-based channel for multilabel, the class index for multiclass, 1 for binary),
`{rle}` (the runs, or `empty` — '' by default; some competitions want '-1').

Rows are sorted by their text, column by column in file order, with digit runs compared as
numbers (img2 before img10; instance rows of one image by their first pixel), so the file does
not depend on the order of `add` calls, and `merge` of shards gives the same bytes as one
writer. `close()` (or leaving the `with` block without an error) writes a temporary file
next to `path` and renames it, so a crashed run never leaves half a submission.
"""

import csv
import re
import string
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from podium.datasets.rle import rle_encode
from podium.errors import PodiumError, did_you_mean
from podium.files import write_atomically
from podium.inference.postprocess import MODES, as_numpy, components
from podium.validation import check_choice

__all__ = ["SubmissionWriter", "FIELDS"]

FIELDS = ("name", "class", "class_id", "rle")
_DIGITS = re.compile(r"(\d+)")


class SubmissionWriter:
    """Collects RLE rows with `add(name, mask)`; `close()` writes them sorted and atomically."""

    def __init__(
        self,
        path,
        columns: Union[Sequence[str], Mapping[str, str]] = ("ImageId", "EncodedPixels"),
        empty: str = "",
        class_names: Optional[Sequence[str]] = None,
        name_format: str = "{name}",
        mode: Optional[str] = None,
        instances: bool = False,
        rle_order: str = "F",
    ):
        self.path = Path(path)
        self.templates = _templates(columns, name_format)
        self.empty = str(empty)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if mode is not None:
            check_choice(mode, MODES, "submission mode")
        if mode == "multiclass" and (self.class_names is None or len(self.class_names) < 2):
            raise PodiumError(
                "a multiclass submission needs class_names with the "
                "background first (e.g. [background, car, road])"
            )
        self.mode = mode
        self.instances = bool(instances)
        self.rle_order = rle_order
        rle_encode(np.zeros((1, 1)), order=rle_order)  # checks the order now
        self._rows: List[Tuple[str, ...]] = []
        self._names = set()
        self._closed = False

    @property
    def columns(self) -> List[str]:
        return list(self.templates)

    def add(self, name: str, mask) -> None:
        """Rows for one image: `mask` H×W (binary, or class indices) or C×H×W (multilabel)."""
        if self._closed:
            raise PodiumError(
                f"submission {self.path} is already written; add() must come before close()"
            )
        name = str(name)
        if name in self._names:
            raise PodiumError(
                f"image {name} was added to submission {self.path} twice; expected each image once"
            )
        mask = as_numpy(mask)
        mode = self._mode(mask, name)
        rows = []
        for class_name, class_id, channel in self._channels(mask, mode, name):
            for rle in self._encodings(channel):
                fields = {"name": name, "class": class_name, "class_id": class_id, "rle": rle}
                rows.append(
                    tuple(template.format(**fields) for template in self.templates.values())
                )
        self._names.add(name)
        self._rows.extend(rows)

    def close(self) -> Path:
        """Write the sorted rows (atomically); returns the path."""
        if not self._closed:
            _write_csv(self.path, self.columns, self._rows)
            self._closed = True
        return self.path

    def __enter__(self) -> "SubmissionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    @staticmethod
    def merge(parts: Sequence, path) -> Path:
        """One submission from the part files of a sharded prediction (same bytes as one writer)."""
        if not parts:
            raise PodiumError(f"no part files to merge into {path}; expected at least one")
        header, rows, owner = None, [], {}
        for part in map(Path, parts):
            if not part.is_file():
                raise PodiumError(f"submission part {part} does not exist")
            with open(part, newline="", encoding="utf-8") as f:
                table = list(csv.reader(f))
            if not table:
                raise PodiumError(f"submission part {part} is empty; expected a header line")
            if header is None:
                header = table[0]
            elif table[0] != header:
                raise PodiumError(
                    f"submission part {part} has columns {table[0]} but {parts[0]} has {header}; "
                    "expected the same columns"
                )
            for row in table[1:]:
                first = owner.setdefault(row[0], part)
                if first != part:
                    raise PodiumError(
                        f"{header[0]} {row[0]} is in both {first} and {part}; "
                        "expected each image in one part"
                    )
                rows.append(tuple(row))
        return _write_csv(Path(path), header, rows)

    # ------------------------------------------------------------------ rows
    def _mode(self, mask: np.ndarray, name: str) -> str:
        mode = self.mode
        if mode is None:
            mode = (
                "multilabel"
                if mask.ndim == 3
                else "multiclass"
                if self.class_names and len(self.class_names) > 1
                else "binary"
            )
        expected = 3 if mode == "multilabel" else 2
        if mask.ndim != expected:
            shape = "C×H×W" if expected == 3 else "H×W"
            raise PodiumError(
                f"mask of {name} has shape {mask.shape}; expected {shape} for a {mode} submission"
            )
        many = mode == "multiclass" or (mode == "multilabel" and mask.shape[0] > 1)
        if many and not any(
            f in ("class", "class_id") for t in self.templates.values() for f in _fields(t)
        ):
            raise PodiumError(
                f"a {mode} submission writes one row per class, "
                f"but columns {self.columns} have no class field; "
                'expected e.g. name_format="{name}_{class}" '
                "or columns (ImageId, ClassId, EncodedPixels)"
            )
        return mode

    def _channels(self, mask: np.ndarray, mode: str, name: str):
        """(class name, class id, boolean H×W mask) per row group."""
        if mode == "binary":
            yield (self.class_names[0] if self.class_names else "1"), 1, mask > 0
        elif mode == "multilabel":
            names = self.class_names or [str(c + 1) for c in range(mask.shape[0])]
            if len(names) != mask.shape[0]:
                raise PodiumError(
                    f"mask of {name} has {mask.shape[0]} channels but class_names "
                    f"lists {len(names)}: {names}"
                )
            for c in range(mask.shape[0]):
                yield names[c], c + 1, mask[c] > 0
        else:
            count = len(self.class_names)
            if mask.size and (mask.min() < 0 or mask.max() >= count):
                raise PodiumError(
                    f"mask of {name} has class indices {mask.min()}..{mask.max()}; "
                    f"expected 0..{count - 1} ({count} class_names)"
                )
            for c in range(1, count):
                yield self.class_names[c], c, mask == c

    def _encodings(self, mask: np.ndarray) -> List[str]:
        if not self.instances:
            return [rle_encode(mask, order=self.rle_order) or self.empty]
        labels, areas = components(mask)
        rles = [rle_encode(labels == k, order=self.rle_order) for k in range(1, len(areas))]
        return rles or [self.empty]


def _templates(columns, name_format: str) -> Dict[str, str]:
    if isinstance(columns, Mapping):
        if name_format != "{name}":
            raise PodiumError(
                "give name_format or a mapping of column templates, "
                "not both (put the id format into the mapping)"
            )
        templates = {str(k): str(v) for k, v in columns.items()}
    elif (
        isinstance(columns, (list, tuple))
        and len(columns) in (2, 3)
        and all(isinstance(c, str) for c in columns)
    ):
        roles = [name_format, "{rle}"] if len(columns) == 2 else [name_format, "{class}", "{rle}"]
        templates = dict(zip(columns, roles))
        if len(templates) != len(columns):
            raise PodiumError(
                f"submission columns {list(columns)} repeat a name; expected distinct column names"
            )
    else:
        raise PodiumError(
            "submission columns must be 2 names (id, RLE), 3 names (id, class, RLE) or a mapping "
            f"column → template, got {columns!r}"
        )
    for column, template in templates.items():
        try:
            unknown = [f for f in _fields(template) if f not in FIELDS]
        except ValueError as error:
            raise PodiumError(
                f'submission column {column} has the bad template "{template}": {error}'
            ) from None
        if unknown:
            raise PodiumError(
                f"submission column {column} uses "
                f'{{{unknown[0]}}}{did_you_mean(unknown[0], FIELDS)} in "{template}"; '
                f"expected fields: {', '.join('{' + f + '}' for f in FIELDS)}"
            )
    if sum("rle" in _fields(t) for t in templates.values()) != 1:
        raise PodiumError(
            f"submission columns {templates} must have exactly one column with {{rle}}"
        )
    return templates


def _fields(template: str) -> List[str]:
    """Field names of a str.format template (ValueError if malformed, e.g. '{name')."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def _natural(text: str):
    """Sort key: digit runs as numbers (img2 < img10), the text itself breaks ties (007 vs 7)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text)
    ), text


def _write_csv(path: Path, header: Sequence[str], rows: List[Tuple[str, ...]]) -> Path:
    rows = sorted(rows, key=lambda row: tuple(_natural(v) for v in row))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)

    return write_atomically(path, write)
