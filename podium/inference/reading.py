"""Which images of a data folder, read how: the selection (split, fold, names file, exclusion
list) and the dataset that reads it.

Separate from the run (pipeline.py) because it knows nothing of models: `podium export --verify`
reads a run's own images through it too. Which models share one dataset (`build_groups`) and how
a model's run says to read (`reading_params`) stay with the models in pipeline.py.
"""

import os
from pathlib import Path
from typing import Any, Dict, List

from podium.datasets import ImageFolderDataset, build_segmentation_dataset, resolve_layout
from podium.datasets.csv_rle import image_id_to_name
from podium.datasets.exclusion import apply_exclusion, read_exclusion_list, resolve_data_path
from podium.datasets.image_folder import index_masks
from podium.errors import PodiumError
from podium.inference.geometry import ImagePipeline

__all__ = ["build_dataset", "read_names"]


def build_dataset(
    root: Path,
    data: Dict[str, Any],
    reading: Dict[str, Any],
    pipeline: ImagePipeline,
    masks: bool = True,
) -> ImageFolderDataset:
    """The selected images of `root` (split, fold, names file, or all), read with `reading`;
    `masks=False` reads no masks even where they exist."""
    if data.get("names") is None:
        return build_segmentation_dataset(
            root,
            split=data.get("split"),
            fold=data.get("fold"),
            exclude=data.get("exclude"),
            transforms=pipeline,
            with_masks=None if masks else False,
            **reading,
        )
    names = read_names(root, data["names"])
    if data.get("exclude") is not None:
        path = resolve_data_path(root, data["exclude"])
        (names,), _ = apply_exclusion([names], read_exclusion_list(path), names, path)
        if not names:
            raise PodiumError(
                f"every image of {data['names']} is in the exclusion list {path}; "
                "expected at least one image"
            )
    layout = resolve_layout(
        root,
        reading.get("layout", "auto"),
        reading.get("image_dir", "images"),
        reading.get("mask_dir", "masks"),
        reading.get("mask_suffix", "_mask"),
    )
    with_masks = masks and (
        reading.get("masks_csv") is not None
        or (os.path.isdir(layout.mask_folder) and set(names) <= set(index_masks(layout)))
    )
    reading = {
        key: value for key, value in reading.items() if key != "split_file"
    }  # a names file selects, not a split
    return ImageFolderDataset(root, names, transforms=pipeline, with_masks=with_masks, **reading)


def read_names(root: Path, names_file: str) -> List[str]:
    """Image names from a CSV (`name` column, else the first; extensions dropped) or a text file."""
    import pandas as pd

    path = resolve_data_path(root, names_file)
    if not os.path.isfile(path) and os.path.isfile(names_file):
        path = names_file
    if not os.path.isfile(path):
        raise PodiumError(
            f"names file {names_file} does not exist (looked in {root} and the current folder); "
            "expected a CSV with a name column"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:  # EmptyDataError, ParserError, UnicodeDecodeError
        raise PodiumError(f"cannot read names file {path}: {str(error).splitlines()[0]}") from None
    column = (
        "name" if "name" in table.columns else (table.columns[0] if len(table.columns) else None)
    )
    if column is None or table.empty:
        raise PodiumError(
            f"names file {path} lists no images; "
            "expected a CSV with a name column and one row per image"
        )
    names = [image_id_to_name(n) for n in table[column].tolist() if str(n).strip()]
    return list(dict.fromkeys(names))  # first occurrence order, duplicates dropped
