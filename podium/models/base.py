"""`PaddedModel`: any input size in, outputs aligned with the input out — for every podium model.

An encoder needs sides that are multiples of its coarsest stride (32 for most timm encoders).
`PaddedModel.forward(image, **inputs)` pads the image at the bottom and right to the next
multiple of `pad_multiple`, calls the subclass's `forward_padded(image, **inputs)`, and crops
the outputs that are maps back to the input: a map at stride s (`map_strides`) to
ceil(H / s) × ceil(W / s), so logits at stride 1 are H×W again and CenterNet's maps at stride 4
are ceil(H / 4) × ceil(W / 4). Outputs may be one tensor or a dict of named outputs.

Padding is **reflect**: it continues real image content, so pixels near the border see plausible
context and BatchNorm / conv responses are not skewed by an artificial constant band (zero
padding would read as a black, or mean-coloured, frame the model never saw in training). Only
the bottom and right are padded, so the top-left pixel keeps the alignment to the encoder's
stride grid it has in multiple-of-32 training crops, and the crop is exact. Reflection needs the
pad to be smaller than the side; for tiny inputs (only possible below `pad_multiple` pixels)
it falls back to replicate padding. `reflect_pad` is that rule, for other padding too (tiles).

Under tracing (`torch.onnx.export`, `torch.jit.trace`) the pad and the crop are always recorded,
with sizes computed from the input's shape, so the traced graph takes any height and width
(a Python branch on a size would be frozen at the traced example's size); sides must then be at
least `pad_multiple`, as reflection cannot be switched per input inside the graph.
"""

import math
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PaddedModel", "pad_to_multiple", "reflect_pad"]


def reflect_pad(image: Tensor, pad: Sequence[int]) -> Tensor:
    """`F.pad(image, pad)` (left, right, top, bottom) by reflection; replicate when a pad is
    not smaller than its side, which reflection cannot reach."""
    left, right, top, bottom = (int(p) for p in pad)
    height, width = image.shape[-2:]
    fits = max(left, right) < width and max(top, bottom) < height
    return F.pad(image, (left, right, top, bottom), mode="reflect" if fits else "replicate")


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """The N×C×H×W image reflect-padded at the bottom / right to sides that are multiples."""
    height, width = image.shape[-2:]
    if torch.jit.is_tracing():  # recorded always: the pad follows the input's size in the graph
        pad_h, pad_w = (
            (multiple - height % multiple) % multiple,
            (multiple - width % multiple) % multiple,
        )
        return F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if multiple > 1 else image
    pad_h, pad_w = -height % multiple, -width % multiple
    return reflect_pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image


class PaddedModel(nn.Module):
    """Pads the input to `pad_multiple`, runs `forward_padded`, crops map outputs back.

    Subclasses set, in `__init__`:
    - `pad_multiple`: input sides are padded to multiples of it (the encoder's coarsest stride;
      1: no padding);
    - `map_strides`: which outputs are maps, and at which stride of the input — an int for the
      tensor output (or for every value of a dict output), a {name: stride} dict for some
      outputs of a dict (the others, e.g. per-image vectors, are returned as they are), or
      None when no output is a map;
    and implement `forward_padded(image, **inputs)` for an image whose sides are multiples of
    `pad_multiple`.
    """

    pad_multiple: int = 1
    map_strides: Union[None, int, Mapping[str, int]] = 1

    def forward(self, image: Tensor, **inputs: Any) -> Any:
        height, width = image.shape[-2:]
        outputs = self.forward_padded(pad_to_multiple(image, int(self.pad_multiple)), **inputs)
        if isinstance(outputs, Mapping):
            return {name: self._crop(out, height, width, name) for name, out in outputs.items()}
        return self._crop(outputs, height, width)

    def forward_padded(self, image: Tensor, **inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward_padded")

    def _crop(self, output: Tensor, height: int, width: int, name: Optional[str] = None) -> Tensor:
        strides = self.map_strides
        stride = strides.get(name) if isinstance(strides, Mapping) else strides
        if stride is None:
            return output
        if torch.jit.is_tracing():  # sizes stay symbolic; positive operands: ONNX Div truncates
            return output[..., : (height + stride - 1) // stride, : (width + stride - 1) // stride]
        out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
        return output if output.shape[-2:] == (out_h, out_w) else output[..., :out_h, :out_w]
