"""Datasets from the `data:` block of a config.

The runner passes the block as keyword arguments, so `check_data_keys` validates it against the
builder's signature first: a misspelled key becomes a one-line error with a suggestion instead
of a TypeError deep inside Catalyst.
"""

import inspect
import os
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from podium.datasets.csv_rle import RleTable
from podium.datasets.exclusion import apply_exclusion, read_exclusion_list, resolve_data_path
from podium.datasets.image_folder import (
    ImageFolderDataset,
    index_images,
    index_masks,
    resolve_layout,
)
from podium.datasets.soft_labels import SelfTrainingDataset, SoftLabelDataset, soft_label_sources
from podium.datasets.split import read_split, select_names
from podium.errors import PodiumError, check_keys, did_you_mean

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
    layout: str = "auto",
    mask_suffix: str = "_mask",
    target: Optional[str] = None,
    masks_csv: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    in_channels: Optional[int] = None,
    exclude: Optional[str] = None,
    on_bad_sample: str = "error",
    soft_labels=None,
    columns: Optional[Sequence[str]] = None,
) -> "OrderedDict[str, ImageFolderDataset]":
    """train/valid datasets: by the `split` column, or (with `fold`) valid = fold k, train = the
    rest.

    With `fold` and a file that also has a `split` column, only rows of `train_split` are folded,
    so a held-out test split never leaks into cross-validation. `exclude` (a names file, relative
    to root) removes images from both; `masks_csv` (relative to root) reads masks from a Kaggle
    RLE table; `soft_labels` (folders of podium pseudo-label, see soft_labels.py) appends
    soft-labeled images to train; `columns` (numeric columns of the split file, e.g. [gsd])
    become per-image targets of aux heads: item[column] is a float32 tensor of shape (1,);
    the other keys are ImageFolderDataset's.
    """
    _check_root(root)
    df = read_split(root, split_file)
    values = column_values(df, columns)
    if values and soft_labels is not None:
        raise PodiumError(
            f"data columns {list(values)} and soft_labels cannot be combined: soft-labeled "
            "images have no row in the split file; expected one of the two"
        )
    if fold is None:
        names = {
            "train": select_names(df, split=train_split),
            "valid": select_names(df, split=valid_split),
        }
    else:
        if "split" in df:
            select_names(
                df, split=train_split
            )  # validates train_split (did-you-mean) before folding
        pool = df[df["split"] == str(train_split)] if "split" in df else df
        pool.attrs.update(df.attrs)
        names = {
            "train": select_names(pool, exclude_fold=fold),
            "valid": select_names(pool, fold=fold),
        }
    names["train"], names["valid"] = _exclude(
        root, exclude, [names["train"], names["valid"]], df["name"]
    )
    table = (
        RleTable(resolve_data_path(root, masks_csv), class_names=class_names)
        if masks_csv is not None
        else None
    )
    common = dict(
        normalize=normalize,
        channels=channels,
        num_classes=num_classes,
        image_dir=image_dir,
        mask_dir=mask_dir,
        layout=layout,
        mask_suffix=mask_suffix,
        target=target,
        masks_csv=table,
        class_names=class_names,
        in_channels=in_channels,
        on_bad_sample=on_bad_sample,
    )
    transforms = {"train": train_transforms, "valid": valid_transforms}
    datasets = OrderedDict()
    for key in ("train", "valid"):
        _check_not_empty(names[key], key, df, fold, exclude)
        datasets[key] = ImageFolderDataset(
            root,
            names[key],
            transforms=transforms[key],
            columns={c: [v[n] for n in names[key]] for c, v in values.items()} or None,
            **common,
        )
    if soft_labels is not None:
        datasets = _with_soft_labels(datasets, soft_labels, common)
    return datasets


def column_values(df, columns: Optional[Sequence[str]]) -> Dict[str, Dict[str, float]]:
    """{column: {name: value}} of numeric split-file columns; empty cells are NaN (a loss's
    `ignore_value: .nan` leaves them out)."""
    import pandas as pd

    path = df.attrs.get("path", "the split file")
    if columns is None:
        return {}
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise PodiumError(f"data columns must be a list of column names, got {columns!r}")
    values = {}
    for column in columns:
        if column not in df.columns or column in ("name", "split", "fold"):
            raise PodiumError(
                f'data columns: "{column}" is not a column of split file {path}'
                f"{did_you_mean(column, [str(c) for c in df.columns])}; "
                f"columns: {[str(c) for c in df.columns]}"
            )
        numbers = pd.to_numeric(df[column], errors="coerce")
        bad = numbers.isna() & df[column].notna()
        if bad.any():
            rows = ", ".join(str(i + 2) for i in bad[bad].index[:5])
            raise PodiumError(
                f'data columns: column "{column}" of split file {path} has values that are not '
                f"numbers in rows {rows} (e.g. {df[column][bad].iloc[0]!r}); expected numbers"
            )
        values[column] = dict(zip(df["name"], numbers.astype(float)))
    return values


