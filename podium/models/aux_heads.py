"""Auxiliary per-image heads on the deepest encoder features of a segmentation model.

    model:
      name: unet
      num_classes: 1
      aux_heads:
        presence: {type: presence}                  # logits N×num_classes: "any pixel of class c"
        scale: {type: regression, outputs: 1}       # N×1, e.g. the ground sample distance

Each head is segmentation_models_pytorch's `ClassificationHead` design (its `aux_params`):
global average pool of the coarsest encoder map → dropout → linear. The model then returns a
dict {"logits": mask logits, <head name>: N×outputs}; a head's targets come from the batch
(`podium.losses.presence_targets` for presence, a data column for regression).

Head keys: `type` (presence | regression), `outputs` (presence: num_classes, fixed; regression:
default 1), `dropout` (default 0). A model has at most one presence head: it is the one
`podium predict --presence-threshold` reads.
"""

from typing import Any, Dict, Mapping, Optional

from torch import Tensor, nn

from podium.errors import PodiumError, check_keys, did_you_mean
from podium.validation import check_int, check_number

__all__ = [
    "HEAD_TYPES",
    "MASK_KEY",
    "AuxHead",
    "aux_outputs",
    "build_aux_heads",
    "presence_head_name",
]

HEAD_TYPES = ("presence", "regression")
HEAD_KEYS = ("type", "outputs", "dropout")
MASK_KEY = "logits"  # the mask logits' key in the output dict of a model with aux heads


class AuxHead(nn.Sequential):
    """Pool → dropout → linear: N×C×h×w features → N×outputs (raw: logits or values)."""

    def __init__(self, in_channels: int, outputs: int, dropout: float = 0.0, kind: str = ""):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(p=dropout),
            nn.Linear(in_channels, outputs),
        )
        self.kind = kind


def build_aux_heads(
    aux_heads: Optional[Mapping[str, Any]], in_channels: int, num_classes: int
) -> nn.ModuleDict:
    """The heads of a `model: aux_heads:` block, each reading `in_channels` feature channels."""
    heads = nn.ModuleDict()
    if aux_heads is None:
        return heads
    if not isinstance(aux_heads, Mapping):
        raise PodiumError(
            f"model aux_heads must be a mapping of head name → {{type: ...}}, got {aux_heads!r}"
        )
    for name, spec in aux_heads.items():
        where = f"model aux_heads/{name}"
        if name == MASK_KEY:
            raise PodiumError(f'{where}: "{MASK_KEY}" is the mask output; expected another name')
        if not isinstance(spec, Mapping):
            raise PodiumError(
                f"{where} must be a mapping, e.g. {{type: presence}}, got {spec!r}; "
                f"expected type one of: {', '.join(HEAD_TYPES)}"
            )
        check_keys(spec.keys(), HEAD_KEYS, where)
        kind = spec.get("type")
        if kind not in HEAD_TYPES:
            raise PodiumError(
                f"{where}: unknown head type {kind!r}{did_you_mean(str(kind), HEAD_TYPES)}; "
                f"expected one of: {', '.join(HEAD_TYPES)}"
            )
        if kind == "presence":
            outputs = spec.get("outputs", num_classes)
            if outputs != num_classes:
                raise PodiumError(
                    f"{where}: a presence head has one output per class ({num_classes}), "
                    f"got outputs {outputs!r}; leave outputs out"
                )
        else:
            outputs = check_int(spec.get("outputs", 1), f"{where} outputs", 1)
        dropout = check_number(spec.get("dropout", 0.0), f"{where} dropout", "[0, 1)")
        heads[str(name)] = AuxHead(in_channels, outputs, float(dropout), kind)
    presence = [name for name, head in heads.items() if head.kind == "presence"]
    if len(presence) > 1:
        raise PodiumError(
            f"model aux_heads has {len(presence)} presence heads ({', '.join(presence)}); "
            "expected at most one (the one predict gates masks with)"
        )
    return heads


def presence_head_name(model: nn.Module) -> Optional[str]:
    """The output key of the model's presence head, None if it has none."""
    heads = getattr(model, "aux_heads", None)
    if not isinstance(heads, nn.ModuleDict):
        return None
    return next((name for name, head in heads.items() if head.kind == "presence"), None)


def aux_outputs(heads: nn.ModuleDict, deepest: Tensor) -> Dict[str, Tensor]:
    """{head name: N×outputs} from the coarsest encoder map."""
    return {name: head(deepest) for name, head in heads.items()}
