"""Mean average precision of box detections at one IoU threshold (VOC-style AP, mAP@0.5).

Per image and class, detections are matched greedily in order of decreasing score: each one
takes the ground-truth box of its class it overlaps most; it is a true positive when that IoU
is ≥ `iou_threshold` and the box was not taken by a higher-scoring detection, else a false
positive (the VOC devkit's rule, with ≥ as in COCO; VOC's strict > differs only on exact ties).
Boxes are xyxy in continuous coordinates (no "+1" pixel convention, as `podium.metrics.boxes`).

AP of a class: all its detections over the whole loader, sorted by score, give a precision /
recall curve; AP is the area under its monotone envelope (precision made non-increasing from
the right), summed over every recall step — the VOC 2010+ "all points" AP, not the 11-point
one. A class without ground truth has no AP (NaN, left out of the mean); one with ground truth
but no detections has AP 0. mAP = mean AP over classes with ground truth (NaN if none).

State: one row (class, score, true positive) per detection and the ground-truth count per
class. Matching happens per image in `update`, so ranks only need to *concatenate* their rows
and *sum* their counts (`reduced()`): the DDP value equals the single-process one.
"""

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from podium.errors import PodiumError
from podium.metrics._distributed import all_gather_object, all_reduce_sum, world_size
from podium.metrics.base import Accumulator, as_tensor
from podium.metrics.boxes import box_iou
from podium.validation import check_int, check_number

__all__ = ["DetectionMAP", "average_precision", "match_detections"]

Boxes = Union[torch.Tensor, np.ndarray, Sequence]


