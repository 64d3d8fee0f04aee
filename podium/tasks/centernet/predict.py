"""Prediction for CenterNet runs (model.py): boxes + scores per image, and mAP.

    image ─► resize by the run's `scale` ─► normalise ─► model (TTA views) ─► average maps
          ─► decode (3×3 max-pool peaks, top-k) ─► boxes in input pixels ─► ÷ scale ─► image pixels

Decoding is `decode_centernet` of model.py (beside the encoding it inverts), which the training
callback uses too: without TTA the mAP here equals the run's logged validation `map50`.

TTA (`tta="flip"`: identity + horizontal flip, CenterNet's flip test; `"d4"`: the 8 flips /
transposes) is `podium.inference.tta` with maps at the model's output stride: each view is
undone on the *maps* before averaging — the heatmap probabilities and the sizes are mirrored
back (w, h swapped after a transpose: rule `wh`), and the cell-centre offsets are mirrored back
*with the mirrored component negated* (rule `xy`), so every view votes for the same centre.
Inputs are padded at the bottom/right with 0 (the mean colour) to a multiple of the output
stride, so that map cells line up with image pixels in every view.

The model is a run's (`load_centernet_predictor(run)`) or its export run by onnxruntime
(`load_centernet_predictor(OnnxModule.open("trees.onnx"))`): `predictor_settings` — the
normalisation, the scale and the class names — come from the run's config or, alike, from the
file's metadata `reading`, which `podium export` wrote with the same function.

Two sources of images:
- `predict_deepforest(split)`: the run's own deepforest tiles (rebuilt from its `data:` block):
  detections in scene pixels, and mAP@`iou_threshold` of the tiles against their boxes;
- `predict_images(paths)`: any image files, whole (the model is fully convolutional).
"""

import inspect
import os
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
    trained_on,
    write_rows,
)
from podium.inference.tta import build_tta
from podium.tasks.centernet.data import build_deepforest_tiles, resize_by
from podium.tasks.centernet.metrics import DetectionMAP
from podium.tasks.centernet.model import decode_centernet
from podium.validation import check_number

__all__ = [
    "CenterNetPredictor",
    "TTA_MODES",
    "decode_centernet",
    "load_centernet_predictor",
    "predict_deepforest",
    "predict_images",
    "predictor_settings",
    "write_csv",
]

TTA_MODES = ("none", "flip", "d4")
RULES = {"heatmap": "scalar", "size": "wh", "offset": "xy"}  # how a view moves each map
COLUMNS = ("image", "name", "x1", "y1", "x2", "y2", "score", "label", "class")


class CenterNetPredictor(TaskPredictor):
    """Normalise, (pad,) run the TTA views, average the maps, decode boxes (named
    `class_names`, default: crown, or class_NN per heatmap channel)."""

    def __init__(
        self,
        model: torch.nn.Module,
        normalize=None,
        scale: float = 1.0,
        tta: str = "none",
        batch_size: int = 8,
        device=None,
        top_k: int = 100,
        pool_size: int = 3,
        channels: int = 3,
        class_names: Optional[Sequence[str]] = None,
    ):
        super().__init__(model, normalize, batch_size, device, channels)
        self.output_stride = int(getattr(model, "output_stride", 4))
        self.tta = build_tta(tta, vector_keys=RULES, stride=self.output_stride)
        self.scale, self.top_k, self.pool_size = float(scale), int(top_k), int(pool_size)
        num_classes = int(getattr(model, "num_classes", 1))
        self.class_names = list(class_names or _class_names({}, num_classes))

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"heatmap": probabilities, "size", "offset"} (N×·×h×w) of standardised N×C×H×W images."""
        return self.tta(self._probabilities, images.to(self.device))

    def _probabilities(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.model(images)
        if not isinstance(out, dict) or any(key not in out for key in RULES):
            raise PodiumError(
                "the model must return a dict with heatmap, size and offset "
                "(podium.tasks.centernet.model)"
            )
        maps = {key: out[key].float() for key in RULES}
        return {**maps, "heatmap": torch.sigmoid(maps["heatmap"])}

    def detect(self, images: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """Boxes (xyxy input pixels), scores, labels per standardised image (top_k, all scores)."""
        maps = self.maps(images)
        return decode_centernet(
            maps["heatmap"],
            maps["size"],
            maps["offset"],
            self.output_stride,
            self.top_k,
            self.pool_size,
            probabilities=True,
        )

    def predict_image(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Detections of one H×W×C raw image, boxes in its pixels (resized by `scale` first)."""
        image, (sx, sy) = resize_by(self.check_channels(image), self.scale)
        found = self.detect(self.standardize(image)[None])[0]
        return {
            "boxes": found["boxes"].cpu().numpy().astype(np.float64) / [sx, sy, sx, sy],
            "scores": found["scores"].cpu().numpy(),
            "labels": found["labels"].cpu().numpy(),
        }


