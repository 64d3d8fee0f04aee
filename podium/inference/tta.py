"""Test-time augmentation: the mean of `fn` over flipped, rotated and rescaled views of a batch.

    images ─► view (resize, transpose, h-flip, v-flip) ─► fn ─► undo the view ─► mean of the views

    tta = build_tta("d4")                  # none | flip | d2 | d4 | multiscale
    tta = build_tta({"views": "d4", "scales": [0.75, 1.0, 1.25], "max_views_per_batch": None})
    out = tta(fn, images)                  # fn: B×C×H×W → B×K×H×W (or a dict of outputs)

Views: `flip` = identity + horizontal flip; `d2` = + vertical flip + both (180°); `d4` = the 8
dihedral views (d2 of the image and of its transpose); `scales` multiply every view
(`{views: d4, scales: [0.75, 1, 1.25]}` is 24 views; `multiscale` alone = scales 0.75, 1, 1.25).

Why not toolbelt's `d4_image2mask` as it is: it concatenates the 8 views into one batch, which
needs ~6-8× the activation memory of one forward and on CPU costs 11-30× one forward instead
of 8× (resnet18 / efficientnet_b0 U-Nets, 4×3×256×256: benchmarks/tta.py); it needs square
inputs; and `d4_labels_deaugment` stacks views 1..8 as [1, 2, 3, 4, 5, 7, 7, 8]
(view 6 dropped, view 7 counted twice), so vector/label outputs come out wrong. Here:

- Views run in chunks of `max_views_per_batch` views (× the batch). Default (None): on CPU one
  view per forward (batching views costs more than linearly there); on other devices as many
  views as keep a forward under `AUTO_PIXELS_PER_BATCH` pixels (B·views·h·w), at least one.
  Activation memory is bounded by one chunk; the mean is accumulated in place in one float32
  (or float64) buffer per output.
- `channels_last: auto` (default) gives `fn` the views in channels_last memory format on CPU
  when a forward has at least `CHANNELS_LAST_MIN_PIXELS` pixels: a forward took 0.76–0.79× its
  NCHW time there (resnet18 / efficientnet_b0 U-Nets, 4×3×256×256, 1×512²), but resnet18 took
  1.2–1.9× longer on small batches (4×128², 4×64²). Values are the same (up to float
  rounding); `fn` must not `.view()` its input. true / false force it.
- Non-square D4: rotated views are W×H; `fn` sees them as they are (podium's models pad any
  size themselves) and each output is rotated back, so nothing is padded to a square.
- Output rules. Outputs whose last two dims are the view's H×W (≥ 3-D) are maps and are moved
  back pixel by pixel. Outputs without spatial dims (B or B×K) change under a view in a way
  only the caller knows, so they need a declared rule (`vector_keys`), else PodiumError:
  `scalar` (class scores, counts: unchanged), `xy` / `yx` (a 2-D vector, e.g. a flow direction
  (dx, dy): a horizontal flip negates x, a vertical flip y, a transpose swaps them), `wh` / `hw`
  (extents: a transpose swaps them). These three are unchanged by rescaling; the `_pixels`
  variants (`xy_pixels`, `wh_pixels`, …) are in pixels of the model input and are divided by
  the view's scale. A rule on a map (B×2×H×W, e.g. offsets) applies per pixel to its 2 channels.
  Undeclared maps are treated as scalar maps — declare vector-valued maps.
- Maps at a stride (`stride` s, e.g. CenterNet's heatmap, size and offset maps at 1/4): the
  images are padded with zeros at the bottom/right to a multiple of s (not when the only view is
  the identity), so that a flipped or transposed map cell covers the flipped pixels in every
  view; outputs of ceil(H/s)×ceil(W/s) are moved back cell by cell (a vector map by its rule:
  CenterNet's offsets from the cell centre `xy`, its box sizes `wh`), and full-size maps are
  cropped back to H×W. Flips and transposes only: a rescaled view has no whole grid of cells.
- Multiscale: the view is H×W scaled by s, each side rounded to the nearest integer (halves up,
  at least 1); the model pads it to its stride itself (for 256 px, 0.75 / 1.25 give 192 / 320,
  multiples of 32: no padding). Resizing is bilinear, align_corners=False, no antialias — the
  same sampling as cv2 INTER_LINEAR used by the training-time scale augmentations; maps are
  resized back the same way. Scale 1.0 is not resampled at all.

`fn` returns a tensor or a dict of tensors (multi-head models); the result has the same form.
Integer outputs cannot be averaged and raise PodiumError. Vector helpers for code that batches
views itself: `deaugment_vectors(vectors, view, rule)` for one view, and `d4_vector_deaugment`,
the correct counterpart of toolbelt's `d4_labels_deaugment` for toolbelt's `d4_image_augment`.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from podium.errors import PodiumError, check_keys, did_you_mean
from podium.validation import check_int, is_number

__all__ = [
    "AUTO_PIXELS_PER_BATCH",
    "CHANNELS_LAST_MIN_PIXELS",
    "DEFAULT_SCALES",
    "MODES",
    "RULES",
    "TOOLBELT_D4_VIEWS",
    "TTA",
    "View",
    "augment",
    "build_tta",
    "d4_vector_deaugment",
    "deaugment_maps",
    "deaugment_vectors",
    "dihedral_views",
]

MODES = ("none", "flip", "d2", "d4", "multiscale")
RULES = ("scalar", "xy", "yx", "wh", "hw", "xy_pixels", "yx_pixels", "wh_pixels", "hw_pixels")
DEFAULT_SCALES = (0.75, 1.0, 1.25)
AUTO_PIXELS_PER_BATCH = 2**21  # GPU default chunk: e.g. 32 images of 256², 8 of 512²
CHANNELS_LAST_MIN_PIXELS = 2**17  # CPU: channels_last from e.g. 2×256² per forward
SPEC_KEYS = ("views", "scales", "max_views_per_batch", "channels_last", "vector_keys")

Outputs = Union[Tensor, Dict[str, Tensor]]


@dataclass(frozen=True)
class View:
    """One view: resize by `scale`, then transpose H/W, then flip W (hflip), then flip H (vflip).

    The 8 combinations of the three flags are the 8 elements of the dihedral group D4.
    """

    transpose: bool = False
    hflip: bool = False
    vflip: bool = False
    scale: float = 1.0

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.hflip or self.vflip) and self.scale == 1.0

    def scaled_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """H×W after the resize (before the transpose): each side rounded, halves up, ≥ 1."""
        if self.scale == 1.0:
            return int(size[0]), int(size[1])
        return tuple(max(1, int(math.floor(side * self.scale + 0.5))) for side in size)

    def input_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """H×W of the view of an H×W image, as `fn` sees it."""
        height, width = self.scaled_size(size)
        return (width, height) if self.transpose else (height, width)


def dihedral_views(mode: str) -> List[View]:
    """The views of none | flip | d2 | d4 (non-transposed views first)."""
    flags = {
        "none": [(False, False, False)],
        "flip": [(False, False, False), (False, True, False)],
        "d2": [(False, h, v) for h in (False, True) for v in (False, True)],
        "d4": [(t, h, v) for t in (False, True) for h in (False, True) for v in (False, True)],
    }
    if mode not in flags:
        raise PodiumError(
            f'unknown tta views "{mode}"{did_you_mean(mode, flags)}; '
            f"expected one of: {', '.join(flags)}"
        )
    return [View(t, h, v) for t, h, v in flags[mode]]


# toolbelt's d4_image_augment order: x, rot90_cw, rot180, rot90_ccw, then the same of x transposed
# (as flags: checked against toolbelt's own images in tests/test_tta.py).
TOOLBELT_D4_VIEWS = (
    View(False, False, False),
    View(True, True, False),
    View(False, True, True),
    View(True, False, True),
    View(True, False, False),
    View(False, True, False),
    View(True, True, True),
    View(False, False, True),
)


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of the last two dims of a ≥ 3-D tensor (any dims in between)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    flat = x.reshape(x.shape[0], -1, *x.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*x.shape[:-2], *size)


def augment(images: Tensor, view: View) -> Tensor:
    """The view of B×C×H×W images."""
    images = _resize(images, view.scaled_size(images.shape[-2:]))
    if view.transpose:
        images = images.transpose(-2, -1)
    if view.hflip:
        images = images.flip(-1)
    if view.vflip:
        images = images.flip(-2)
    return images


def _parse_rule(rule: str) -> Tuple[str, int, bool]:
    """(kind: scalar | vector | extent, index of the x component, in pixels?)."""
    if rule not in RULES:
        raise PodiumError(
            f'unknown output rule "{rule}"{did_you_mean(rule, RULES)}; '
            f"expected one of: {', '.join(RULES)}"
        )
    if rule == "scalar":
        return "scalar", 0, False
    axes = rule.split("_")[0]
    kind = "vector" if axes in ("xy", "yx") else "extent"
    return kind, 0 if axes in ("xy", "wh") else 1, rule.endswith("_pixels")


def _undo_components(x: Tensor, view: View, rule: str, scale_hw: Tuple[float, float]) -> Tensor:
    """Map the 2 components (dim 1) of a view's output back to the image's axes."""
    kind, x_index, pixels = _parse_rule(rule)
    if kind == "scalar":
        return x
    if x.ndim < 2 or x.shape[1] != 2:
        raise PodiumError(
            f'output rule "{rule}" needs 2 components along dim 1 (B×2 or B×2×H×W), '
            f"got shape {tuple(x.shape)}"
        )
    cx, cy = x[:, x_index], x[:, 1 - x_index]
    # undo in reverse order of the view: vflip, hflip, then transpose
    if kind == "vector" and view.vflip:
        cy = -cy
    if kind == "vector" and view.hflip:
        cx = -cx
    if view.transpose:
        cx, cy = cy, cx
    if pixels:
        cx, cy = cx / scale_hw[1], cy / scale_hw[0]
    return torch.stack([cx, cy] if x_index == 0 else [cy, cx], dim=1)


def deaugment_vectors(
    vectors: Tensor, view: View, rule: str = "xy", size: Optional[Tuple[int, int]] = None
) -> Tensor:
    """B×2 vectors predicted on `view` mapped back to the image's axes (see the module rules).

    `size` (the image's H×W) is needed only for `_pixels` rules with a scale ≠ 1.
    """
    return _undo_components(vectors, view, rule, _scale_hw(view, size, rule))


def deaugment_maps(maps: Tensor, view: View, size: Tuple[int, int], rule: str = "scalar") -> Tensor:
    """A view's output maps (…×h×w) moved back to the image's H×W (`size`); 2-channel maps by
    `rule`."""
    maps = (
        _undo_components(maps, view, rule, _scale_hw(view, size, rule))
        if rule != "scalar"
        else maps
    )
    if view.vflip:
        maps = maps.flip(-2)
    if view.hflip:
        maps = maps.flip(-1)
    if view.transpose:
        maps = maps.transpose(-2, -1)
    return _resize(maps, size)


def _scale_hw(view: View, size: Optional[Tuple[int, int]], rule: str) -> Tuple[float, float]:
    """The real per-axis scale of the view (after rounding) — what pixel quantities scale by."""
    if view.scale == 1.0:
        return 1.0, 1.0
    if size is None:
        if rule.endswith("_pixels"):
            raise PodiumError(f'output rule "{rule}" with scale {view.scale} needs the image size')
        return 1.0, 1.0
    height, width = view.scaled_size(size)
    return height / size[0], width / size[1]


def d4_vector_deaugment(
    vectors: Tensor, rule: str = "xy", reduction: Optional[str] = "mean"
) -> Tensor:
    """Outputs [8·B, 2] of a model run on toolbelt's `d4_image_augment(images)`, mapped back and
    averaged.

    The correct replacement of toolbelt's `d4_labels_deaugment` for vectors (and, with
    rule="scalar", for labels: it keeps all 8 views once each). reduction: "mean", "sum" or
    None (→ [8, B, 2], each view in the image's axes).
    """
    if vectors.shape[0] % 8:
        raise PodiumError(
            "d4_vector_deaugment needs 8·B rows (toolbelt's d4_image_augment), "
            f"got shape {tuple(vectors.shape)}"
        )
    parts = torch.stack(
        [
            _undo_components(chunk, view, rule, (1.0, 1.0))
            for chunk, view in zip(torch.chunk(vectors, 8), TOOLBELT_D4_VIEWS)
        ]
    )
    if reduction == "mean":
        return parts.mean(dim=0)
    if reduction == "sum":
        return parts.sum(dim=0)
    if reduction is None:
        return parts
    raise PodiumError(f"d4_vector_deaugment reduction must be mean, sum or None, got {reduction!r}")


class TTA:
    """`tta(fn, images)`: the mean of fn over the views, each undone; see the module docstring.

    Args:
        views: the views (`dihedral_views(mode)` × scales); the first need not be the identity.
        max_views_per_batch: views per forward (each view is the whole batch); None: by device.
        channels_last: "auto" (CPU, large forwards), True or False: the memory format of view
            batches.
        vector_keys: rules of outputs (module docstring): {key: rule} for dict outputs, or one
            rule for a tensor output.
        stride: maps may come at 1/stride of the input (module docstring); 1: input size only.
    """

    def __init__(
        self,
        views: Sequence[View],
        max_views_per_batch: Optional[int] = None,
        channels_last: Union[str, bool] = "auto",
        vector_keys: Union[None, str, Mapping[str, str]] = None,
        stride: int = 1,
    ):
        if not views:
            raise PodiumError("tta needs at least one view")
        self.views = list(views)
        self.stride = check_int(stride, "tta stride", 1)
        if self.stride > 1 and any(view.scale != 1.0 for view in self.views):
            raise PodiumError(
                f"tta with maps at stride {self.stride} takes flips and transposes only (none, "
                f"flip, d2, d4): a rescaled view has no whole grid of cells to move back"
            )
        self.max_views_per_batch = _check_max_views(max_views_per_batch)
        if channels_last not in ("auto", True, False):
            raise PodiumError(
                f"tta channels_last must be auto, true or false, got {channels_last!r}"
            )
        self.channels_last = channels_last
        self.vector_keys = _check_vector_keys(vector_keys)

    @property
    def num_views(self) -> int:
        return len(self.views)

    def __repr__(self) -> str:
        scales = sorted({view.scale for view in self.views})
        return (
            f"TTA(num_views={self.num_views}, scales={scales}, "
            f"max_views_per_batch={self.max_views_per_batch}, channels_last={self.channels_last!r})"
        )

    def views_per_batch(self, images: Tensor, view_size: Tuple[int, int]) -> int:
        """Views per forward: the configured number, else 1 on CPU / a pixel budget elsewhere."""
        if self.max_views_per_batch is not None:
            return self.max_views_per_batch
        if images.device.type == "cpu":
            return 1
        return max(
            1, AUTO_PIXELS_PER_BATCH // max(1, images.shape[0] * view_size[0] * view_size[1])
        )

    def use_channels_last(self, inputs: Tensor) -> bool:
        """Whether a batch of views goes to fn in channels_last (see the module docstring)."""
        if self.channels_last != "auto":
            return self.channels_last
        pixels = inputs.shape[0] * inputs.shape[-2] * inputs.shape[-1]
        return inputs.device.type == "cpu" and pixels >= CHANNELS_LAST_MIN_PIXELS

    def chunks(self, images: Tensor) -> List[List[View]]:
        """Views grouped by input size (only equal sizes can share a batch), then chunked."""
        size = tuple(images.shape[-2:])
        groups: Dict[Tuple[int, int], List[View]] = {}
        for view in self.views:
            groups.setdefault(view.input_size(size), []).append(view)
        chunks = []
        for view_size, views in groups.items():
            step = self.views_per_batch(images, view_size)
            chunks.extend(views[start : start + step] for start in range(0, len(views), step))
        return chunks

    def __call__(self, fn: Callable[[Tensor], Outputs], images: Tensor) -> Outputs:
        if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise PodiumError(f"tta takes a floating-point image batch B×C×H×W, got {got}")
        size = (int(images.shape[-2]), int(images.shape[-1]))
        images = self._pad(images)
        padded = (int(images.shape[-2]), int(images.shape[-1]))
        batch = images.shape[0]
        sums: Dict[Optional[str], Tensor] = {}  # one accumulator per output, filled in place
        is_dict = None
        for chunk in self.chunks(images):
            views_in = [augment(images, view) for view in chunk]
            inputs = torch.cat(views_in) if len(views_in) > 1 else views_in[0]
            if self.use_channels_last(inputs):
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            named, out_is_dict = _named_outputs(fn(inputs))
            if is_dict is None:
                is_dict = out_is_dict
                self._check_declared(named)
            elif is_dict != out_is_dict or set(named) != set(sums):
                raise PodiumError(
                    "fn returned different outputs for different "
                    "views (a tensor vs a dict, or other keys)"
                )
            view_size = tuple(inputs.shape[-2:])
            for index, view in enumerate(chunk):
                for key, value in named.items():
                    part = self._undo(key, value, index, batch, len(chunk), view, view_size, padded)
                    if part.ndim >= 3 and tuple(part.shape[-2:]) == padded:  # full-size map
                        part = part[..., : size[0], : size[1]]
                    if key not in sums:
                        dtype = torch.promote_types(part.dtype, torch.float32)
                        sums[key] = torch.zeros(part.shape, dtype=dtype, device=part.device)
                    sums[key].add_(part)
        means = {key: total.div_(self.num_views) for key, total in sums.items()}
        return means if is_dict else means[None]

    def _pad(self, images: Tensor) -> Tensor:
        """Zeros at the bottom/right to a multiple of the stride (none for the identity alone)."""
        if self.stride == 1 or all(view.is_identity for view in self.views):
            return images
        height, width = images.shape[-2:]
        return F.pad(images, (0, -width % self.stride, 0, -height % self.stride))

    def _check_declared(self, named: Dict[Optional[str], Tensor]) -> None:
        if isinstance(self.vector_keys, dict):
            unknown = [key for key in self.vector_keys if key not in named]
            if unknown:
                got = ", ".join(str(k) for k in named) if None not in named else "a tensor"
                raise PodiumError(
                    f'tta vector_keys names output "{unknown[0]}", but fn returned {got}'
                )

    def _rule(self, key: Optional[str]) -> Optional[str]:
        if key is None:
            return self.vector_keys if isinstance(self.vector_keys, str) else None
        return self.vector_keys.get(key) if isinstance(self.vector_keys, dict) else None

    def _undo(
        self,
        key,
        value: Tensor,
        index: int,
        batch: int,
        views: int,
        view: View,
        view_size: Tuple[int, int],
        size: Tuple[int, int],
    ) -> Tensor:
        name = "fn's output" if key is None else f'output "{key}"'
        if not isinstance(value, Tensor):
            raise PodiumError(f"{name} is a {type(value).__name__}; tta averages tensors")
        if not value.is_floating_point():
            raise PodiumError(
                f"{name} has dtype {value.dtype}; tta averages outputs, expected floating point"
            )
        if value.ndim == 0 or value.shape[0] != batch * views:
            raise PodiumError(
                f"{name} has shape {tuple(value.shape)}; "
                f"expected {batch * views} rows, one per input image"
            )
        part = value[index * batch : (index + 1) * batch]
        cells = _cells(view_size, self.stride)
        spatial = part.ndim >= 3 and tuple(part.shape[-2:]) in (tuple(view_size), cells)
        if part.ndim >= 3 and not spatial:
            strided = f" or at 1/{self.stride} ({cells[0]}×{cells[1]})" if self.stride > 1 else ""
            raise PodiumError(
                f"{name} has shape {tuple(part.shape)} for an input "
                f"of {view_size[0]}×{view_size[1]}; tta de-augments maps at the input's "
                f"resolution (…×H×W){strided} and vectors B or B×K"
            )
        if view.is_identity:
            return part
        rule = self._rule(key)
        if spatial:
            full = tuple(part.shape[-2:]) == tuple(view_size)
            target = size if full else _cells(size, self.stride)
            return deaugment_maps(part, view, target, rule or "scalar")
        if rule is None:
            hint = f'{{"{key}": "scalar"}}' if key is not None else '"scalar"'
            raise PodiumError(
                f"{name} has no spatial dims (shape {tuple(part.shape)}), "
                "so tta cannot tell how a view changes it; declare it in vector_keys, "
                f"e.g. {hint} for class scores or values the views do not change, "
                "xy / yx for 2-D vectors, wh / hw for extents (…_pixels if in pixels)"
            )
        return _undo_components(part, view, rule, _scale_hw(view, size, rule))


def _cells(size: Tuple[int, int], stride: int) -> Tuple[int, int]:
    """H×W of the map at 1/stride of an H×W input: ceil(H / stride) × ceil(W / stride)."""
    return -(-int(size[0]) // stride), -(-int(size[1]) // stride)


def _named_outputs(outputs) -> Tuple[Dict[Optional[str], Tensor], bool]:
    if isinstance(outputs, Tensor):
        return {None: outputs}, False
    if isinstance(outputs, Mapping) and outputs:
        return dict(outputs), True
    raise PodiumError(
        f"fn returned {type(outputs).__name__}; tta expects a tensor or a dict of tensors"
    )


def _check_max_views(value) -> Optional[int]:
    if value is None:
        return None
    return check_int(value, "tta max_views_per_batch", 1, "null (by device) or an integer >= 1")


def _check_vector_keys(vector_keys):
    if vector_keys is None:
        return None
    if isinstance(vector_keys, str):
        _parse_rule(vector_keys)
        return vector_keys
    if not isinstance(vector_keys, Mapping):
        raise PodiumError(
            "tta vector_keys must map output names to rules "
            f"({', '.join(RULES)}), got {vector_keys!r}"
        )
    for key, rule in vector_keys.items():
        if not isinstance(rule, str):
            raise PodiumError(
                f'tta vector_keys["{key}"] must be one of {", ".join(RULES)}, got {rule!r}'
            )
        _parse_rule(rule)
    return dict(vector_keys)


def _check_scales(scales) -> List[float]:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise PodiumError(
            "tta scales must be a non-empty list of numbers "
            f"> 0, e.g. [0.75, 1.0, 1.25], got {scales!r}"
        )
    checked = []
    for scale in scales:
        if not is_number(scale, finite=True) or scale <= 0:
            raise PodiumError(f"tta scales must be numbers > 0, got {scale!r} in {list(scales)}")
        if float(scale) in checked:
            raise PodiumError(f"tta scales lists {scale} twice: {list(scales)}")
        checked.append(float(scale))
    return checked


def build_tta(
    spec: Union[None, str, Mapping, TTA] = "none",
    vector_keys: Union[None, str, Mapping[str, str]] = None,
    stride: int = 1,
) -> TTA:
    """A TTA from a mode name or a mapping {views, scales, max_views_per_batch, channels_last,
    vector_keys}.

    views: none | flip | d2 | d4 | multiscale (= none, with scales defaulting to 0.75, 1, 1.25);
    scales: multiply every view (default [1.0]); stride: the model's, when some outputs are maps
    at 1/stride of the input; see the module docstring for the rest.
    """
    if isinstance(spec, TTA):
        return spec
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        spec = {"views": spec}
    if not isinstance(spec, Mapping):
        raise PodiumError(
            f"tta must be a mode ({', '.join(MODES)}) or a mapping "
            f"like {{views: d4, scales: [1.0]}}, got {spec!r}"
        )
    check_keys(spec, SPEC_KEYS, "tta")
    mode = spec.get("views", "none")
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise PodiumError(
            f'unknown tta views "{mode}"{did_you_mean(str(mode), MODES)}; '
            f"expected one of: {', '.join(MODES)}"
        )
    mode = mode.lower()
    default_scales = DEFAULT_SCALES if mode == "multiscale" else (1.0,)
    scales = _check_scales(spec.get("scales", list(default_scales)))
    dihedral = dihedral_views("none" if mode == "multiscale" else mode)
    if vector_keys is not None and spec.get("vector_keys") is not None:
        raise PodiumError(
            "tta vector_keys given twice (in the tta mapping and as an argument); give it once"
        )
    views = [View(v.transpose, v.hflip, v.vflip, scale) for scale in scales for v in dihedral]
    return TTA(
        views,
        max_views_per_batch=spec.get("max_views_per_batch"),
        channels_last=spec.get("channels_last", "auto"),
        vector_keys=vector_keys if vector_keys is not None else spec.get("vector_keys"),
        stride=stride,
    )
