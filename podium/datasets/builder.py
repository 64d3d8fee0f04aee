"""Datasets from the `data:` block of a config.

The runner passes the block as keyword arguments, so `check_data_keys` validates it against the
builder's signature first: a misspelled key becomes a one-line error with a suggestion instead
of a TypeError deep inside Catalyst.
"""
import inspect
import os
from collections import OrderedDict
from typing import Callable, Mapping, Optional

from podium.datasets.image_folder import ImageFolderDataset, index_folder
from podium.datasets.readers import IMAGE_EXTENSIONS, MASK_EXTENSIONS
from podium.datasets.split import read_split, select_names
from podium.errors import PodiumError, check_keys

__all__ = ["build_segmentation_datasets", "build_segmentation_dataset", "check_data_keys"]


def build_segmentation_datasets(
    root,
    split_file: str = "split.csv",
    fold: Optional[int] = None,
    train_split: str = "train",
    valid_split: str = "valid",
    train_transforms=None,
    valid_transforms=None,
    normalize=None,
    channels=None,
    num_classes: int = 1,
    image_dir: str = "images",
    mask_dir: str = "masks",
) -> "OrderedDict[str, ImageFolderDataset]":
    """train/valid datasets: by the `split` column, or (with `fold`) valid = fold k, train = the rest.

    With `fold` and a file that also has a `split` column, only rows of `train_split` are folded,
    so a held-out test split never leaks into cross-validation.
    """
    _check_root(root)
    df = read_split(root, split_file)
    if fold is None:
        names = {"train": select_names(df, split=train_split), "valid": select_names(df, split=valid_split)}
    else:
        if "split" in df:
            select_names(df, split=train_split)  # validates train_split (did-you-mean) before folding
        pool = df[df["split"] == str(train_split)] if "split" in df else df
        pool.attrs.update(df.attrs)
        names = {"train": select_names(pool, exclude_fold=fold), "valid": select_names(pool, fold=fold)}
    common = dict(normalize=normalize, channels=channels, num_classes=num_classes, image_dir=image_dir, mask_dir=mask_dir)
    transforms = {"train": train_transforms, "valid": valid_transforms}
    datasets = OrderedDict()
    for key in ("train", "valid"):
        _check_not_empty(names[key], key, df, fold)
        datasets[key] = ImageFolderDataset(root, names[key], transforms=transforms[key], **common)
    return datasets


def build_segmentation_dataset(
    root,
    split: Optional[str] = None,
    split_file: str = "split.csv",
    fold: Optional[int] = None,
    transforms=None,
    normalize=None,
    channels=None,
    num_classes: int = 1,
    image_dir: str = "images",
    mask_dir: str = "masks",
    with_masks: Optional[bool] = None,
) -> ImageFolderDataset:
    """One dataset for prediction: a split, the images of a fold, or (neither) every image in the folder.

    `with_masks=None` uses masks only if every selected image has one, so unlabeled test folders work.
    """
    _check_root(root)
    if split is None and fold is None:
        names = sorted(index_folder(os.path.join(root, image_dir), IMAGE_EXTENSIONS, "image"))
    else:
        names = select_names(read_split(root, split_file), split=split, fold=fold)
    _check_not_empty(names, split if split is not None else f"fold {fold}", None, fold)
    if with_masks is None:
        with_masks = _all_have_masks(os.path.join(root, mask_dir), names)
    return ImageFolderDataset(
        root, names, transforms=transforms, normalize=normalize, channels=channels,
        num_classes=num_classes, image_dir=image_dir, mask_dir=mask_dir, with_masks=with_masks,
    )


def check_data_keys(params: Mapping, builder: Callable = build_segmentation_datasets, where: str = "data") -> None:
    """Unknown keys (with a did-you-mean) and missing required keys of a `data:` block."""
    if not isinstance(params, Mapping):
        raise PodiumError(f"{where} must be a mapping of {builder.__name__} arguments, got {params!r}")
    signature = inspect.signature(builder).parameters
    check_keys(params.keys(), signature, f"{where} (arguments of {builder.__name__})")
    for name, parameter in signature.items():
        if parameter.default is inspect.Parameter.empty and name not in params:
            raise PodiumError(f'{where} is missing the required key "{name}"')


def _check_root(root) -> None:
    if not os.path.isdir(root):
        raise PodiumError(f"data folder {root} does not exist (expected images/ and masks/ inside)")


def _check_not_empty(names, which, df, fold) -> None:
    if not names:
        where = f" of {df.attrs['path']}" if df is not None else ""
        raise PodiumError(f"the {which} selection{where} is empty (fold={fold}); expected at least one image")


def _all_have_masks(folder: str, names) -> bool:
    if not os.path.isdir(folder):
        return False
    index = index_folder(folder, MASK_EXTENSIONS, "mask")
    return all(name in index for name in names)
