"""Dice and IoU per class, macro and micro, dataset-level or per image (plain torch/numpy).

Conventions (also in docs/losses-metrics.md):

- **Predictions.** `activation="sigmoid"`: binary / multi-label, class c is predicted where
  `sigmoid(logit_c) > threshold` (threshold: one float or one per class). `"none"`: the inputs
  are already probabilities, `prob_c > threshold`. `"softmax"` / `"argmax"`: multi-class, the
  predicted class is `argmax` over the channel dim (softmax does not change the argmax; no
  threshold).
- **Targets.** sigmoid / none: same shape as the outputs (B, C, ...), or (B, ...) when C == 1;
  a pixel is positive where `target > 0.5`. softmax / argmax: class indices (B, ...) or
  (B, 1, ...), or a one-hot (B, C, ...) tensor (argmax over C).
- **Ignore.** Elements whose target equals `ignore_value` count nowhere (not tp, fp, fn).
  Multi-label targets are masked per class (an ignored value in channel c hides that pixel for
  class c only); index / one-hot targets hide the whole pixel for every class.
- **Dataset level** (default, `per_image=False`): tp / fp / fn summed over all pixels of all
  images, then `dice = 2tp / (2tp + fp + fn)`, `iou = tp / (tp + fp + fn)` per class.
  **micro**: counts summed over the classes first; **macro**: mean of the per-class scores.
- **Per image** (`per_image=True`): the scores of each image, then the mean over images (per
  class; micro = per-image micro averaged over images; macro = mean over classes of the
  per-class means).
- **Empty case.** A class absent from both the prediction and the target (tp + fp + fn == 0:
  nothing to get wrong) scores `empty_score`, by default 1.0 — the same as sklearn's
  `f1_score` / `jaccard_score` with `zero_division=1.0`, Catalyst's Dice/IoU (eps-smoothed)
  and `ConfusionCounts`. With `empty_score=None` such (image, class) pairs are left out of the
  averages instead (a class that is never non-empty then scores NaN and is left out of macro).
- `classes` restricts which class indices are reported and averaged (e.g. `[1, 2]` to leave
  the background of a softmax model out); counts of the other classes are still kept.

`ConfusionCounts` (numpy, boolean masks in) is the small dataset-level counter
`podium predict` uses.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from podium.errors import PodiumError
from podium.metrics.base import Accumulator, as_tensor

__all__ = [
    "ConfusionCounts",
    "SegmentationScores",
    "label_masks",
    "confusion_counts",
    "ACTIVATIONS",
    "SEGMENTATION_METRICS",
    "default_class_names",
]

ACTIVATIONS = ("sigmoid", "softmax", "argmax", "none")
SEGMENTATION_METRICS = ("dice", "iou")
RESERVED_NAMES = ("_macro", "_micro")


def default_class_names(num_classes: int) -> List[str]:
    """class_00, class_01, ... (Catalyst's naming)."""
    return [f"class_{i:02d}" for i in range(num_classes)]


def check_activation(activation: Optional[str]) -> str:
    activation = "none" if activation is None else str(activation).lower()
    if activation not in ACTIVATIONS:
        raise PodiumError(
            f'unknown activation "{activation}"; expected one of: {", ".join(ACTIVATIONS)}'
        )
    return activation


def _valid(target: torch.Tensor, ignore_value: Optional[float]) -> torch.Tensor:
    if ignore_value is None:
        return torch.ones_like(target, dtype=torch.bool)
    if isinstance(ignore_value, float) and np.isnan(ignore_value):
        return ~torch.isnan(target)
    return target != ignore_value


def label_masks(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    activation: Optional[str] = "sigmoid",
    threshold: Union[float, Sequence[float]] = 0.5,
    ignore_value: Optional[float] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted mask, true mask and valid mask, each a bool tensor (B, C, N) (N: pixels)."""
    activation = check_activation(activation)
    outputs, targets = as_tensor(outputs), as_tensor(targets).to(outputs.device)
    if outputs.ndim < 2:
        raise PodiumError(
            f"segmentation outputs must be (B, C, ...), got shape {tuple(outputs.shape)}"
        )
    batch, num_classes = outputs.shape[:2]
    outputs = outputs.reshape(batch, num_classes, -1)

    if activation in ("sigmoid", "none"):
        if targets.numel() != outputs.numel():
            raise PodiumError(
                f"target shape {tuple(targets.shape)} does not match "
                f"outputs {tuple(outputs.shape)} (activation {activation}: "
                "one target channel per output channel)"
            )
        targets = targets.reshape(batch, num_classes, -1)
        probs = torch.sigmoid(outputs.float()) if activation == "sigmoid" else outputs.float()
        thresholds = torch.as_tensor(threshold, dtype=probs.dtype, device=probs.device)
        if thresholds.numel() not in (1, num_classes):
            raise PodiumError(
                f"threshold: one value or one per class ({num_classes}), got {threshold}"
            )
        prediction = probs > thresholds.reshape(1, -1, 1)
        valid = _valid(targets, ignore_value)
        truth = (targets > 0.5) & valid
        return prediction, truth, valid

    # softmax / argmax: multi-class, one label per pixel
    predicted = outputs.argmax(dim=1)  # (B, N)
    if targets.numel() == outputs.numel() and num_classes > 1:  # one-hot (B, C, ...)
        targets = targets.reshape(batch, num_classes, -1)
        valid = _valid(targets, ignore_value).all(dim=1)
        labels = targets.argmax(dim=1)
    elif targets.numel() == predicted.numel():  # indices (B, ...) or (B, 1, ...)
        targets = targets.reshape(batch, -1)
        valid = _valid(targets, ignore_value)
        labels = torch.where(valid, targets, torch.zeros_like(targets)).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise PodiumError(
                f"target class indices must lie in [0, {num_classes}) or equal ignore_value "
                f"({ignore_value}); found {int(labels.min())}..{int(labels.max())}"
            )
    else:
        raise PodiumError(
            f"target shape {tuple(targets.shape)} does not fit outputs {tuple(outputs.shape)} "
            f"(activation {activation}: class indices (B, ...) or one-hot (B, C, ...))"
        )
    classes = torch.arange(num_classes, device=outputs.device).reshape(1, -1, 1)
    valid = valid.unsqueeze(1).expand(-1, num_classes, -1)
    prediction = predicted.unsqueeze(1) == classes
    truth = (labels.unsqueeze(1) == classes) & valid
    return prediction, truth, valid


def confusion_counts(
    prediction: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tp, fp, fn per image and class, each (B, C), over valid elements."""
    prediction = prediction & valid
    tp = (prediction & truth).sum(dim=-1)
    fp = (prediction & ~truth).sum(dim=-1)
    fn = (~prediction & truth).sum(dim=-1)  # truth is already restricted to valid elements
    return tp, fp, fn


def _score(metric: str, tp, fp, fn, empty_score: Optional[float]):
    """Dice or IoU from counts (any array shape); the empty case gets `empty_score` (NaN if
    None)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    numerator = 2 * tp if metric == "dice" else tp
    denominator = numerator + fp + fn
    empty = np.nan if empty_score is None else float(empty_score)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), empty
        )


def _ratio(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """total / count, NaN where count == 0."""
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


class SegmentationScores(Accumulator):
    """Dice / IoU accumulator (see the module docstring for every convention).

    state (float64, C = number of classes, learnt from the first batch unless given):
    `tp`, `fp`, `fn` (C,) summed over pixels and images; per image: `{m}_sum` / `{m}_count` (C,)
    (sum of per-image scores and number of images counted, per class) and `{m}_micro_sum` /
    `{m}_micro_count` (1,), for m in dice, iou.
    """

    def __init__(
        self,
        num_classes: Optional[int] = None,
        activation: Optional[str] = "sigmoid",
        threshold: Union[float, Sequence[float]] = 0.5,
        per_image: bool = False,
        ignore_value: Optional[float] = None,
        empty_score: Optional[float] = 1.0,
        metrics: Sequence[str] = SEGMENTATION_METRICS,
        classes: Optional[Sequence[int]] = None,
        class_names: Optional[Sequence[str]] = None,
    ):
        self.activation = check_activation(activation)
        self.threshold = threshold
        self.per_image = bool(per_image)
        self.ignore_value = ignore_value
        self.empty_score = empty_score
        if isinstance(metrics, str):
            metrics = [metrics]
        unknown = [m for m in metrics if m not in SEGMENTATION_METRICS]
        if unknown or not metrics:
            raise PodiumError(
                f'unknown segmentation metric "{unknown[0] if unknown else ""}"; '
                f"expected some of: {', '.join(SEGMENTATION_METRICS)}"
            )
        self.metrics = list(metrics)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        for name in self.class_names or ():
            if name in RESERVED_NAMES:
                raise PodiumError(f'class name "{name}" is reserved for the averages')
        super().__init__()

    # ---------------------------------------------------------------- state
    def _init_state(self, num_classes: int) -> Dict[str, torch.Tensor]:
        self.num_classes = num_classes
        self._check_classes()
        zeros = lambda n: torch.zeros(n, dtype=torch.float64)  # noqa: E731
        state = {"tp": zeros(num_classes), "fp": zeros(num_classes), "fn": zeros(num_classes)}
        for m in SEGMENTATION_METRICS:
            state[f"{m}_sum"], state[f"{m}_count"] = zeros(num_classes), zeros(num_classes)
            state[f"{m}_micro_sum"], state[f"{m}_micro_count"] = zeros(1), zeros(1)
        return state

    def _check_classes(self) -> None:
        c = self.num_classes
        if self.classes is not None and any(not 0 <= i < c for i in self.classes):
            raise PodiumError(f"classes {self.classes} must lie in [0, {c})")
        if self.class_names is not None and len(self.class_names) != c:
            raise PodiumError(f"class_names has {len(self.class_names)} names for {c} classes")

    def _layout(self) -> Any:
        return None if self.state is None else self.num_classes

    def _conform(self, layouts: List[Any]) -> None:
        known = {layout for layout in layouts if layout is not None}
        if len(known) > 1:
            raise ValueError(f"SegmentationScores: number of classes differs across ranks: {known}")
        if known and self.state is None:
            self.state = self._init_state(known.pop())

    @property
    def selected(self) -> List[int]:
        return list(range(self.num_classes)) if self.classes is None else self.classes

    # ---------------------------------------------------------------- update
    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: outputs (B, C, ...) logits / probabilities, targets (see module doc)."""
        prediction, truth, valid = label_masks(
            outputs, targets, self.activation, self.threshold, self.ignore_value
        )
        num_classes = prediction.shape[1]
        if self.state is None:
            if self.num_classes not in (None, num_classes):
                raise PodiumError(
                    f"outputs have {num_classes} channels, num_classes is {self.num_classes}"
                )
            self.state = self._init_state(num_classes)
        elif num_classes != self.num_classes:
            raise PodiumError(
                f"outputs have {num_classes} channels, earlier batches {self.num_classes}"
            )
        tp, fp, fn = (x.to(torch.float64).cpu() for x in confusion_counts(prediction, truth, valid))
        for name, value in (("tp", tp), ("fp", fp), ("fn", fn)):
            self._add(name, value.sum(dim=0))
        sel = self.selected
        micro = [x[:, sel].sum(dim=1) for x in (tp, fp, fn)]
        for m in SEGMENTATION_METRICS:
            per_image = torch.from_numpy(_score(m, tp, fp, fn, self.empty_score))  # (B, C)
            counted = ~torch.isnan(per_image)
            self._add(f"{m}_sum", torch.where(counted, per_image, 0.0).sum(dim=0))
            self._add(f"{m}_count", counted.sum(dim=0))
            per_image_micro = torch.from_numpy(_score(m, *micro, self.empty_score))  # (B,)
            counted = ~torch.isnan(per_image_micro)
            self._add(f"{m}_micro_sum", torch.where(counted, per_image_micro, 0.0).sum().reshape(1))
            self._add(f"{m}_micro_count", counted.sum().reshape(1))

    # ---------------------------------------------------------------- compute
    def compute(self, per_image: Optional[bool] = None) -> Dict[str, Dict[str, Any]]:
        """{metric: {"per_class": (C,) array, "macro": float, "micro": float}}.

        Macro and micro average over `classes` (all by default); per_class holds every class.
        Nothing added yet: NaN everywhere.
        """
        per_image = self.per_image if per_image is None else per_image
        if self.state is None:
            nan = float("nan")
            return {
                m: {"per_class": np.full(self.num_classes or 0, nan), "macro": nan, "micro": nan}
                for m in self.metrics
            }
        s = {k: v.numpy() for k, v in self.state.items()}
        sel = self.selected
        result = {}
        for m in self.metrics:
            if per_image:  # mean of the per-image scores
                per_class = _ratio(s[f"{m}_sum"], s[f"{m}_count"])
                micro = _ratio(s[f"{m}_micro_sum"], s[f"{m}_micro_count"])[0]
            else:
                per_class = _score(m, s["tp"], s["fp"], s["fn"], self.empty_score)
                tp, fp, fn = (s[name][sel].sum() for name in ("tp", "fp", "fn"))
                micro = _score(m, tp, fp, fn, self.empty_score)
            result[m] = {
                "per_class": per_class,
                "macro": _mean(per_class[sel]),
                "micro": float(micro),
            }
        return result

    def compute_key_value(
        self, prefix: str = "", per_image: Optional[bool] = None
    ) -> Dict[str, float]:
        """`{prefix}dice` (= macro), `{prefix}dice/_macro`, `{prefix}dice/_micro` and, with more
        than one class or with class_names, `{prefix}dice/<class name>`; the same for iou."""
        result = self.compute(per_image)
        names = self.class_names or default_class_names(self.num_classes or 0)
        out = {}
        for m, values in result.items():
            out[f"{prefix}{m}"] = values["macro"]
            out[f"{prefix}{m}/_macro"] = values["macro"]
            out[f"{prefix}{m}/_micro"] = values["micro"]
            if self.num_classes and (self.num_classes > 1 or self.class_names is not None):
                for c in self.selected:
                    out[f"{prefix}{m}/{names[c]}"] = float(values["per_class"][c])
        return out


@dataclass
class ConfusionCounts:
    """Pixel counts per class of binary masks, summed over the images added so far (numpy).

    Dataset-level, empty class → 1.0: the same numbers as `SegmentationScores` at its defaults.
    """

    num_classes: int = 1
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)

    def __post_init__(self):
        self.tp = np.zeros(self.num_classes, dtype=np.int64)
        self.fp = np.zeros(self.num_classes, dtype=np.int64)
        self.fn = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """prediction, target: boolean arrays of shape (num_classes, H, W)."""
        prediction = prediction.reshape(self.num_classes, -1).astype(bool)
        target = target.reshape(self.num_classes, -1).astype(bool)
        self.tp += (prediction & target).sum(axis=1)
        self.fp += (prediction & ~target).sum(axis=1)
        self.fn += (~prediction & target).sum(axis=1)

    def dice(self) -> np.ndarray:
        """Per-class Dice; 1.0 where a class is absent from both prediction and target."""
        return _score("dice", self.tp, self.fp, self.fn, 1.0)

    def iou(self) -> np.ndarray:
        """Per-class IoU; 1.0 where a class is absent from both prediction and target."""
        return _score("iou", self.tp, self.fp, self.fn, 1.0)
