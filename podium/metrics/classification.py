"""Accuracy and F1 for classification heads, from a confusion matrix (plain torch/numpy).

- **Binary**: one logit per sample, (B,) or (B, 1); positive where
  `sigmoid(logit) > threshold` (`activation="none"`: the inputs are probabilities). Targets
  (B,) / (B, 1) in {0, 1}. `f1` is the F1 of the positive class (sklearn `average="binary"`).
- **Multi-class**: logits (B, C), predicted class = argmax (`"softmax"` / `"argmax"`); targets
  are class indices (B,) or one-hot (B, C). Integer predictions (B,) with `activation="none"`
  are taken as class labels. `f1` = macro F1 over the classes present in the targets or the
  predictions (sklearn's `f1_score(average="macro")` with its default `labels`); per-class F1
  of a class absent from both is 0.0 and it does not enter the macro mean. `f1/_micro` equals
  accuracy for single-label data.
- Samples whose target equals `ignore_value` are left out.

State: the confusion matrix `confusion[true, predicted]` (K × K, K = 2 for binary) — it sums
exactly across DDP ranks.
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from podium.errors import PodiumError
from podium.metrics.base import Accumulator, as_tensor
from podium.metrics.segmentation import (
    RESERVED_NAMES,
    _valid,
    check_activation,
    default_class_names,
)

__all__ = ["ClassificationScores"]


class ClassificationScores(Accumulator):
    """Confusion-matrix accumulator: accuracy, F1 (binary / macro / micro / per class)."""

    fixed_layout = True

    def __init__(
        self,
        num_classes: int = 1,
        activation: Optional[str] = "sigmoid",
        threshold: float = 0.5,
        ignore_value: Optional[float] = None,
        class_names: Optional[Sequence[str]] = None,
    ):
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise PodiumError(f"num_classes must be >= 1 (1 = binary), got {num_classes}")
        self.binary = self.num_classes == 1
        self.size = 2 if self.binary else self.num_classes
        self.activation = check_activation(activation)
        self.threshold = float(threshold)
        self.ignore_value = ignore_value
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        if self.class_names is not None and len(self.class_names) != self.size:
            raise PodiumError(
                f"class_names has {len(self.class_names)} names for {self.size} classes"
            )
        for name in self.class_names or ():
            if name in RESERVED_NAMES:
                raise PodiumError(f'class name "{name}" is reserved for the averages')
        super().__init__()

    def reset(self) -> None:
        self.state = {"confusion": torch.zeros(self.size, self.size, dtype=torch.float64)}

    def _predicted_labels(self, outputs: torch.Tensor) -> torch.Tensor:
        batch = outputs.shape[0] if outputs.ndim else 1
        if self.binary:
            outputs = outputs.reshape(batch)
            probs = (
                torch.sigmoid(outputs.float()) if self.activation == "sigmoid" else outputs.float()
            )
            return (probs > self.threshold).long()
        if outputs.ndim == 1 and not outputs.is_floating_point():
            return outputs.long()  # labels already
        outputs = outputs.reshape(batch, -1)
        if outputs.shape[1] != self.num_classes:
            raise PodiumError(
                f"outputs have {outputs.shape[1]} classes, num_classes is {self.num_classes}"
            )
        return outputs.argmax(dim=1)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """outputs: logits (B,) / (B, 1) binary or (B, C); targets: labels (B,) or one-hot
        (B, C)."""
        outputs, targets = as_tensor(outputs), as_tensor(targets).to(as_tensor(outputs).device)
        predicted = self._predicted_labels(outputs)
        batch = predicted.shape[0]
        if (
            not self.binary
            and targets.numel() == batch * self.num_classes
            and targets.numel() != batch
        ):
            targets = targets.reshape(batch, -1)
            valid = _valid(targets, self.ignore_value).all(dim=1)
            labels = targets.argmax(dim=1)
        elif targets.numel() == batch:
            targets = targets.reshape(batch)
            valid = _valid(targets, self.ignore_value)
            labels = targets.float() > 0.5 if self.binary else targets
            labels = torch.where(valid, labels.long(), torch.zeros_like(labels.long()))
        else:
            raise PodiumError(
                f"targets of shape {tuple(targets.shape)} do not fit {batch} predictions "
                f"(labels (B,) or one-hot (B, {self.size}))"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.size):
            raise PodiumError(
                f"target labels must lie in [0, {self.size}), found {int(labels.max())}"
            )
        index = (labels * self.size + predicted)[valid]
        counts = torch.bincount(index, minlength=self.size * self.size)
        self._add("confusion", counts.reshape(self.size, self.size))

    def compute(self) -> Dict[str, Any]:
        """{"accuracy", "f1" (binary: positive class; multi-class: macro), "f1_macro",
        "f1_micro", "f1_per_class" (K,), "precision" (K,), "recall" (K,), "support" (K,),
        "confusion" (K, K)}; NaN while nothing was added."""
        confusion = self.state["confusion"].numpy()
        total = confusion.sum()
        tp = np.diag(confusion)
        predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
        fp, fn = predicted - tp, support - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300), 0.0)
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1e-300), 0.0)
            recall = np.where(support > 0, tp / np.maximum(support, 1e-300), 0.0)
        present = (support + predicted) > 0
        nan = float("nan")
        accuracy = float(tp.sum() / total) if total > 0 else nan
        macro = float(f1[present].mean()) if present.any() else nan
        result = {
            "accuracy": accuracy,
            "f1": float(f1[1]) if self.binary and total > 0 else macro,
            "f1_macro": macro,
            "f1_micro": accuracy,  # single-label: micro precision = micro recall = accuracy
            "f1_per_class": f1,
            "precision": precision,
            "recall": recall,
            "support": support,
            "confusion": confusion,
        }
        return result

    def compute_key_value(self, prefix: str = "") -> Dict[str, float]:
        """Binary: `{prefix}accuracy`, `{prefix}f1`. Multi-class: also `{prefix}f1/_macro`,
        `{prefix}f1/_micro` and `{prefix}f1/<class name>`."""
        result = self.compute()
        out = {f"{prefix}accuracy": result["accuracy"], f"{prefix}f1": result["f1"]}
        if not self.binary:
            out[f"{prefix}f1/_macro"] = result["f1_macro"]
            out[f"{prefix}f1/_micro"] = result["f1_micro"]
            names = self.class_names or default_class_names(self.size)
            for c, name in enumerate(names):
                out[f"{prefix}f1/{name}"] = float(result["f1_per_class"][c])
        return out

    @property
    def empty(self) -> bool:
        return float(self.state["confusion"].sum()) == 0
