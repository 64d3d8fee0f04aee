"""Probabilities from a trained model: batched, no grad, any device, optionally through TTA and
tiles.

`Predictor` is the one place where a forward pass becomes probabilities:

    images ─► [tiles: one C×H×W image at a time, cut into overlapping tiles] ─► [TTA views]
           ─► model ─► sigmoid (binary, multilabel) | softmax (multiclass) ─► mean of the views
           ─► [tiles merged with their weights] ─► B×K×H×W probabilities

TTA averages probabilities (not logits) and so do the tiles, so an ensemble of predictors
(`podium.inference.ensemble`) averages like-for-like maps.

A model with aux heads (`podium.models.aux_heads`) returns a dict: its "logits" are the mask,
and its presence head (if any) gives per-image presence probabilities B×K (sigmoid), averaged
over the TTA views and, with tiles, the highest over an image's tiles ("some tile holds the
class"): `Predictor.outputs(images)` returns both, `Predictor(images)` the maps only.
"""

from functools import partial
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from podium.errors import PodiumError
from podium.models.aux_heads import MASK_KEY, presence_head_name
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
    """TTA views and tiles around one forward pass: what every backend shares.

    A backend (the torch `Predictor` below, the onnxruntime `OnnxPredictor` of
    `podium.inference.onnx_predictor`) implements `probabilities(images) -> B×K×H×W`, or
    `_forward(images) -> (probabilities, presence B×K or None)` when it has a presence head;
    the prediction pipeline calls the predictor on normalised batches and writes what it returns.
    """

    presence_key: Optional[str] = None  # the name of a presence head, if the model has one

    def __init__(self, tta: Optional[Callable] = None, tiles: Optional[Callable] = None):
        self.tta = tta
        self.tiles = tiles

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.outputs(images)[0]

    def outputs(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(probabilities B×K×H×W, presence probabilities B×K or None without a presence head)."""
        if self.tiles is None:
            presence: List[torch.Tensor] = []
            maps = self._views(images, presence)
            return maps, (presence[0] if presence else None)
        maps, per_image = [], []
        for image in images:
            tiles: List[torch.Tensor] = []
            maps.append(self.tiles(partial(self._views, presence=tiles), image))
            if tiles:
                per_image.append(torch.cat(tiles).amax(dim=0))
        return torch.stack(maps), (torch.stack(per_image) if per_image else None)

    def _views(self, images: torch.Tensor, presence: List[torch.Tensor]) -> torch.Tensor:
        """TTA'd maps of `images`; their presence (mean over the views) appended to `presence`."""
        views: List[torch.Tensor] = []

        def forward(batch: torch.Tensor) -> torch.Tensor:
            maps, view_presence = self._forward(batch)
            if view_presence is not None:  # TTA may batch several views: k·B rows
                views.extend(view_presence.view(-1, len(images), view_presence.shape[-1]))
            return maps

        maps = self.tta(forward, images) if self.tta is not None else forward(images)
        if views:
            presence.append(torch.stack(views).mean(dim=0))
        return maps

    def _forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.probabilities(images), None

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
        model: returns logits B×K×H×W (or a dict with them under "logits" and aux heads).
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
        self.presence_key = presence_head_name(model)  # None: the model has no presence head

    @torch.no_grad()
    def outputs(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return super().outputs(images.to(self.device))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """One forward pass and the activation of the mode."""
        return self._forward(images)[0]

    def _forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(probabilities, presence probabilities or None) of one forward pass."""
        logits = self.precision.forward(self.forward, self.model, self.precision.inputs(images))
        presence = None
        if isinstance(logits, Mapping) and MASK_KEY in logits:
            if self.presence_key is not None:
                presence = torch.sigmoid(logits[self.presence_key].float())
            logits = logits[MASK_KEY]
        if not isinstance(logits, torch.Tensor):
            raise PodiumError(
                f"the model returned {type(logits).__name__}; "
                "podium predict expects a logits tensor B×K×H×W"
            )
        return activate(logits, activation_of(self.mode, logits.shape[1])), presence


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """sigmoid, or softmax over the class axis (dim 1)."""
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)
