"""Constant-scale resizes for `podium export`, so onnxruntime keeps a U-Net in its fast layout.

toolbelt's decoders and `ResizeHead` resize a feature map to the size of another
(`F.interpolate(size=...)`). Traced, that size is computed from shapes at run time, and
onnxruntime's CPU provider keeps such a Resize in plain NCHW: it reorders the feature maps of its
blocked-layout (NCHWc) convolutions out of and back into that layout around every resize. A
segmentation model pads its input to a multiple of its largest stride, so inside it every resize
is by a constant whole factor, and `F.interpolate(scale_factor=...)` computes the same values;
onnxruntime runs that Resize in NCHWc. `constant_scale_resizes` swaps the layers on a copy of the
model and keeps the swap only if the copy's outputs equal the model's on an example.
"""

import copy
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConstantScaleResize", "ConstantScaleHead", "constant_scale_resizes"]


class ConstantScaleResize(nn.Module):
    """A toolbelt resize layer (nearest / bilinear) by its constant `scale_factor`."""

    def __init__(self, scale: int, mode: str, align_corners: Optional[bool] = None):
        super().__init__()
        self.scale = float(scale)
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        return F.interpolate(
            x, scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners
        )


class ConstantScaleHead(nn.Module):
    """toolbelt's `ResizeHead` with its final resize by the stride of the map it reads."""

    def __init__(self, head: nn.Module, scale: int):
        super().__init__()
        self.head = head
        self.resize = ConstantScaleResize(
            scale, head.interpolation_mode, head.interpolation_align_corners
        )

    def forward(self, feature_maps, output_size=None) -> Union[Tensor, dict]:
        head = self.head
        output = self.resize(head.final(head.dropout(feature_maps[head.target_feature_map_index])))
        return output if head.output_name is None else {head.output_name: output}


def _swapped(model: nn.Module) -> int:
    """Swap the resize layers of `model` in place; how many were swapped."""
    from pytorch_toolbelt.modules.heads import ResizeHead
    from pytorch_toolbelt.modules.upsample import (
        BilinearInterpolationLayer,
        NearestNeighborResizeLayer,
    )

    swaps = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, BilinearInterpolationLayer):
                swaps.append(
                    (
                        parent,
                        name,
                        ConstantScaleResize(child.scale_factor, "bilinear", child.align_corners),
                    )
                )
            elif isinstance(child, NearestNeighborResizeLayer):
                swaps.append((parent, name, ConstantScaleResize(child.scale_factor, "nearest")))
            elif isinstance(child, ResizeHead):
                stride = child.input_spec.strides[child.target_feature_map_index]
                swaps.append((parent, name, ConstantScaleHead(child, stride)))
    for parent, name, module in swaps:
        setattr(parent, name, module)
    return len(swaps)


def _max_difference(a, b) -> float:
    if isinstance(a, Tensor):
        return float((a - b).abs().max()) if a.shape == b.shape else float("inf")
    if isinstance(a, dict):
        if set(a) != set(b):
            return float("inf")
        return max((_max_difference(a[key], b[key]) for key in a), default=0.0)
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return float("inf")
        return max((_max_difference(x, y) for x, y in zip(a, b)), default=0.0)
    return float("inf")


def constant_scale_resizes(model: nn.Module, *example: Tensor) -> nn.Module:
    """A copy of `model` with constant-scale resizes, or `model` itself when there is nothing to
    swap or the copy's outputs on the example inputs differ from the model's (a resize that is
    not by its layer's scale, e.g. an encoder whose strides do not double)."""
    candidate = copy.deepcopy(model)
    if not _swapped(candidate):
        return model
    with torch.no_grad():
        try:
            difference = _max_difference(model(*example), candidate(*example))
        except RuntimeError:
            return model
    return candidate if difference == 0.0 else model
