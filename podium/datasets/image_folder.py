"""A segmentation dataset over `root/images/NAME.*` and `root/masks/NAME.png`.

Order of operations per item, chosen so augmentation behaves the same for 8- and 16-bit data:
read raw pixels → select channels → scale to float32 [0, 1] (`Normalizer.scale`) → augment image
and mask jointly (albumentations `image=`, `mask=`) → mean/std (`Normalizer.standardize`) →
tensors. Brightness/contrast transforms thus see [0, 1] floats whatever the bit depth; the flip
side is that transforms needing uint8 input (CLAHE, JPEG compression …) are not supported.

Everything checkable without decoding images (folders, files, names) is checked on
construction, so a bad data block fails at start-up and not after an epoch.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.normalize import build_normalizer
from podium.datasets.readers import IMAGE_EXTENSIONS, MASK_EXTENSIONS, read_image, read_mask
from podium.datasets.transforms import build_transforms
from podium.errors import PodiumError

__all__ = ["ImageFolderDataset", "index_folder"]


class ImageFolderDataset(Dataset):
    """Items: `image` float32 C×H×W, `mask` (float32 1×H×W of 0/1, or int64 H×W classes), `name`."""

    def __init__(
        self,
        root,
        names: Sequence[str],
        transforms=None,
        normalize=None,
        channels: Optional[Sequence[int]] = None,
        num_classes: int = 1,
        image_dir: str = "images",
        mask_dir: str = "masks",
        with_masks: bool = True,
    ):
        self.root = str(root)
        self.names = [str(n) for n in names]
        self.transforms = build_transforms(transforms) if not callable(transforms) else transforms
        self.normalizer = build_normalizer(normalize)
        self.channels = _check_channels(channels)
        self.num_classes = _check_num_classes(num_classes)
        self.with_masks = bool(with_masks)
        if self.channels is not None:
            self.normalizer.check_channels(len(self.channels))
        self.image_paths = self._find_images(image_dir)
        self.mask_paths = self._find_masks(mask_dir) if self.with_masks else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Dict[str, object]:
        name = self.names[index]
        image = self.normalizer.scale(self._read_image(index))
        mask = self._read_mask(index) if self.with_masks else None
        if mask is not None and mask.shape != image.shape[:2]:
            raise PodiumError(
                f"mask {self.mask_paths[index]} is {mask.shape[1]}×{mask.shape[0]} but image "
                f"{self.image_paths[index]} is {image.shape[1]}×{image.shape[0]}; expected the same size"
            )
        if self.transforms is not None:
            image, mask = _augment(self.transforms, image, mask)
        image = self.normalizer.standardize(image)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "name": name}
        if mask is not None:
            item["mask"] = self._mask_tensor(mask)
        return item

    def _find_images(self, image_dir: str) -> List[str]:
        """Image path per name; all names missing an image are reported at once."""
        if not os.path.isdir(self.root):
            raise PodiumError(f"data folder {self.root} does not exist (expected images/ and masks/ inside)")
        if not self.names:
            raise PodiumError(f"no image names were given for data folder {self.root}")
        folder = os.path.join(self.root, image_dir)
        index = index_folder(folder, IMAGE_EXTENSIONS, "image")
        missing = [n for n in self.names if n not in index]
        if missing:
            raise PodiumError(
                f"{len(missing)} name(s) have no image file in {folder}: {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''} (expected NAME with extension {'/'.join(IMAGE_EXTENSIONS)})"
            )
        return [os.path.join(folder, index[n]) for n in self.names]

    def _find_masks(self, mask_dir: str) -> List[str]:
        """Mask path per name; the first image without a mask is named with the path expected."""
        folder = os.path.join(self.root, mask_dir)
        index = index_folder(folder, MASK_EXTENSIONS, "mask")
        missing = [i for i, n in enumerate(self.names) if n not in index]
        if missing:
            first = missing[0]
            others = f" ({len(missing) - 1} more images have no mask)" if len(missing) > 1 else ""
            raise PodiumError(
                f"image {self.image_paths[first]} has no mask; expected "
                f"{os.path.join(folder, self.names[first] + '.png')}{others}"
            )
        return [os.path.join(folder, index[n]) for n in self.names]

    def _read_image(self, index: int) -> np.ndarray:
        image = read_image(self.image_paths[index])
        if self.channels is None:
            return image
        if max(self.channels) >= image.shape[-1]:
            raise PodiumError(
                f"channels {self.channels} requested but image {self.image_paths[index]} has "
                f"{image.shape[-1]} channel(s) (indices 0..{image.shape[-1] - 1})"
            )
        return np.ascontiguousarray(image[..., self.channels])

    def _read_mask(self, index: int) -> np.ndarray:
        """Mask as uint8 0/1 (binary) or uint8/int32 class indices, ready for albumentations."""
        mask = read_mask(self.mask_paths[index])
        if self.num_classes == 1:
            return (mask > 0).astype(np.uint8)
        if mask.min() < 0 or mask.max() >= self.num_classes:
            raise PodiumError(
                f"mask {self.mask_paths[index]} has values {int(mask.min())}..{int(mask.max())} but "
                f"num_classes is {self.num_classes}; expected class indices 0..{self.num_classes - 1}"
            )
        return mask.astype(np.uint8 if self.num_classes <= 256 else np.int32)

    def _mask_tensor(self, mask: np.ndarray) -> torch.Tensor:
        if self.num_classes == 1:
            return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None])
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))


def index_folder(folder: str, extensions: Sequence[str], kind: str) -> Dict[str, str]:
    """{stem: file name} for files with the given extensions; ambiguous stems are an error."""
    if not os.path.isdir(folder):
        raise PodiumError(f"{kind} folder {folder} does not exist (expected NAME{extensions[0]} files inside)")
    index: Dict[str, str] = {}
    rank = {ext: i for i, ext in enumerate(extensions)}
    for file_name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file_name)
        if ext.lower() not in rank:
            continue
        if stem in index and kind == "image":
            raise PodiumError(f"two image files for one name in {folder}: {index[stem]} and {file_name}")
        if stem not in index or rank[ext.lower()] < rank[os.path.splitext(index[stem])[1].lower()]:
            index[stem] = file_name
    return index


def _augment(transforms, image: np.ndarray, mask: Optional[np.ndarray]):
    """Apply one albumentations call to image and mask together, so geometry stays aligned."""
    if mask is None:
        return transforms(image=image)["image"], None
    out = transforms(image=image, mask=mask)
    return out["image"], out["mask"]


def _check_channels(channels) -> Optional[List[int]]:
    if channels is None:
        return None
    if isinstance(channels, int) and not isinstance(channels, bool):
        channels = [channels]
    if not isinstance(channels, (list, tuple)) or not channels or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels
    ):
        raise PodiumError(f"channels must be a non-empty list of channel indices like [0, 2], got {channels!r}")
    return list(channels)


def _check_num_classes(num_classes) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise PodiumError(f"num_classes must be a positive integer (1 for a binary mask), got {num_classes!r}")
    return num_classes