def _default(name: str):
    return inspect.signature(build_deepforest_tiles).parameters[name].default


def predictor_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """What the predictor reads from a run's config, resolved: `normalize`, `scale` (the resize
    before the model: data/scale of deepforest tiles, else 1) and `class_names` (the same keys
    for any config); `podium export` writes them as the file's metadata `reading`."""
    data = run_data_config(dict(config))
    deepforest = trained_on(data, build_deepforest_tiles)
    num_classes = int((config.get("model") or {}).get("num_classes", 1))
    return {
        "normalize": resolved_normalize(data.get("normalize")),
        "scale": data.get("scale", _default("scale")) if deepforest else 1.0,
        "class_names": _class_names(data, num_classes),
    }


def load_centernet_predictor(
    run, checkpoint="best", tta="none", batch_size=8, device=None, top_k=100, scale=None
) -> Tuple[CenterNetPredictor, Optional[Dict[str, Any]]]:
    """(CenterNetPredictor with the weights, normalisation, scale and class names of `run` — a
    run directory, or an `OnnxModule` of its export —; the run's config, None for an export)."""
    model, config, settings, channels = load_task_model(
        run,
        checkpoint,
        "centernet",
        predictor_settings,
        lambda m: "heatmap" in getattr(m, "heads", {}),
        "CenterNet",
    )
    scale = settings["scale"] if scale is None else scale
    check_number(scale, "scale", "> 0")
    predictor = CenterNetPredictor(
        model,
        settings["normalize"],
        float(scale),
        tta,
        batch_size,
        device,
        top_k,
        channels=channels,
        class_names=settings["class_names"],
    )
    return predictor, config


def _rows(
    name: str, found: Dict[str, Any], min_score: float, class_names: Sequence[str]
) -> List[Dict[str, Any]]:
    rows = []
    for box, score, label in zip(found["boxes"], found["scores"], found["labels"]):
        if float(score) < min_score:
            continue
        rows.append(
            {
                "name": name,
                "x1": round(float(box[0]), 2),
                "y1": round(float(box[1]), 2),
                "x2": round(float(box[2]), 2),
                "y2": round(float(box[3]), 2),
                "score": round(float(score), 5),
                "label": int(label),
                "class": class_names[int(label)],
            }
        )
    return rows


def _class_names(params: Dict[str, Any], num_classes: int) -> List[str]:
    classes = params.get("classes")
    if classes:
        return [str(c) for c in classes]
    return ["crown"] if num_classes == 1 else [f"class_{c:02d}" for c in range(num_classes)]


def predict_deepforest(
    predictor: CenterNetPredictor,
    config: Dict[str, Any],
    split: str = "valid",
    min_score: float = 0.1,
    iou_threshold: float = 0.5,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(rows: detections of the run's deepforest `split` tiles in scene pixels; {"map", "ap", ...}
    of those tiles at `iou_threshold`, computed from every top-k detection)."""
    dataset = run_split(config, build_deepforest_tiles, split)
    names = _class_names(run_data_config(config), dataset.num_classes)
    metric = DetectionMAP(
        dataset.num_classes, iou_threshold, names if dataset.num_classes > 1 else None
    )
    rows = []
    for samples in predictor.batches(dataset):
        found = predictor.detect(torch.stack([s["image"] for s in samples]))
        metric.update(found, [s["boxes"] for s in samples], [s["labels"] for s in samples])
        for sample, detection in zip(samples, found):
            scene = dataset.scenes[sample["source"]]
            boxes = window_to_scene(detection["boxes"].cpu().numpy(), sample["window"])
            boxes /= np.tile(scene.scale, 2)  # scaled scene pixels → the image's
            tile_rows = _rows(sample["name"], {**detection, "boxes": boxes}, min_score, names)
            for row in tile_rows:
                row["image"] = os.path.basename(scene.item.image_path)
            rows += tile_rows
    return rows, {**metric.compute(), "tiles": len(dataset)}


def predict_images(
    predictor: CenterNetPredictor, paths: Sequence, min_score: float = 0.1
) -> List[Dict[str, Any]]:
    """Detections of every image file (whole images), boxes in that image's pixels."""
    images = predictor.read_images(paths)
    rows = []
    for path, image in images:
        rows += _rows(path.stem, predictor.predict_image(image), min_score, predictor.class_names)
    return rows


def write_csv(rows: Sequence[Dict[str, Any]], path):
    """Rows to CSV atomically, in the columns image, name, x1 … y2, score, label, class."""
    return write_rows(rows, path, COLUMNS)
