"""Instance metrics: objects matched one-to-one by IoU.

Per image, every (truth, prediction) pair's IoU comes from one contingency table of the two
label maps. Pairs with IoU ≥ 0.5 are matched greedily, highest IoU first (above 0.5 a match is
unique anyway: two objects cannot both overlap one object by more than half of their union). At
threshold t: TP(t) = matched pairs with IoU ≥ t, FP(t) = predictions − TP(t),
FN(t) = truths − TP(t).

- **object F1** (SpaceNet): 2·TP / (2·TP + FP + FN) at t = 0.5, from the counts summed over
  images (a large image with many objects weighs more);
- **DSB2018 AP**: per image, the mean over t ∈ {0.5, 0.55, …, 0.95} of TP / (TP + FP + FN),
  then the mean over images. An image with neither true nor predicted objects scores 1.

`InstanceScores` keeps only sums — per-threshold TP/FP/FN counts, the sum of per-image AP and
the number of images — so the value summed over DDP ranks (`Accumulator.reduced`) equals the one
process that saw every image would compute.
"""

from typing import Dict, Tuple

import numpy as np
import torch

from podium.errors import PodiumError
from podium.metrics.base import Accumulator
from podium.tasks.instances.targets import check_instance_labels

__all__ = ["THRESHOLDS", "iou_matrix", "match_counts", "average_precision", "InstanceScores"]

THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def iou_matrix(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """T×P IoU of every true object (ids ≥ 1, sorted) with every predicted one."""
    truth_ids, t = np.unique(truth, return_inverse=True)
    pred_ids, p = np.unique(predicted, return_inverse=True)
    table = np.bincount(
        t.ravel() * len(pred_ids) + p.ravel(), minlength=len(truth_ids) * len(pred_ids)
    ).reshape(len(truth_ids), len(pred_ids))
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    iou = table / np.maximum(union, 1)
    return iou[truth_ids > 0][:, pred_ids > 0]


def match_counts(truth, predicted) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, FN) at each of THRESHOLDS for one image's two H×W label maps."""
    truth = check_instance_labels(truth, "(truth)")
    predicted = check_instance_labels(predicted, "(prediction)")
    if truth.shape != predicted.shape:
        raise PodiumError(
            f"instance label maps of different sizes: truth {truth.shape}, prediction "
            f"{predicted.shape}; expected the same H×W"
        )
    iou = iou_matrix(truth, predicted)
    matched = []
    if iou.size:
        rows, cols = np.nonzero(iou >= THRESHOLDS[0])
        used_t, used_p = set(), set()
        for k in np.argsort(-iou[rows, cols], kind="stable"):
            r, c = rows[k], cols[k]
            if r not in used_t and c not in used_p:
                used_t.add(r)
                used_p.add(c)
                matched.append(iou[r, c])
    matched = np.asarray(matched)
    tp = np.array([(matched >= t - 1e-12).sum() for t in THRESHOLDS], dtype=np.int64)
    return tp, iou.shape[1] - tp, iou.shape[0] - tp


def average_precision(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """DSB2018 AP of one image: mean over thresholds of TP / (TP + FP + FN) (1 with no objects)."""
    total = tp + fp + fn
    return float(np.mean(np.where(total > 0, tp / np.maximum(total, 1), 1.0)))


class InstanceScores(Accumulator):
    """Object F1 at IoU ≥ 0.5 and DSB2018 AP from predicted and true label maps.

    `update(predicted, truth)` takes label maps (H×W, or batches B×H×W / B×1×H×W; tensors or
    numpy); with `settings` (a `watershed.InstanceSettings`), `predicted` are probabilities
    (B×C×H×W) turned into label maps first.
    """

    fixed_layout = True

    def __init__(self, settings=None):
        self.settings = settings
        super().__init__()

    def _init_state(self) -> Dict[str, torch.Tensor]:
        zeros = torch.zeros(len(THRESHOLDS), dtype=torch.float64)
        return {
            "tp": zeros.clone(),
            "fp": zeros.clone(),
            "fn": zeros.clone(),
            "ap_sum": torch.zeros(1, dtype=torch.float64),
            "images": torch.zeros(1, dtype=torch.float64),
        }

    def reset(self) -> None:
        self.state = self._init_state()

    def add_image(self, predicted, truth) -> Dict[str, float]:
        """Add one image; returns its own `object_f1` and `ap`."""
        tp, fp, fn = match_counts(truth, predicted)
        ap = average_precision(tp, fp, fn)
        for name, value in (("tp", tp), ("fp", fp), ("fn", fn), ("ap_sum", [ap]), ("images", [1])):
            self._add(name, torch.as_tensor(np.asarray(value, dtype=np.float64)))
        return {"object_f1": _f1(tp[0], fp[0], fn[0]), "ap": ap}

    def update(self, predicted, truth) -> None:
        predicted, truth = _numpy(predicted), _numpy(truth)
        if self.settings is not None:
            predicted = np.stack([self.settings(p) for p in _batch(predicted, 4)])
        predicted, truth = _batch(predicted, 3), _batch(truth, 3)
        for p, t in zip(predicted, truth):
            self.add_image(p, t)

    def compute(self) -> Dict[str, float]:
        s = {k: v.numpy() for k, v in self.state.items()}
        images = float(s["images"][0])
        return {
            "object_f1": _f1(s["tp"][0], s["fp"][0], s["fn"][0]),
            "ap": float(s["ap_sum"][0] / images) if images else float("nan"),
            "tp": float(s["tp"][0]),
            "fp": float(s["fp"][0]),
            "fn": float(s["fn"][0]),
            "images": images,
        }

    def compute_key_value(self, prefix: str = "") -> Dict[str, float]:
        values = self.compute()
        return {f"{prefix}{k}": values[k] for k in ("object_f1", "ap")}


def _f1(tp, fp, fn) -> float:
    total = 2 * tp + fp + fn
    return float(2 * tp / total) if total else 1.0


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _batch(array: np.ndarray, ndim: int) -> np.ndarray:
    """Label maps B×H×W (ndim 3) or probabilities B×C×H×W (ndim 4), batch axis added."""
    if ndim == 3 and array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    while array.ndim < ndim:
        array = array[None]
    return array
