"""Soft-labeled training data (self-training): the folders `podium pseudo-label` writes.

    SOFT_DIR/
      probabilities/NAME.png          round(p × 255) of the teacher ensemble (one class), or
      probabilities/CLASS/NAME.png    one folder per class, in the order of classes.json
      manifest.csv                    name, kind (soft | negative), max_prob, positive_fraction
      pseudo_label.json               {"images": folder of the images, ...}: how they were made

In a training config, `data: {soft_labels: SOFT_DIR}` (or `{dir: SOFT_DIR, images: FOLDER}`, or a
list of them) appends those images to the train split. Every sample of a run with soft labels,
labeled or not, then carries the same keys, so one batch mixes both kinds:

    image       float C×H×W, read and augmented as the labeled train images (one shared pipeline)
    mask        the hard target: the truth; for a soft sample its hard pseudo-label (p > 0.5,
                multiclass: argmax); for a negative an empty mask
    soft_mask   float32 K×H×W soft target in [0, 1]: p for a soft sample, the truth as 0/1
                (multiclass: one-hot) for a labeled sample, zeros for a negative
    soft        bool: True for soft samples only — negatives train as labeled empty images

`podium.callbacks.LossStackCallback(sample_key: soft)` applies each loss term to the hard or
the soft samples of a batch. The maps are read here with `read_image` (the layout is
`podium.inference.probability_maps`', which this lower layer does not import).
"""

import csv
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.image_folder import ImageFolderDataset
from podium.datasets.readers import read_image
from podium.errors import PodiumError, check_keys

__all__ = [
    "MAPS",
    "MANIFEST",
    "SETTINGS",
    "KINDS",
    "SOURCE_KEYS",
    "SoftLabelDataset",
    "SelfTrainingDataset",
    "read_manifest",
    "soft_label_sources",
    "hard_target",
    "soft_target",
]

MAPS = "probabilities"
MANIFEST = "manifest.csv"
SETTINGS = "pseudo_label.json"
KINDS = ("soft", "negative")
MANIFEST_COLUMNS = ("name", "kind", "max_prob", "positive_fraction")
SOURCE_KEYS = ("dir", "images")


def read_manifest(soft_dir) -> List[Dict[str, Any]]:
    """The rows of SOFT_DIR/manifest.csv (name, kind, max_prob, positive_fraction), checked."""
    path = os.path.join(str(soft_dir), MANIFEST)
    if not os.path.isfile(path):
        raise PodiumError(
            f"soft-label folder {soft_dir} has no {MANIFEST}; "
            "expected the --out of podium pseudo-label"
        )
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PodiumError(
                f"{path} lacks the column(s) {', '.join(missing)}; "
                f"expected {', '.join(MANIFEST_COLUMNS)}"
            )
        rows = list(reader)
    seen = set()
    for line, row in enumerate(rows, start=2):
        if row["kind"] not in KINDS:
            raise PodiumError(
                f"{path} line {line}: kind {row['kind']!r}; expected one of {', '.join(KINDS)}"
            )
        if not row["name"] or row["name"] in seen:
            raise PodiumError(f"{path} line {line}: name {row['name']!r} is empty or listed twice")
        seen.add(row["name"])
    if not rows:
        raise PodiumError(f"{path} lists no image; expected one row per pseudo-labeled image")
    return rows


def soft_label_sources(spec) -> List[Dict[str, str]]:
    """`soft_labels:` of a data block as a list of {dir, images}: a folder, a mapping or a list of
    them."""
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    sources = []
    for i, item in enumerate(items):
        where = "data/soft_labels" + (f"[{i}]" if isinstance(spec, (list, tuple)) else "")
        if isinstance(item, (str, os.PathLike)):
            item = {"dir": os.fspath(item)}
        if not isinstance(item, Mapping) or "dir" not in item:
            raise PodiumError(
                f"{where} must be a folder written by podium pseudo-label or {{dir: FOLDER, "
                f"images: FOLDER}}, got {item!r}"
            )
        check_keys(item, SOURCE_KEYS, where)
        soft_dir = str(item["dir"])
        images = item.get("images")
        if images is None:
            images = _settings(soft_dir).get("images")
            if images is None:
                raise PodiumError(
                    f"{where}: {os.path.join(soft_dir, SETTINGS)} "
                    f"names no images folder; give {where}/images"
                )
        sources.append({"dir": soft_dir, "images": str(images)})
    if not sources:
        raise PodiumError(
            "data/soft_labels lists no folder; expected a folder written by podium pseudo-label"
        )
    return sources


def _settings(soft_dir: str) -> Dict[str, Any]:
    path = os.path.join(soft_dir, SETTINGS)
    if not os.path.isdir(soft_dir):
        raise PodiumError(
            f"soft-label folder {soft_dir} does not exist; "
            "expected the --out of podium pseudo-label"
        )
    if not os.path.isfile(path):
        return {}
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except ValueError as error:
        raise PodiumError(f"cannot read {path}: {error}") from None


def _map_classes(maps: str) -> List[str]:
    path = os.path.join(maps, "classes.json")
    if not os.path.isfile(path):
        raise PodiumError(
            f"soft-label maps {maps} have no classes.json; "
            "expected podium predict's probability maps"
        )
    try:
        classes = json.loads(open(path, encoding="utf-8").read())["classes"]
    except (ValueError, KeyError, TypeError) as error:
        raise PodiumError(f'cannot read {path}: {error}; expected {{"classes": [names]}}') from None
    return [str(c) for c in classes]