def _with_soft_labels(datasets, spec, common) -> "OrderedDict[str, SelfTrainingDataset]":
    """Soft-labeled images appended to train, read and augmented like it; every loader gets the same
    keys."""
    train = datasets["train"]
    reading = {
        key: common[key]
        for key in ("normalize", "channels", "num_classes", "in_channels", "on_bad_sample")
    }
    soft_sets = [
        SoftLabelDataset(
            source["dir"],
            source["images"],
            transforms=train.transforms,
            target=train.target,
            **reading,
        )
        for source in soft_label_sources(spec)
    ]
    return OrderedDict(
        (key, SelfTrainingDataset(dataset, soft_sets if key == "train" else ()))
        for key, dataset in datasets.items()
    )


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
    layout: str = "auto",
    mask_suffix: str = "_mask",
    target: Optional[str] = None,
    masks_csv: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    in_channels: Optional[int] = None,
    exclude: Optional[str] = None,
    on_bad_sample: str = "error",
) -> ImageFolderDataset:
    """One dataset for prediction: a split, the images of a fold, or (neither) every image in the
    folder.

    `with_masks=None` uses masks only if every selected image has one (or `masks_csv` is given),
    so unlabeled test folders work.
    """
    _check_root(root)
    folder_layout = resolve_layout(root, layout, image_dir, mask_dir, mask_suffix)
    if split is None and fold is None:
        names = sorted(index_images(folder_layout))
        known = names
    else:
        df = read_split(root, split_file)
        names, known = select_names(df, split=split, fold=fold), df["name"]
    (names,) = _exclude(root, exclude, [names], known)
    _check_not_empty(names, split if split is not None else f"fold {fold}", None, fold, exclude)
    if with_masks is None:
        with_masks = masks_csv is not None or _all_have_masks(folder_layout, names)
    return ImageFolderDataset(
        root,
        names,
        transforms=transforms,
        normalize=normalize,
        channels=channels,
        num_classes=num_classes,
        image_dir=image_dir,
        mask_dir=mask_dir,
        with_masks=with_masks,
        layout=layout,
        mask_suffix=mask_suffix,
        target=target,
        masks_csv=masks_csv,
        class_names=class_names,
        in_channels=in_channels,
        on_bad_sample=on_bad_sample,
    )


def check_data_keys(
    params: Mapping, builder: Callable = build_segmentation_datasets, where: str = "data"
) -> None:
    """Unknown keys (with a did-you-mean) and missing required keys of a `data:` block."""
    if not isinstance(params, Mapping):
        raise PodiumError(
            f"{where} must be a mapping of {builder.__name__} arguments, got {params!r}"
        )
    signature = inspect.signature(builder).parameters
    kinds = {parameter.kind for parameter in signature.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:  # a builder taking **kwargs takes any key
        check_keys(params.keys(), signature, f"{where} (arguments of {builder.__name__})")
    for name, parameter in signature.items():
        variadic = parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if parameter.default is inspect.Parameter.empty and not variadic and name not in params:
            raise PodiumError(
                f'{where} is missing the required key "{name}"; expected {name}: ... '
                f"(an argument of {builder.__name__})"
            )


def _check_root(root) -> None:
    if not os.path.isdir(root):
        raise PodiumError(f"data folder {root} does not exist (expected images/ and masks/ inside)")


def _exclude(root, exclude, selections: List[List[str]], known) -> List[List[str]]:
    if exclude is None:
        return selections
    path = resolve_data_path(root, exclude)
    kept, _ = apply_exclusion(selections, read_exclusion_list(path), known, path)
    return kept


def _check_not_empty(names, which, df, fold, exclude=None) -> None:
    if not names:
        where = f" of {df.attrs['path']}" if df is not None else ""
        after = f" after the exclusion list {exclude}" if exclude is not None else ""
        raise PodiumError(
            f"the {which} selection{where} is empty{after} (fold={fold}); "
            "expected at least one image"
        )


def _all_have_masks(layout, names) -> bool:
    if not os.path.isdir(layout.mask_folder):
        return False
    index = index_masks(layout)
    return all(name in index for name in names)
