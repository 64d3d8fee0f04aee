"""Probabilities from a trained model: batched, no grad, any device, optionally through TTA and
tiles.

`Predictor` is the one place where a forward pass becomes probabilities:

    images ─► [tiles: one C×H×W image at a time, cut into overlapping tiles] ─► [TTA views]
           ─► model ─► sigmoid (binary, multilabel) | softmax (multiclass) ─► mean of the views
           ─► [tiles merged with their weights] ─► B×K×H×W probabilities

TTA averages probabilities (not logits) and so do the tiles, so an ensemble of predictors
(`podium.inference.ensemble`) averages like-for-like maps.
"""

from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from podium.errors import PodiumError
from podium.models.precision import Precision

__all__ = [
    "ProbabilityPredictor",
    "Predictor",
    "default_device",
    "MODES",
    "activate",
    "activation_of",
]

MODES = ("binary", "multilabel", "multiclass")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def activation_of(mode: Optional[str], channels: int) -> str:
    """sigmoid for binary / multilabel, softmax for multiclass; unknown mode: by channel count."""
    if mode is None:
        return "sigmoid" if channels == 1 else "softmax"
    if mode not in MODES:
        raise PodiumError(
            f"prediction mode {mode!r} is not supported; expected one of: {', '.join(MODES)}"
        )
    return "softmax" if mode == "multiclass" else "sigmoid"


class ProbabilityPredictor:
    """TTA views and tiles around `probabilities(images)`: what every backend shares.

    A backend (the torch `Predictor` below, the onnxruntime `OnnxPredictor` of
    `podium.inference.onnx_predictor`) implements `probabilities(images) -> B×K×H×W`; the
    prediction pipeline calls the predictor on normalised batches and writes what it returns.
    """

    def __init__(self, tta: Optional[Callable] = None, tiles: Optional[Callable] = None):
        self.tta = tta
        self.tiles = tiles

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.tiles is not None:
            return torch.stack([self.tiles(self._views, image) for image in images])
        return self._views(images)

    def _views(self, images: torch.Tensor) -> torch.Tensor:
        return (
            self.tta(self.probabilities, images)
            if self.tta is not None
            else self.probabilities(images)
        )

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement probabilities")

    def predict_dataset(
        self, dataset: Dataset, batch_size: int = 8, num_workers: int = 0
    ) -> Iterator[Tuple[dict, np.ndarray]]:
        """Yields (sample, probabilities C×H×W as float32 numpy) in dataset order (same-size
        images)."""
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        for batch in loader:
            probabilities = self(batch["image"]).cpu().numpy()
            for index, probability in enumerate(probabilities):
                sample = {key: value[index] for key, value in batch.items()}
                yield sample, probability


class Predictor(ProbabilityPredictor):
    """model → probabilities B×K×H×W on the predictor's device.

    Args:
        model: returns logits B×K×H×W.
        device: default: the GPU if there is one, else the CPU.
        forward: `forward(model, images) -> logits` (default `model(images)`).
        mode: binary | multilabel | multiclass (chooses the activation); None: sigmoid for one
            output channel, softmax otherwise.
        tta: `tta(fn, images)` (podium.inference.tta.build_tta), or None.
        tiles: a `TiledPrediction`, or None for whole images.
        precision, memory_format, compile: how the forward pass runs
            (podium.models.precision: fp32 | bf16 | fp16 | auto, contiguous | channels_last |
            auto, false | true | a torch.compile mode); the logits come back as float32.
    """

    def __init__(
        self,
        model: nn.Module,
        device: Optional[torch.device] = None,
        forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
        mode: Optional[str] = None,
        tta: Optional[Callable] = None,
        tiles: Optional[Callable] = None,
        precision: str = "fp32",
        memory_format: str = "contiguous",
        compile: Any = False,
    ):
        super().__init__(tta, tiles)
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = Precision(precision, self.device, memory_format, compile, where="")
        self.model = self.precision.prepare(model.to(self.device).eval())
        self.forward = forward or (lambda model, images: model(images))
        if mode is not None:
            activation_of(mode, 1)  # checks the name
        self.mode = mode

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return super().__call__(images.to(self.device))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """One forward pass and the activation of the mode."""
        logits = self.precision.forward(self.forward, self.model, self.precision.inputs(images))
        if not isinstance(logits, torch.Tensor):
            raise PodiumError(
                f"the model returned {type(logits).__name__}; "
                "podium predict expects a logits tensor B×K×H×W"
            )
        return activate(logits, activation_of(self.mode, logits.shape[1]))


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """sigmoid, or softmax over the class axis (dim 1)."""
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)