def match_detections(
    boxes: torch.Tensor, scores: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = 0.5
) -> torch.Tensor:
    """True-positive flags (K,) of one image and class's detections (K×4, scores K) against its
    ground truth (M×4), in the detections' given order (VOC greedy matching by score)."""
    tp = torch.zeros(len(boxes), dtype=torch.bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = box_iou(
        boxes[:, None, :].expand(-1, len(gt_boxes), 4),
        gt_boxes[None, :, :].expand(len(boxes), -1, 4),
    ).numpy()
    best, best_iou = iou.argmax(axis=1), iou.max(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for index in torch.argsort(scores, descending=True, stable=True).tolist():
        if best_iou[index] >= iou_threshold and not taken[best[index]]:
            tp[index], taken[best[index]] = True, True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """VOC all-points AP of one class from its detections' scores and true-positive flags."""
    if num_gt <= 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    true_positives, false_positives = np.cumsum(hits), np.cumsum(1.0 - hits)
    recall = np.concatenate([[0.0], true_positives / num_gt, [1.0]])
    precision = np.concatenate([[0.0], true_positives / (true_positives + false_positives), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the monotone envelope
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


class DetectionMAP(Accumulator):
    """mAP at `iou_threshold` over every image seen (see the module docstring).

    update(detections, gt_boxes, gt_labels): per image, `detections[i]` is a mapping with
    "boxes" (K×4 xyxy), "scores" (K) and "labels" (K class indices); `gt_boxes[i]` (M×4) and
    `gt_labels[i]` (M) the ground truth — a padded N×M×4 / N×M batch works too: rows whose
    label is < 0 (or whose box holds NaN) are padding.
    """

    def __init__(
        self,
        num_classes: int = 1,
        iou_threshold: float = 0.5,
        class_names: Optional[Sequence[str]] = None,
    ):
        check_int(num_classes, "DetectionMAP num_classes", 1)
        check_number(iou_threshold, "DetectionMAP iou_threshold", "(0, 1]")
        if class_names is not None and len(class_names) != num_classes:
            raise PodiumError(
                f"DetectionMAP class_names has {len(class_names)} names for {num_classes} classes"
            )
        self.num_classes, self.iou_threshold = num_classes, float(iou_threshold)
        self.class_names = [str(n) for n in class_names] if class_names is not None else None
        super().__init__()

    def reset(self) -> None:
        self.state = {
            "detections": torch.zeros(0, 3, dtype=torch.float64),
            "num_gt": torch.zeros(self.num_classes, dtype=torch.float64),
        }

    def update(
        self, detections: Sequence[Mapping[str, Boxes]], gt_boxes: Boxes, gt_labels: Boxes
    ) -> None:
        if len(detections) != len(gt_boxes) or len(gt_boxes) != len(gt_labels):
            raise PodiumError(
                f"DetectionMAP.update: {len(detections)} detection sets for {len(gt_boxes)} images "
                f"of ground truth and {len(gt_labels)} label sets"
            )
        rows = [self.state["detections"]]
        for detection, boxes, labels in zip(detections, gt_boxes, gt_labels):
            boxes = as_tensor(boxes).cpu().to(torch.float64).reshape(-1, 4)
            labels = as_tensor(labels).cpu().to(torch.int64).reshape(-1)
            real = (labels >= 0) & torch.isfinite(boxes).all(dim=1)
            boxes, labels = boxes[real], labels[real]
            if len(labels) and int(labels.max()) >= self.num_classes:
                raise PodiumError(
                    f"DetectionMAP: ground-truth class {int(labels.max())} >= "
                    f"num_classes {self.num_classes}"
                )
            self.state["num_gt"] += torch.bincount(labels, minlength=self.num_classes).to(
                torch.float64
            )
            pred_boxes = as_tensor(detection["boxes"]).cpu().to(torch.float64).reshape(-1, 4)
            scores = as_tensor(detection["scores"]).cpu().to(torch.float64).reshape(-1)
            classes = as_tensor(detection["labels"]).cpu().to(torch.int64).reshape(-1)
            for c in torch.unique(classes).tolist():
                if not 0 <= c < self.num_classes:
                    raise PodiumError(
                        f"DetectionMAP: detected class {c} outside [0, {self.num_classes})"
                    )
                mine = classes == c
                tp = match_detections(
                    pred_boxes[mine], scores[mine], boxes[labels == c], self.iou_threshold
                )
                rows.append(
                    torch.stack(
                        [torch.full_like(scores[mine], c), scores[mine], tp.to(torch.float64)],
                        dim=1,
                    )
                )
        self.state["detections"] = torch.cat(rows)

    def reduced(self) -> "DetectionMAP":
        """A copy holding every rank's detections (concatenated in rank order) and GT counts
        (summed)."""
        other = DetectionMAP(self.num_classes, self.iou_threshold, self.class_names)
        other.state = {
            "detections": self.state["detections"].clone(),
            "num_gt": self.state["num_gt"].clone(),
        }
        if world_size() > 1:
            other.state["detections"] = torch.cat(all_gather_object(self.state["detections"]))
            other.state["num_gt"] = all_reduce_sum({"num_gt": self.state["num_gt"]})["num_gt"]
        return other

    def merge(self, other: "DetectionMAP") -> "DetectionMAP":
        self.state["detections"] = torch.cat([self.state["detections"], other.state["detections"]])
        self.state["num_gt"] = self.state["num_gt"] + other.state["num_gt"]
        return self

    def compute(self) -> Dict[str, Any]:
        """{"map": float, "ap": per-class array (NaN without GT), "num_gt", "num_detections"}."""
        rows = self.state["detections"].numpy()
        num_gt = self.state["num_gt"].numpy()
        ap = np.array(
            [
                average_precision(
                    rows[rows[:, 0] == c, 1], rows[rows[:, 0] == c, 2], int(num_gt[c])
                )
                for c in range(self.num_classes)
            ]
        )
        with_gt = num_gt > 0
        return {
            "map": float(ap[with_gt].mean()) if with_gt.any() else float("nan"),
            "ap": ap,
            "num_gt": num_gt.astype(np.int64),
            "num_detections": len(rows),
        }

    @property
    def key(self) -> str:
        """`map50` for IoU 0.5, `map75` for 0.75, ..."""
        return f"map{round(self.iou_threshold * 100)}"

    def compute_key_value(self, prefix: str = "") -> Dict[str, float]:
        """`{prefix}map50` and, with several classes, `{prefix}map50/<class>` (the class's AP)."""
        values = self.compute()
        out = {f"{prefix}{self.key}": values["map"]}
        if self.num_classes > 1:
            names = self.class_names or [f"class_{c:02d}" for c in range(self.num_classes)]
            out.update(
                {f"{prefix}{self.key}/{name}": float(ap) for name, ap in zip(names, values["ap"])}
            )
        return out

    @property
    def empty(self) -> bool:
        return len(self.state["detections"]) == 0 and float(self.state["num_gt"].sum()) == 0
