"""Datasets of instance labels for a `data:` block: image + the body/border/contact target.

    data:
      _target_: podium.tasks.instances.data.build_instance_datasets
      root: data/nuclei       # images/NAME.png + instances/NAME.png (0 = background, k = object k)
      border_width: 2
      contact_width: 2

The instance label maps (`instance_dir`, 8/16/32-bit PNG or TIFF) are read and augmented like
any mask (nearest-neighbour geometry keeps ids whole); the three target channels (targets.py)
are computed after augmentation, on what the model sees. Items: `image`, `mask` (float32 3×H×W:
body, border, contact), `instances` (int64 1×H×W ids, for the instance metrics) and `name`.
"""

from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.builder import build_segmentation_datasets
from podium.errors import PodiumError
from podium.tasks.instances.targets import CHANNELS, check_instance_labels, instance_targets

__all__ = ["InstanceTargetDataset", "build_instance_datasets"]


class InstanceTargetDataset(Dataset):
    """Wraps a dataset whose `mask` is 1×H×W instance ids: `mask` becomes the 3-channel target."""

    def __init__(self, dataset, border_width: float = 2, contact_width: float = 2):
        self.dataset = dataset
        self.border_width, self.contact_width = border_width, contact_width
        instance_targets(np.zeros((1, 1), np.int64), border_width, contact_width)  # checks now
        self.transforms = getattr(dataset, "transforms", None)  # saved with the run's pipelines

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = dict(self.dataset[index])
        paths = getattr(self.dataset, "mask_paths", None)
        where = paths[index] if paths else f"of sample {item.get('name')}"
        labels = check_instance_labels(item["mask"].numpy()[0], where)
        targets = instance_targets(labels, self.border_width, self.contact_width)
        item["mask"] = torch.from_numpy(
            np.ascontiguousarray(targets.transpose(2, 0, 1), np.float32)
        )
        item["instances"] = torch.from_numpy(labels[None])
        return item


def build_instance_datasets(
    root,
    split_file: str = "split.csv",
    fold: Optional[int] = None,
    train_split: str = "train",
    valid_split: str = "valid",
    train_transforms=None,
    valid_transforms=None,
    normalize=None,
    channels=None,
    in_channels: Optional[int] = None,
    image_dir: str = "images",
    instance_dir: str = "instances",
    border_width: float = 2,
    contact_width: float = 2,
    num_classes: int = 3,
    target: str = "multilabel",
    class_names: Sequence[str] = CHANNELS,
    exclude: Optional[str] = None,
    on_bad_sample: str = "error",
) -> "OrderedDict[str, InstanceTargetDataset]":
    """train/valid datasets of images and instance labels (split and fold as in the core builder).

    `num_classes`, `target` and `class_names` are fixed (3, multilabel, body/border/contact):
    they say so to `podium predict`, which reads the run's data block to learn its outputs.
    """
    if (num_classes, target, list(class_names)) != (3, "multilabel", list(CHANNELS)):
        raise PodiumError(
            f"instance targets are num_classes 3, target multilabel, class_names {list(CHANNELS)}; "
            f"got {num_classes}, {target!r}, {list(class_names)} (leave these keys out)"
        )
    datasets = build_segmentation_datasets(
        root,
        split_file=split_file,
        fold=fold,
        train_split=train_split,
        valid_split=valid_split,
        train_transforms=train_transforms,
        valid_transforms=valid_transforms,
        normalize=normalize,
        channels=channels,
        in_channels=in_channels,
        num_classes=1,
        image_dir=image_dir,
        mask_dir=instance_dir,
        layout="folders",
        target="regression",  # the ids as they are, no binarisation
        exclude=exclude,
        on_bad_sample=on_bad_sample,
    )
    return OrderedDict(
        (key, InstanceTargetDataset(dataset, border_width, contact_width))
        for key, dataset in datasets.items()
    )
