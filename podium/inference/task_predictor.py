"""What the predictor of every task (`podium/tasks/<task>/predict.py`) shares: `TaskPredictor`
(the model in eval mode on a device — default the GPU if there is one —, the run's normalisation
— default ImageNet's —, its input channels checked, batches), `load_task_model` (model and
settings of a run, or of its export: `load_run` / `OnnxModule`), `run_split` (the run's own
split rebuilt) and `write_rows` (CSV). A task's subclass adds its forward pass (TTA through
`podium.inference.tta`) and what it makes of the outputs.
"""

import csv
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from podium.datasets.normalize import IMAGENET_NORMALIZE, build_normalizer
from podium.datasets.readers import read_image
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.checkpoint import load_model, run_data_config
from podium.inference.onnx_predictor import OnnxModule
from podium.inference.predictor import default_device
from podium.targets import resolve_target

__all__ = [
    "TaskPredictor",
    "load_run",
    "load_task_model",
    "run_split",
    "trained_on",
    "write_rows",
]


class TaskPredictor:
    """A trained model on `device` in eval mode, the run's normalisation and input channels."""

    def __init__(self, model: nn.Module, normalize=None, batch_size=8, device=None, channels=3):
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.normalizer = build_normalizer(normalize, default=IMAGENET_NORMALIZE)
        self.batch_size, self.channels = int(batch_size), int(channels)

    def check_channels(self, image: np.ndarray, name: str = "the image") -> np.ndarray:
        """The H×W×C image's first `channels` channels (RGBA → RGB); fewer → PodiumError."""
        if image.shape[-1] < self.channels:
            raise PodiumError(
                f"{name} has {image.shape[-1]} channel(s); the model expects {self.channels}"
            )
        return image[..., : self.channels]

    def read_images(self, paths: Sequence) -> Iterator[Tuple[Path, np.ndarray]]:
        """(path, image with the model's channels) per file, read one at a time."""
        if not paths:
            raise PodiumError(
                "no images to predict: give image files or a folder holding .png/.jpg/.tif files"
            )
        return ((Path(p), self.check_channels(read_image(p), f"image {p}")) for p in paths)

    def standardize(self, image: np.ndarray) -> torch.Tensor:
        """C×H×W float tensor of a raw H×W×C image, normalised as the run's data."""
        array = self.normalizer(self.check_channels(image))
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), np.float32))

    def batches(self, samples: Sequence) -> Iterator[List[Any]]:
        """The samples (a dataset or a list), `batch_size` at a time."""
        for start in range(0, len(samples), self.batch_size):
            yield [samples[i] for i in range(start, min(start + self.batch_size, len(samples)))]


def load_run(
    run,
    checkpoint: str = "best",
    check: Optional[Callable[[nn.Module], bool]] = None,
    task: str = "",
    name: str = "",
) -> Tuple[nn.Module, Dict[str, Any], Dict[str, Any], int]:
    """(the run's model with the checkpoint's weights, its config, its `data:` block, its input
    channels); a model that fails `check` is another task's run → PodiumError naming the model
    `name` expected."""
    model, config = load_model(Path(run), checkpoint)
    if check is not None and not check(model):
        block = config["model"]
        raise PodiumError(
            f"{run} is not a {task} run (model {block.get('name') or block.get('_target_')}); "
            f"expected model name: {name} (_target_: podium.models.create_model)"
        )
    channels = int((config.get("model") or {}).get("in_channels", 3))
    return model, config, run_data_config(config), channels


def load_task_model(
    source,
    checkpoint: Optional[str],
    task: str,
    settings: Callable[[Mapping[str, Any]], Dict[str, Any]],
    check: Optional[Callable[[nn.Module], bool]] = None,
    title: str = "",
) -> Tuple[nn.Module, Optional[Dict[str, Any]], Dict[str, Any], int]:
    """(model, the run's config — None for an export —, the predictor's settings, input
    channels) of `source`: a run directory (the `checkpoint`'s weights, default best; `settings`
    of its config) or an `OnnxModule` of a `task` run's export (its metadata `reading`, which
    `podium export` wrote with the same `settings`). Either way the predictor is built alike."""
    if not isinstance(source, OnnxModule):
        model, config, _, channels = load_run(source, checkpoint or "best", check, title, task)
        return model, config, settings(config), channels
    meta = source.metadata
    if meta["task"] != task:
        command = "predict" if meta["task"] == "segmentation" else f"predict-{meta['task']}"
        raise PodiumError(
            f"{source.path} is the export of a {meta['task']} run (metadata podium.task); "
            f"expected a {task} export (predict it with podium {command} --model)"
        )
    reading = meta["reading"] or {}
    keys = list(settings({}))  # its names: those of any config's, here all at their defaults
    missing = [key for key in keys if key not in reading]
    if missing:
        raise PodiumError(
            f"{source.path} lacks {missing[0]!r} in its metadata podium.reading (exported by "
            f"podium {meta['version']}); expected {', '.join(keys)}: export the run again"
        )
    return source, None, {key: reading[key] for key in keys}, int(meta["in_channels"])


def trained_on(data: Mapping[str, Any], builder: Callable) -> bool:
    """Whether a `data:` block's `_target_` names `builder` (by any of its import paths)."""
    try:
        return resolve_target(data.get("_target_"), "data") is builder
    except PodiumError:
        return False


def run_split(config: Mapping[str, Any], builder: Callable, split: str):
    """The dataset of the run's `split`, rebuilt from its `data:` block without the train/valid
    transforms; a run not trained on `builder` → PodiumError."""
    params = run_data_config(config)
    if not trained_on(params, builder):
        raise PodiumError(
            f"the run was not trained on {builder.__module__}.{builder.__name__} (its "
            f"data/_target_ is {params.get('_target_')}); use --images for other data"
        )
    for key in ("_target_", "train_transforms", "valid_transforms"):
        params.pop(key, None)
    return builder(**{**params, "splits": [split]})[split]


def write_rows(rows: Sequence[Mapping[str, Any]], path, columns: Sequence[str] = ()) -> Path:
    """Rows to CSV, atomically: `columns` first (those some row has; all without rows), then
    every other key in the order it first appears; a key a row lacks is left empty."""
    header = [column for column in columns if not rows or any(column in row for row in rows)]
    for row in rows:
        header += [key for key in row if key not in header]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    return write_atomically(path, write)
