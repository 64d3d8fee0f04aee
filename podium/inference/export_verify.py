"""`podium export --verify`: the exported file against podium's torch model on the same images.

    images = verification_images(models)                          # the run's own + a random one
    verify_segmentation("model.onnx", models, images, tta="d4")   # → largest |torch − ONNX|
    verify_task("centernet.onnx", run)                            # → {output: largest |…|}

The reference is podium's own torch `Predictor` (its TTA, the ensemble's weighted mean) for a
segmentation export and the model's raw outputs for a task's; a shape that differs (a size
frozen when the graph was traced) is an infinite difference.
"""

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor

from podium.errors import PodiumError
from podium.inference.checkpoint import load_model, run_data_config
from podium.inference.ensemble import average_presence, average_probabilities
from podium.inference.export import example_size, fixed_size, open_export, pad_multiple_of
from podium.inference.geometry import ImagePipeline
from podium.inference.pipeline import LoadedModel, reading_params
from podium.inference.predictor import Predictor
from podium.inference.reading import build_dataset

__all__ = ["difference", "verification_images", "verify_segmentation", "verify_task"]


def verification_images(models: Sequence[LoadedModel], count: int = 2) -> List[Tensor]:
    """Batches to compare on: up to `count` of the run's own images read as validation read
    them (when its data folder is here), and a seeded random image whose sides are not
    multiples of the model's stride (the padding inside the graph)."""
    first = models[0]
    channels = int(first.in_channels or first.data.get("in_channels") or 3)
    generator = torch.Generator().manual_seed(0)
    multiple = pad_multiple_of(first.model)
    batches = [torch.randn(1, channels, *example_size(multiple), generator=generator)]
    root = first.data.get("root")
    if root is not None and Path(root).is_dir():
        data = {"root": root, "split": first.data.get("valid_split")}
        reading = reading_params(first, Path(root), data)
        try:
            dataset = build_dataset(
                Path(root), data, reading, ImagePipeline(first.valid_transforms)
            )
        except PodiumError:  # another layout here: the random image still checks the graph
            dataset = []
        batches += [dataset[i]["image"][None] for i in range(min(count, len(dataset)))]
    return batches


def verify_segmentation(
    path, models: Sequence[LoadedModel], images: Sequence[Tensor], tta: str = "none"
) -> float:
    """Largest |probability| difference between the exported file and podium's torch predictor
    (its TTA, the ensemble's weighted mean) over the image batches; presence too, if exported."""
    from podium.inference.tta import build_tta

    run, _ = open_export(path)
    views = None if tta == "none" else build_tta(tta)
    predictors = [Predictor(m.model, torch.device("cpu"), mode=m.mode, tta=views) for m in models]
    weights = [m.weight for m in models]
    largest = 0.0
    for batch in images:
        outputs = [predictor.outputs(batch) for predictor in predictors]
        reference = average_probabilities([maps for maps, _ in outputs], weights)
        exported = run({"image": batch.numpy().astype(np.float32)})
        largest = max(largest, difference(exported[0], reference.numpy()))
        presence = average_presence([None if p is None else p.numpy() for _, p in outputs], weights)
        if presence is not None:
            largest = max(largest, difference(exported[1], presence))
    return largest


def difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest |got − expected|; infinite when the shapes differ (a size frozen in the graph)."""
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def verify_task(path, run, checkpoint: str = "best", ema="auto") -> Dict[str, float]:
    """Largest difference per output between the exported file and the torch model, on seeded
    random images at two sizes (one not a multiple of the stride)."""
    model, config = load_model(Path(run), checkpoint, ema=ema)
    channels = int((config.get("model") or {}).get("in_channels", 3))
    scalars = list(getattr(model, "scalar_inputs", ()))
    exported, names = open_export(path)
    generator = torch.Generator().manual_seed(0)
    multiple = pad_multiple_of(model)
    largest: Dict[str, float] = {}
    fixed = fixed_size(model, run_data_config(config))
    sizes = [fixed] * 2 if fixed else [example_size(multiple), [4 * multiple, 2 * multiple + 1]]
    for batch, size in zip((1, 2), sizes):
        image = torch.randn(batch, channels, *size, generator=generator)
        extra = [torch.rand(batch, 1, generator=generator) for _ in scalars]
        with torch.no_grad():
            reference = model(image, **dict(zip(scalars, extra)))
        feeds = {"image": image.numpy(), **{n: v.numpy() for n, v in zip(scalars, extra)}}
        for name, value in zip(names, exported(feeds)):
            largest[name] = max(largest.get(name, 0.0), difference(value, reference[name].numpy()))
    return largest