def hard_target(soft: torch.Tensor, target: str) -> torch.Tensor:
    """The hard pseudo-label of a K×H×W soft map: p > 0.5 (binary, multilabel) or argmax
    (multiclass)."""
    if target == "multiclass":
        return soft.argmax(dim=0).long()
    return (soft > 0.5).float()


def soft_target(mask: torch.Tensor, target: str, num_classes: int) -> torch.Tensor:
    """A hard target as a K×H×W float map: itself (binary, multilabel) or one-hot (multiclass)."""
    if target == "multiclass":
        return torch.nn.functional.one_hot(mask.long(), num_classes).permute(2, 0, 1).float()
    return mask.float()


class SoftLabelDataset(ImageFolderDataset):
    """The images of an unlabeled folder with the soft labels podium pseudo-label wrote for them.

    Images are read like the labeled ones (the same normalize / channels / transforms arguments);
    the soft map is augmented together with its image. Items: see the module docstring.
    """

    def __init__(
        self,
        soft_dir,
        images,
        transforms=None,
        normalize=None,
        channels=None,
        num_classes: int = 1,
        target: Optional[str] = None,
        in_channels: Optional[int] = None,
        on_bad_sample: str = "error",
    ):
        self.soft_dir = str(soft_dir)
        rows = read_manifest(self.soft_dir)
        self.kinds = {row["name"]: row["kind"] for row in rows}
        self.maps = os.path.join(self.soft_dir, MAPS)
        self.map_classes = _map_classes(self.maps)
        super().__init__(
            images,
            [row["name"] for row in rows],
            transforms=transforms,
            normalize=normalize,
            channels=channels,
            num_classes=num_classes,
            with_masks=True,
            target=target,
            in_channels=in_channels,
            on_bad_sample=on_bad_sample,
        )
        if self.target == "regression":
            raise PodiumError(
                "soft labels train segmentation targets (binary, "
                "multilabel, multiclass), not regression"
            )
        expected = 1 if self.target == "binary" else self.num_classes
        if len(self.map_classes) != expected:
            raise PodiumError(
                f"soft-label maps {self.maps} have {len(self.map_classes)} "
                f"class(es) {self.map_classes} but the {self.target} target of the labeled data "
                f"has {expected}; expected maps of the same task"
            )

    def _map_path(self, name: str, channel: int) -> str:
        if len(self.map_classes) == 1:
            return os.path.join(self.maps, f"{name}.png")
        return os.path.join(self.maps, self.map_classes[channel], f"{name}.png")

    def _find_masks(self) -> List[Optional[str]]:
        """The first map of every soft sample must exist (negatives need none)."""
        paths = [self._map_path(name, 0) for name in self.names]
        missing = [
            p
            for n, p in zip(self.names, paths)
            if self.kinds[n] == "soft" and not os.path.isfile(p)
        ]
        if missing:
            raise PodiumError(
                f"{len(missing)} soft label map(s) are missing, e.g. {missing[0]}; "
                f"expected one per soft row of {os.path.join(self.soft_dir, MANIFEST)}"
            )
        return paths

    def _read_mask(self, index: int, shape) -> np.ndarray:
        """H×W×K float32 probabilities (zeros for a negative), ready for albumentations."""
        name = self.names[index]
        if self.kinds[name] == "negative":
            return np.zeros((*shape, len(self.map_classes)), dtype=np.float32)
        channels = []
        for c in range(len(self.map_classes)):
            path = self._map_path(name, c)
            array = read_image(path)
            if array.shape[-1] != 1 or array.dtype not in (np.uint8, np.uint16):
                raise PodiumError(
                    f"soft label map {path} is {array.dtype} with {array.shape[-1]} channel(s); "
                    "expected a grey 8- or 16-bit PNG"
                )
            channels.append(array[..., 0].astype(np.float32) / np.iinfo(array.dtype).max)
        return np.stack(channels, axis=-1)

    def _mask_tensor(self, mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1), dtype=np.float32))

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = super().__getitem__(index)
        soft = item.pop("mask")
        item["soft_mask"] = soft
        item["mask"] = hard_target(soft, self.target)
        item["soft"] = torch.tensor(self.kinds[item["name"]] == "soft")
        return item


class SelfTrainingDataset(Dataset):
    """Labeled samples followed by soft-labeled ones, all with the keys of the module docstring.

    `transforms` is the labeled dataset's pipeline, which the soft datasets share, so the runner's
    per-epoch seeding reaches every sample.
    """

    def __init__(self, labeled: ImageFolderDataset, soft_sets: Sequence[SoftLabelDataset] = ()):
        self.dataset = labeled
        self.transforms = labeled.transforms
        self.soft_sets = list(soft_sets)
        self.parts = [labeled, *self.soft_sets]
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    @property
    def names(self) -> List[str]:
        return [name for part in self.parts for name in part.names]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if index < 0:
            index += len(self)
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        item = self.parts[part][index - int(self.offsets[part])]
        if part == 0:
            item["soft_mask"] = soft_target(
                item["mask"], self.dataset.target, self.dataset.num_classes
            )
            item["soft"] = torch.tensor(False)
        return item
