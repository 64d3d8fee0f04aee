"""Mean IoU of matched box pairs (box-regression heads): prediction i ↔ target i.

- Boxes are (..., 4): `box_format="xyxy"` (x1, y1, x2, y2; default), `"xywh"` (x1, y1, w, h)
  or `"cxcywh"` (centre, width, height). Any leading shape is flattened into pairs.
- Continuous coordinates: area = (x2 - x1) · (y2 - y1), no "+1" pixel convention; a box with
  x2 < x1 or y2 < y1 has area 0.
- Degenerate pairs (union == 0: both boxes have zero area): IoU 1.0 if the boxes are equal,
  else 0.0.
- A pair whose target box contains `ignore_value` (NaN allowed, e.g. "no box in this image")
  is left out.

State: the sum of IoUs and the number of pairs.
"""

from typing import Any, Dict, Optional

import torch

from podium.errors import PodiumError
from podium.metrics.base import Accumulator, as_tensor
from podium.metrics.segmentation import _valid

__all__ = ["BoxIoU", "box_iou", "to_xyxy", "BOX_FORMATS"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def to_xyxy(boxes: torch.Tensor, box_format: str = "xyxy") -> torch.Tensor:
    """Boxes (..., 4) converted to x1, y1, x2, y2."""
    if box_format not in BOX_FORMATS:
        raise PodiumError(
            f'unknown box_format "{box_format}"; expected one of: {", ".join(BOX_FORMATS)}'
        )
    a, b, c, d = boxes.unbind(-1)
    if box_format == "xywh":
        return torch.stack([a, b, a + c, b + d], dim=-1)
    if box_format == "cxcywh":
        return torch.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], dim=-1)
    return boxes


def box_iou(
    predicted: torch.Tensor, target: torch.Tensor, box_format: str = "xyxy"
) -> torch.Tensor:
    """IoU of each matched pair: predicted, target (..., 4) → (...,)."""
    predicted, target = as_tensor(predicted).to(torch.float64), as_tensor(target).to(torch.float64)
    if predicted.shape != target.shape or predicted.shape[-1:] != (4,):
        raise PodiumError(
            "box IoU needs two (..., 4) tensors of one shape, "
            f"got {tuple(predicted.shape)} and {tuple(target.shape)}"
        )
    p, t = to_xyxy(predicted, box_format), to_xyxy(target, box_format)
    width = (torch.minimum(p[..., 2], t[..., 2]) - torch.maximum(p[..., 0], t[..., 0])).clamp(min=0)
    height = (torch.minimum(p[..., 3], t[..., 3]) - torch.maximum(p[..., 1], t[..., 1])).clamp(
        min=0
    )
    intersection = width * height

    def area(b):
        return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)

    union = area(p) + area(t) - intersection
    equal = (p == t).all(dim=-1).to(torch.float64)
    return torch.where(union > 0, intersection / torch.where(union > 0, union, 1.0), equal)


class BoxIoU(Accumulator):
    """Mean IoU over all matched (prediction, target) box pairs."""

    fixed_layout = True

    def __init__(self, box_format: str = "xyxy", ignore_value: Optional[float] = None):
        to_xyxy(torch.zeros(1, 4), box_format)  # validates the name
        self.box_format = box_format
        self.ignore_value = ignore_value
        super().__init__()

    def reset(self) -> None:
        self.state = {
            "iou_sum": torch.zeros(1, dtype=torch.float64),
            "count": torch.zeros(1, dtype=torch.float64),
        }

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """outputs, targets: boxes (..., 4) of one shape, matched element by element."""
        outputs, targets = as_tensor(outputs), as_tensor(targets).to(as_tensor(outputs).device)
        outputs, targets = outputs.reshape(-1, 4), targets.reshape(-1, 4)
        valid = _valid(targets, self.ignore_value).all(dim=-1)
        iou = box_iou(outputs[valid], targets[valid], self.box_format)
        self._add("iou_sum", iou.sum().reshape(1))
        self._add("count", torch.tensor([iou.numel()]))

    def compute(self) -> Dict[str, Any]:
        """{"iou": mean IoU (NaN without pairs), "count": number of pairs}."""
        count = float(self.state["count"][0])
        return {
            "iou": float(self.state["iou_sum"][0]) / count if count else float("nan"),
            "count": count,
        }

    def compute_key_value(self, prefix: str = "") -> Dict[str, float]:
        """`{prefix}box_iou`."""
        return {f"{prefix}box_iou": self.compute()["iou"]}

    @property
    def empty(self) -> bool:
        return float(self.state["count"][0]) == 0
