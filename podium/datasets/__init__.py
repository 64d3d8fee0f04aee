"""Segmentation datasets from folders: readers (PNG/TIFF, 8/16-bit), normalisation, albumentations
pipelines from YAML, split files, Kaggle RLE CSV masks, exclusion lists and the builders the
runner and `podium predict` call.
Nothing here imports Catalyst."""

from podium.lazy import lazy_exports


# each imported when first read (podium/lazy.py): no torch or albumentations for one module
lazy_exports(
    __name__,
    {
        "build_segmentation_dataset": "podium.datasets.builder",
        "build_segmentation_datasets": "podium.datasets.builder",
        "check_data_keys": "podium.datasets.builder",
        "RleTable": "podium.datasets.csv_rle",
        "read_exclusion_list": "podium.datasets.exclusion",
        "ImageFolderDataset": "podium.datasets.image_folder",
        "resolve_layout": "podium.datasets.image_folder",
        "Normalizer": "podium.datasets.normalize",
        "build_normalizer": "podium.datasets.normalize",
        "read_image": "podium.datasets.readers",
        "read_mask": "podium.datasets.readers",
        "rle_decode": "podium.datasets.rle",
        "rle_encode": "podium.datasets.rle",
        "read_split": "podium.datasets.split",
        "select_names": "podium.datasets.split",
        "SelfTrainingDataset": "podium.datasets.soft_labels",
        "SoftLabelDataset": "podium.datasets.soft_labels",
        "PositiveCrop": "podium.datasets.crops",
        "RandomScaleCrop": "podium.datasets.crops",
        "make_folds": "podium.datasets.folds",
        "Letterbox": "podium.datasets.letterbox",
        "letterbox": "podium.datasets.letterbox",
        "letterbox_meta": "podium.datasets.letterbox",
        "unletterbox": "podium.datasets.letterbox",
        "PRESETS": "podium.datasets.presets",
        "compute_stats": "podium.datasets.stats",
        "build_transforms": "podium.datasets.transforms",
        "seed_transforms": "podium.datasets.transforms",
        "transforms_to_dict": "podium.datasets.transforms",
        "worker_init_fn": "podium.datasets.transforms",
    },
)
