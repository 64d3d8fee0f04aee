"""The onnxruntime backend of `podium predict --model model.onnx`: no run directory, no torch
model code.

`OnnxModel` stands where a run's `LoadedModel` stands in the prediction pipeline: it reads
the file's podium metadata (`podium.inference.onnx_metadata`) for how images are read, the
mode, classes and post-processing. `OnnxPredictor` maps a normalised batch to probabilities
with the session (activation, and any TTA or ensemble, are inside the graph); podium's tiles
and TTA still wrap it like the torch predictor, so the pipeline writes the same files.
`OnnxModule` shows a task's export as the torch model its task predictor expects
(`CenterNetPredictor(OnnxModule(session), …)`): image (+ scalar inputs) → dict of outputs;
`OnnxModule.open(path, providers, threads)` is what `podium predict-<task> --model` loads.
"""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from podium.errors import PodiumError
from podium.inference.onnx_metadata import PRESENCE_OUTPUT, open_session, read_metadata
from podium.inference.predictor import ProbabilityPredictor

__all__ = ["PROVIDERS", "OnnxModel", "OnnxModule", "OnnxPredictor", "resolve_providers"]

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def resolve_providers(names: Optional[Sequence[str]]) -> List[str]:
    """Short names (cpu, cuda, tensorrt) or onnxruntime's names → installed providers, in order;
    one that this onnxruntime does not have → PodiumError listing those it has."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    names = list(names or ["cpu"])
    resolved = [PROVIDERS.get(str(name).lower(), str(name)) for name in names]
    for name, provider in zip(names, resolved):
        if provider not in available:
            raise PodiumError(
                f"execution provider {name} is not available in this onnxruntime; expected one "
                f"of: {', '.join(available)} (CUDA needs the onnxruntime-gpu package)"
            )
    return resolved


class OnnxPredictor(ProbabilityPredictor):
    """Normalised images B×C×H×W → the graph's probabilities B×K×H×W (a torch tensor)."""

    def __init__(
        self,
        session,
        in_channels: int,
        tta: Optional[Callable] = None,
        tiles: Optional[Callable] = None,
        where: str = "the ONNX model",
    ):
        super().__init__(tta, tiles)
        self.session, self.in_channels, self.where = session, int(in_channels), where
        self.device = torch.device("cpu")  # onnxruntime takes and returns host arrays
        names = [output.name for output in session.get_outputs()]
        self.presence_key = PRESENCE_OUTPUT if PRESENCE_OUTPUT in names else None

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self._forward(images)[0]

    def _forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(probabilities, presence probabilities or None) of one session run."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise PodiumError(
                f"{self.where} takes images with {self.in_channels} channel(s) (its metadata "
                f"podium.in_channels), got a batch of shape {tuple(images.shape)}"
            )
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        names = ["probabilities"] + ([PRESENCE_OUTPUT] if self.presence_key else [])
        outputs = [
            torch.from_numpy(o).to(images.device) for o in self.session.run(names, {"image": array})
        ]
        return outputs[0], (outputs[1] if self.presence_key else None)


class OnnxModel:
    """An exported file in the prediction pipeline: what `LoadedModel` holds for a run, from
    the file's metadata (entry: {onnx: PATH, weight: W})."""

    def __init__(
        self,
        entry: Dict[str, Any],
        providers: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
    ):
        self.path = Path(entry["onnx"])
        self.run, self.checkpoint, self.weight = str(self.path), "onnx", entry["weight"]
        self.session = open_session(self.path, resolve_providers(providers), threads)
        meta = read_metadata(self.session, self.path)
        if meta["task"] != "segmentation":
            raise PodiumError(
                f"{self.path} is a {meta['task']} model; the segmentation pipeline takes "
                f"segmentation exports: predict it with podium predict-{meta['task']} --model "
                f"{self.path}"
            )
        self.metadata = meta
        reading = dict(meta["reading"])
        self.valid_transforms = reading.pop("valid_transforms", None)
        self.data = reading
        self.num_classes = int(meta["num_classes"])
        self.mode = meta["mode"]
        self.class_names = meta["class_names"]
        self.in_channels = int(meta["in_channels"])
        self.metric_classes = meta["metric_classes"]
        self.own_targets = False
        self.postprocess = meta["postprocess"]
        self.model = None  # no torch model: the session predicts

    def predictor(self, tta=None, tiles=None) -> OnnxPredictor:
        return OnnxPredictor(self.session, self.in_channels, tta, tiles, where=str(self.path))

    def describe(self) -> Dict[str, Any]:
        return {
            "onnx": str(self.path),
            "weight": self.weight,
            "exported_from": self.metadata["ensemble"],
            "tta_in_graph": self.metadata["tta"],
        }


class OnnxModule(nn.Module):
    """A task's exported file as a torch model: `module(image, **scalars)` → {output: tensor},
    with the model's attributes (output_stride, scalar_inputs, …) from the metadata. Outputs
    come back on the image's device (onnxruntime takes and returns host arrays)."""

    def __init__(self, session, path="the ONNX model"):
        super().__init__()
        self.session, self.path = session, path
        self.metadata = read_metadata(session, path)
        self.inputs, self.outputs = list(self.metadata["inputs"]), list(self.metadata["outputs"])
        for name, value in self.metadata["attributes"].items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)

    @classmethod
    def open(
        cls, path, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None
    ) -> "OnnxModule":
        """The file at `path` in an onnxruntime session on `providers` (short names: cpu, cuda,
        tensorrt; default cpu) with `threads` intra-op threads."""
        return cls(open_session(path, resolve_providers(providers), threads), path)

    def forward(self, image: torch.Tensor, **scalars: torch.Tensor) -> Dict[str, torch.Tensor]:
        tensors = {"image": image, **scalars}
        missing = [name for name in self.inputs if name not in tensors]
        if missing:
            raise PodiumError(
                f"the exported model needs the input {missing[0]}; got {list(tensors)}"
            )
        feeds = {
            name: np.ascontiguousarray(tensors[name].detach().cpu().numpy(), dtype=np.float32)
            for name in self.inputs
        }
        results = self.session.run(self.outputs, feeds)
        return {
            name: torch.from_numpy(value).to(image.device)
            for name, value in zip(self.outputs, results)
        }
