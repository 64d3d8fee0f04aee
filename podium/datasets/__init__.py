"""Segmentation datasets from folders: readers (PNG/TIFF, 8/16-bit), normalisation, albumentations
pipelines from YAML, split files, Kaggle RLE CSV masks, exclusion lists and the builders the
runner and `podium predict` call.
Nothing here imports Catalyst."""

from podium.datasets.builder import (
    build_segmentation_dataset,
    build_segmentation_datasets,
    check_data_keys,
)
from podium.datasets.csv_rle import RleTable
from podium.datasets.exclusion import read_exclusion_list
from podium.datasets.image_folder import ImageFolderDataset, resolve_layout
from podium.datasets.normalize import Normalizer, build_normalizer
from podium.datasets.readers import read_image, read_mask
from podium.datasets.rle import rle_decode, rle_encode
from podium.datasets.split import read_split, select_names
from podium.datasets.soft_labels import SelfTrainingDataset, SoftLabelDataset
from podium.datasets.crops import PositiveCrop, RandomScaleCrop
from podium.datasets.folds import make_folds
from podium.datasets.letterbox import Letterbox, letterbox, letterbox_meta, unletterbox
from podium.datasets.presets import PRESETS
from podium.datasets.stats import compute_stats
from podium.datasets.transforms import (
    build_transforms,
    seed_transforms,
    transforms_to_dict,
    worker_init_fn,
)

__all__ = [
    "PRESETS",
    "Letterbox",
    "PositiveCrop",
    "RandomScaleCrop",
    "compute_stats",
    "letterbox",
    "letterbox_meta",
    "make_folds",
    "seed_transforms",
    "unletterbox",
    "worker_init_fn",
    "ImageFolderDataset",
    "Normalizer",
    "build_normalizer",
    "build_segmentation_dataset",
    "build_segmentation_datasets",
    "build_transforms",
    "check_data_keys",
    "read_image",
    "read_mask",
    "RleTable",
    "read_exclusion_list",
    "resolve_layout",
    "rle_decode",
    "rle_encode",
    "read_split",
    "select_names",
    "SelfTrainingDataset",
    "SoftLabelDataset",
    "transforms_to_dict",
]
