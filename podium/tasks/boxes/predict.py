"""Prediction for the boxes task (`podium.tasks.boxes.model`): score + one box per image.

    image (any size) ─► letterbox to `size` ─► model ─► sigmoid(logits), boxes (cx, cy, w, h)
      in [0, 1] of the letterboxed frame ─► ×size, xyxy ─► `unletterbox_boxes` ─► image pixels

The input size and normalisation are the run's own (`data:` block of its saved config), so a
prediction sees exactly what validation saw; the model is the run's (`load_boxes_predictor(run)`)
or its export run by onnxruntime (`load_boxes_predictor(OnnxModule.open("boxes.onnx"))`), whose
metadata `reading` holds the same size and normalisation (`predictor_settings`). Two sources of
images:

- `predict_images(paths)`: any image files; every file is one crop, boxes in its pixels;
- `predict_deepforest(split)`: the run's own deepforest windows (rebuilt from its `data:`
  block), boxes in *scene* pixels next to the true label/box and the IoU per window.

TTA (`tta`: flip, d2, d4, multiscale or a `build_tta` mapping) is `podium.inference.tta`: the
box goes to it as a centre offset from the input's centre (rule `xy`: a horizontal flip maps
cx to 1 - cx, a transpose swaps x and y) and a size (rule `wh`: a transpose swaps w and h), so
each view is undone on the box before the views are averaged. Logits are averaged, then the
sigmoid taken.

CSV columns: name, score, label (score > threshold), x1, y1, x2, y2 and, for deepforest,
source, window_x0..window_y1, true_label, true_x1..true_y2, iou (empty for crops without a crown).
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from podium.datasets.deepforest import window_to_scene
from podium.datasets.normalize import resolved_normalize
from podium.errors import PodiumError
from podium.inference.checkpoint import run_data_config
from podium.inference.task_predictor import (
    TaskPredictor,
    load_task_model,
    run_split,
    write_rows,
)
from podium.inference.tta import MODES as TTA_MODES
from podium.inference.tta import build_tta
from podium.metrics.boxes import box_iou
from podium.tasks.boxes.data import (
    build_deepforest_datasets,
    cxcywh_to_xyxy,
    prepare_input,
    unletterbox_boxes,
)
from podium.validation import check_int, check_number

__all__ = [
    "BoxesPredictor",
    "TTA_MODES",
    "load_boxes_predictor",
    "predict_deepforest",
    "predict_images",
    "predictor_settings",
    "summarize",
    "write_csv",
]

RULES = {"logits": "scalar", "centre": "xy", "size": "wh"}  # how a view moves each output


class BoxesPredictor(TaskPredictor):
    """Letterbox, batch, predict, average TTA views, map boxes back to each crop's pixels."""

    def __init__(
        self,
        model: torch.nn.Module,
        size: int = 128,
        normalize=None,
        tta="none",
        batch_size: int = 16,
        device: Optional[torch.device] = None,
        clip: bool = True,
        channels: int = 3,
    ):
        super().__init__(model, normalize, batch_size, device, channels)
        self.size, self.clip = int(size), bool(clip)
        self.tta = build_tta(tta, vector_keys=RULES)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(probabilities N×C, boxes N×4 normalised cxcywh) for letterboxed inputs, TTA-averaged
        (logits)."""
        out = self.tta(self._outputs, images)
        logits = out["logits"]  # one logit: sigmoid (BCE); several classes: softmax
        probabilities = (
            torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        )
        return probabilities, torch.cat([out["centre"] + 0.5, out["size"]], dim=1)

    def _outputs(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The model's outputs in the terms `podium.inference.tta` knows how to undo: the box
        centre as an offset from the input's centre (a vector: flips negate it, a transpose swaps
        it) and the box size (an extent: a transpose swaps it), both normalised, so unchanged by
        rescaling."""
        out = self.model(images)
        if not isinstance(out, dict) or "logits" not in out or "boxes" not in out:
            raise PodiumError(
                "the model must return a dict with `logits` and `boxes` (podium.tasks.boxes.model)"
            )
        boxes = out["boxes"].float()
        return {"logits": out["logits"].float(), "centre": boxes[:, :2] - 0.5, "size": boxes[:, 2:]}

    def predict(self, crops: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(scores N×C, boxes N×4 xyxy in each crop's pixels) for H×W×C crops of any size."""
        scores, boxes = [], []
        for batch in self.batches(crops):
            prepared = [prepare_input(crop, self.size, self.normalizer) for crop in batch]
            batch = torch.stack([tensor for tensor, _, _ in prepared]).to(self.device)
            probabilities, normalised = self.forward(batch)
            framed = cxcywh_to_xyxy(normalised.cpu().numpy().astype(np.float64)) * self.size
            for (_, meta, _), box in zip(prepared, framed):
                box = unletterbox_boxes(box, meta)
                if self.clip:
                    height, width = meta["original"]
                    box = np.clip(box, 0, [width, height, width, height])
                boxes.append(box)
            scores.append(probabilities.cpu().numpy())
        return np.concatenate(scores), np.asarray(boxes, np.float64).reshape(-1, 4)


def predictor_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """What the predictor reads from a run's config: `normalize` and the letterbox `size` (the
    same keys for any config); `podium export` writes them as the file's metadata `reading`."""
    data = run_data_config(dict(config))
    return {"normalize": resolved_normalize(data.get("normalize")), "size": data.get("size", 128)}


def load_boxes_predictor(
    run, checkpoint="best", tta="none", batch_size=16, device=None, clip=True
) -> Tuple[BoxesPredictor, Optional[Dict[str, Any]]]:
    """(BoxesPredictor with the weights, size and normalisation of `run` — a run directory, or
    an `OnnxModule` of its export —; the run's config, None for an export)."""
    model, config, settings, channels = load_task_model(
        run, checkpoint, "boxes", predictor_settings
    )
    where = f"{run}: data/size" if config is not None else f"{model.path}: podium.reading size"
    size = check_int(settings["size"], where, 8, "an integer >= 8 (the letterbox side)")
    return BoxesPredictor(
        model, size, settings["normalize"], tta, batch_size, device, clip, channels
    ), config


def _row(name: str, score: np.ndarray, box: np.ndarray, threshold: float) -> Dict[str, Any]:
    row = {"name": name, "score": round(float(score[0]), 6), "label": int(score[0] > threshold)}
    if len(score) > 1:  # several classes: the best one
        row.update(score=round(float(score.max()), 6), label=int(score.argmax()))
    row.update({key: round(float(v), 3) for key, v in zip(("x1", "y1", "x2", "y2"), box)})
    return row


def predict_images(
    predictor: BoxesPredictor, paths: Sequence, threshold: float = 0.5
) -> List[Dict[str, Any]]:
    """One row per image file (boxes in that image's pixels)."""
    threshold = check_number(threshold, "threshold", "[0, 1]")
    images = list(predictor.read_images(paths))
    scores, boxes = predictor.predict([image for _, image in images])
    return [
        {**_row(path.stem, s, b, threshold), "image_width": c.shape[1], "image_height": c.shape[0]}
        for (path, c), s, b in zip(images, scores, boxes)
    ]


def predict_deepforest(
    predictor: BoxesPredictor, config: Dict[str, Any], split: str = "valid", threshold: float = 0.5
) -> List[Dict[str, Any]]:
    """One row per window of the run's deepforest `split`: prediction and truth in scene pixels."""
    threshold = check_number(threshold, "threshold", "[0, 1]")
    dataset = run_split(config, build_deepforest_datasets, split)
    crops = [dataset.images[w.source][w.y0 : w.y1, w.x0 : w.x1] for w in dataset.windows]
    scores, boxes = predictor.predict(crops)
    rows = []
    for index, (window, score, box) in enumerate(zip(dataset.windows, scores, boxes)):
        row = _row(dataset.name(index), score, window_to_scene(box, window[1:]), threshold)
        row.update(
            source=window.source,
            window_x0=window.x0,
            window_y0=window.y0,
            window_x1=window.x1,
            window_y1=window.y1,
        )
        truth = dataset.target(index)
        row["true_label"] = int(truth is not None)
        if truth is not None:
            true_box = window_to_scene(truth, window[1:])
            row.update(
                {
                    key: round(float(v), 3)
                    for key, v in zip(("true_x1", "true_y1", "true_x2", "true_y2"), true_box)
                }
            )
            row["iou"] = round(
                float(
                    box_iou(
                        torch.as_tensor(window_to_scene(box, window[1:])), torch.as_tensor(true_box)
                    )
                ),
                6,
            )
        rows.append(row)
    return rows


def summarize(rows: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Accuracy and mean IoU over the rows with a true label / box (deepforest rows)."""
    labelled = [r for r in rows if "true_label" in r]
    ious = [r["iou"] for r in labelled if "iou" in r]
    return {
        "count": len(rows),
        "accuracy": float(np.mean([r["label"] == r["true_label"] for r in labelled]))
        if labelled
        else float("nan"),
        "box_iou": float(np.mean(ious)) if ious else float("nan"),
    }


write_csv = write_rows  # rows to CSV, atomically, columns in the order they appear
