"""The modules `podium export` traces: what prediction does after normalisation, as one graph.

`SegmentationGraph`: normalised images N×C×H×W → probabilities N×K×H×W — each model's
activation (sigmoid / softmax), the mean over the TTA views (flips and transposes, done and
undone with `podium.inference.tta`'s own `augment` / `deaugment_maps`), and the weighted mean
of the ensemble's models (`mean` of `podium.inference.ensemble`). Models with a presence head
(`model: aux_heads`) add a second output, presence N×K: its sigmoid, averaged over the views
and weighted over the models that have one, as the torch pipeline does. A task's model
(`OutputsGraph`) keeps its raw outputs, one named graph output per key of its output dict:
the task's predictor decodes them.

Rescaled TTA views are not exported: their sizes would be frozen at the traced example's size.
"""

from typing import List, Sequence

import torch
from torch import Tensor, nn

from podium.errors import PodiumError
from podium.inference.predictor import activate
from podium.models.aux_heads import MASK_KEY, presence_head_name
from podium.inference.tta import augment, deaugment_maps, dihedral_views

__all__ = ["GRAPH_TTA", "SegmentationGraph", "OutputsGraph"]

GRAPH_TTA = ("none", "flip", "d2", "d4")


class SegmentationGraph(nn.Module):
    """Images → probabilities: activation, TTA views, weighted ensemble mean (module docstring)."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float],
        activation: str,
        tta: str = "none",
    ):
        super().__init__()
        if tta not in GRAPH_TTA:
            raise PodiumError(
                f"--tta {tta} cannot go inside an ONNX graph; expected one of: "
                f"{', '.join(GRAPH_TTA)} (rescaled views would be frozen at one image size)"
            )
        self.models = nn.ModuleList(models)
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        self.activation = activation
        self.views = dihedral_views(tta)
        self.presence_keys = [presence_head_name(model) for model in models]
        with_head = [w for w, key in zip(self.weights, self.presence_keys) if key is not None]
        self.presence_total = sum(with_head)  # 0: no model has a presence head

    @property
    def has_presence(self) -> bool:
        return self.presence_total > 0

    def forward(self, image: Tensor):
        size = image.shape[-2:]
        result, presence = None, None
        for model, weight, key in zip(self.models, self.weights, self.presence_keys):
            for view in self.views:
                output = model(augment(image, view))
                logits = output[MASK_KEY] if isinstance(output, dict) else output
                probabilities = activate(logits, self.activation)
                part = deaugment_maps(probabilities, view, size) * (weight / len(self.views))
                result = part if result is None else result + part
                if key is not None:
                    share = weight / self.presence_total / len(self.views)
                    part = torch.sigmoid(output[key]) * share
                    presence = part if presence is None else presence + part
        return (result, presence) if self.has_presence else result


class OutputsGraph(nn.Module):
    """A task model's dict of outputs as a tuple in `names` order (ONNX outputs are a list)."""

    def __init__(self, model: nn.Module, names: Sequence[str], scalar_inputs: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.names: List[str] = list(names)
        self.scalar_inputs = list(scalar_inputs)

    def forward(self, image: Tensor, *scalars: Tensor):
        inputs = dict(zip(self.scalar_inputs, scalars))
        outputs = self.model(image, **inputs)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module, example: Tensor, scalars: Sequence[Tensor] = ()) -> List[str]:
    """The keys of a task model's output dict (one forward of the example)."""
    inputs = dict(zip(getattr(model, "scalar_inputs", ()), scalars))
    with torch.no_grad():
        outputs = model(example, **inputs)
    if isinstance(outputs, Tensor):
        return []
    return list(outputs)
