"""Prediction in the original geometry of each image, whatever the run's valid pipeline did to it.

At prediction time the run's `valid_transforms` are applied to the *image only* (`ImagePipeline`):
the network sees what validation showed it, while the target mask stays at the image's
original size, where the predictions are scored and written. `ImagePipeline` also records the
original height and width, which `WithOriginalSize` adds to each sample (`original_size`),
since `ImageFolderDataset` items do not carry it.

`GeometryInverse` maps the network's output back: unchanged size → as is; a `Letterbox` →
`unletterbox` (crop the padding, resize back); a `Resize` → resize back. Any other transform
that moves pixels (crops, pads, flips …) cannot be undone from the size alone and is refused
when the dataset is built, before anything is predicted.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import albumentations as A
import numpy as np
from torch.utils.data import Dataset

from podium.datasets.letterbox import Letterbox, letterbox_meta, unletterbox
from podium.datasets.transforms import build_transforms
from podium.errors import PodiumError

__all__ = ["ImagePipeline", "WithOriginalSize", "GeometryInverse"]

INVERTIBLE = (Letterbox, A.Resize)


class ImagePipeline:
    """The run's valid pipeline applied to the image only; remembers the last input's H×W.

    Passed as `transforms=` to `ImageFolderDataset`, which calls it as
    `pipeline(image=..., mask=...)` after reading and scaling the image.
    """

    def __init__(self, spec: Any = None):
        self.compose = build_transforms(spec)
        self.inverse = GeometryInverse(self.compose)
        self.last_size: Optional[Tuple[int, int]] = None

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray] = None, **_) -> Dict[str, Any]:
        self.last_size = (int(image.shape[0]), int(image.shape[1]))
        if self.compose is not None:
            image = self.compose(image=image)["image"]
        return {"image": image, "mask": mask}


class WithOriginalSize(Dataset):
    """Items of an ImageFolderDataset built with an `ImagePipeline`, plus `original_size` (H, W)."""

    def __init__(self, dataset: Dataset, pipeline: ImagePipeline):
        self.dataset, self.pipeline = dataset, pipeline

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = dict(self.dataset[index])
        item["original_size"] = self.pipeline.last_size  # set by the read that produced this item
        return item


class GeometryInverse:
    """Maps C×h×w network outputs back to an image's original H×W (see the module docstring)."""

    def __init__(self, compose: Optional[A.BaseCompose]):
        geometric = [t for t in _flatten(compose) if isinstance(t, A.DualTransform)]
        others = [t for t in geometric if not isinstance(t, INVERTIBLE)]
        if others or len(geometric) > 1:
            names = ", ".join(type(t).__name__ for t in geometric)
            raise PodiumError(
                f"the run's valid_transforms move pixels with {names}; "
                "podium predict can map predictions back to the original image only through one "
                "Letterbox or Resize (podium's models take any input size, "
                "so pads and crops are not needed at prediction time; "
                "use tiles for large images)"
            )
        self.transform = geometric[0] if geometric else None

    def __call__(self, output: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
        """output: C×h×w numpy (probabilities or an image) → C×H×W float32."""
        height, width = int(original_size[0]), int(original_size[1])
        if tuple(output.shape[-2:]) == (height, width):
            return output
        if self.transform is None:
            raise PodiumError(
                f"the network's output is {output.shape[-2]}×{output.shape[-1]} but the image "
                f"is {height}×{width}, and the valid pipeline has no Letterbox or Resize to undo"
            )
        if isinstance(self.transform, Letterbox):
            meta = letterbox_meta((height, width), (self.transform.height, self.transform.width))
        else:  # Resize: the whole output is the image, stretched
            size = [int(output.shape[-2]), int(output.shape[-1])]
            meta = {"original": [height, width], "resized": size, "size": size, "pad": [0, 0, 0, 0]}
        return np.ascontiguousarray(
            unletterbox(output.astype(np.float32), meta, channels_first=True)
        )


def _flatten(compose) -> List[A.BasicTransform]:
    if compose is None:
        return []
    if isinstance(compose, A.BaseCompose):
        return [leaf for child in compose.transforms for leaf in _flatten(child)]
    return [compose]
