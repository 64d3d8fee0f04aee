"""Prediction for CenterNet runs (`podium.models.centernet`): boxes + scores per image, and mAP.

    image ─► resize by the run's `scale` ─► normalise ─► model (TTA views) ─► average maps
          ─► decode (3×3 max-pool peaks, top-k) ─► boxes in input pixels ─► ÷ scale ─► image pixels

Decoding is `podium.models.centernet.decode_centernet` (it lives with the model that defines
the encoding, so the training callback — which may not import `podium.inference` — decodes
the same way); without TTA the mAP here equals the run's logged validation `map50`.

TTA (`tta="flip"`: identity + horizontal flip, CenterNet's flip test; `"d4"`: the 8 flips /
transposes, square inputs) runs the model on each view and undoes the view on the *maps*
before averaging (`podium.datasets.centernet.transform_maps`): the heatmap probabilities and
the sizes are mirrored back (w, h swapped after a transpose), and the cell-centre offsets are
mirrored back *with the mirrored component negated*, so every view votes for the same centre.
Inputs are padded at the bottom/right with 0 (the mean colour) to a multiple of the output
stride (and to a square for d4) so that map cells line up with image pixels in every view.
(Written here: the shared `podium.inference.tta` did not exist when this was written, and the
offset/size de-augmentation is this head's own.)

Two sources of images:
- `predict_deepforest(split)`: the run's own deepforest tiles (rebuilt from its `data:` block):
  detections in scene pixels, and mAP@`iou_threshold` of the tiles against their boxes;
- `predict_images(paths)`: any image files, whole (the model is fully convolutional).
"""

import inspect
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from podium.datasets.boxes import IMAGENET_NORMALIZE
from podium.datasets.centernet import build_deepforest_tiles, transform_maps
from podium.datasets.normalize import build_normalizer
from podium.datasets.readers import read_image
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.checkpoint import load_model, run_data_config
from podium.metrics.detection_map import DetectionMAP
from podium.models.centernet import decode_centernet
from podium.validation import check_number

__all__ = [
    "CenterNetPredictor",
    "DEEPFOREST_BUILDER",
    "TTA_MODES",
    "decode_centernet",
    "load_centernet_predictor",
    "predict_deepforest",
    "predict_images",
    "tta_views",
    "write_csv",
]

TTA_MODES = ("none", "flip", "d4")
DEEPFOREST_BUILDER = "podium.datasets.centernet.build_deepforest_tiles"
View = Tuple[bool, bool, bool]  # (hflip, vflip, transpose)


def tta_views(mode: str) -> List[View]:
    """The views of a TTA mode as (hflip, vflip, transpose) flags; transpose is applied first."""
    if mode in (None, "none"):
        return [(False, False, False)]
    if mode == "flip":
        return [(False, False, False), (True, False, False)]
    if mode == "d4":
        return [(h, v, t) for t in (False, True) for h in (False, True) for v in (False, True)]
    raise PodiumError(f'unknown tta "{mode}"; expected one of: {", ".join(TTA_MODES)}')


def view_image(images: torch.Tensor, view: View) -> torch.Tensor:
    """N×C×H×W images as the view sees them: transposed, then h-flipped, then v-flipped."""
    hflip, vflip, transpose = view
    images = images.transpose(-1, -2) if transpose else images
    images = images.flip(-1) if hflip else images
    return images.flip(-2) if vflip else images


def undo_view(maps: Dict[str, torch.Tensor], view: View) -> Dict[str, torch.Tensor]:
    """The view's output maps brought back to the original frame (steps undone in reverse)."""
    hflip, vflip, transpose = view
    return transform_maps(transform_maps(maps, hflip=hflip, vflip=vflip), transpose=transpose)


class CenterNetPredictor:
    """Normalise, (pad,) run the TTA views, average the maps, decode boxes."""

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
    ):
        self.device = (
            torch.device(device)
            if device is not None
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.model = model.to(self.device).eval()
        self.output_stride = int(getattr(model, "output_stride", 4))
        self.normalizer = build_normalizer(IMAGENET_NORMALIZE if normalize is None else normalize)
        self.scale, self.tta, self.views = float(scale), tta, tta_views(tta)
        self.batch_size, self.top_k = int(batch_size), int(top_k)
        self.pool_size, self.channels = int(pool_size), int(channels)

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"heatmap": probabilities, "size", "offset"} (N×·×h×w) of standardised N×C×H×W images."""
        images = images.to(self.device)
        height, width = images.shape[-2:]
        if self.tta != "none":
            stride = self.output_stride
            target_h, target_w = -(-height // stride) * stride, -(-width // stride) * stride
            if self.tta == "d4":
                target_h = target_w = max(target_h, target_w)
            images = F.pad(images, (0, target_w - width, 0, target_h - height))
        total = None
        for view in self.views:
            out = self.model(view_image(images, view))
            if not isinstance(out, dict) or any(
                key not in out for key in ("heatmap", "size", "offset")
            ):
                raise PodiumError(
                    "the model must return a dict with heatmap, size and offset (podium.models.centernet)"
                )
            maps = undo_view(
                {
                    "heatmap": torch.sigmoid(out["heatmap"].float()),
                    "size": out["size"].float(),
                    "offset": out["offset"].float(),
                },
                view,
            )
            total = maps if total is None else {key: total[key] + maps[key] for key in total}
        out_h, out_w = -(-height // self.output_stride), -(-width // self.output_stride)
        return {key: (value / len(self.views))[..., :out_h, :out_w] for key, value in total.items()}

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
        if image.shape[-1] < self.channels:
            raise PodiumError(
                f"the image has {image.shape[-1]} channel(s); the model expects {self.channels}"
            )
        image = image[..., : self.channels]
        height, width = image.shape[:2]
        new_w, new_h = max(1, round(width * self.scale)), max(1, round(height * self.scale))
        if (new_w, new_h) != (width, height):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(
            np.ascontiguousarray(self.normalizer(image).transpose(2, 0, 1), np.float32)
        )
        found = self.detect(tensor[None])[0]
        factor = np.array([new_w / width, new_h / height] * 2)
        return {
            "boxes": found["boxes"].cpu().numpy().astype(np.float64) / factor,
            "scores": found["scores"].cpu().numpy(),
            "labels": found["labels"].cpu().numpy(),
        }


def _default(name: str):
    return inspect.signature(build_deepforest_tiles).parameters[name].default


def load_centernet_predictor(
    run,
    checkpoint: str = "best",
    tta: str = "none",
    batch_size: int = 8,
    device=None,
    top_k: int = 100,
    scale: Optional[float] = None,
) -> Tuple[CenterNetPredictor, Dict[str, Any]]:
    """(CenterNetPredictor with the run's weights, normalisation and scale; the run's config)."""
    model, config = load_model(Path(run), checkpoint)
    if not hasattr(model, "heads") or "heatmap" not in getattr(model, "heads", {}):
        raise PodiumError(
            f"{run} is not a CenterNet run (model "
            f"{config['model'].get('name') or config['model'].get('_target_')}); "
            f"expected model name: centernet (_target_: podium.models.create_model)"
        )
    params = run_data_config(config)
    if scale is None:
        scale = (
            params.get("scale", _default("scale"))
            if params.get("_target_") == DEEPFOREST_BUILDER
            else 1.0
        )
    check_number(scale, "scale", "> 0")
    channels = int((config.get("model") or {}).get("in_channels", 3))
    predictor = CenterNetPredictor(
        model,
        params.get("normalize"),
        float(scale),
        tta,
        batch_size,
        device,
        top_k,
        channels=channels,
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
    params = run_data_config(config)
    if params.pop("_target_", None) != DEEPFOREST_BUILDER:
        raise PodiumError(
            f"the run was not trained on {DEEPFOREST_BUILDER} (its data/_target_); use --images for other data"
        )
    params.pop("train_transforms", None)
    params.pop("valid_transforms", None)
    dataset = build_deepforest_tiles(**{**params, "splits": [split]})[split]
    names = _class_names(params, dataset.num_classes)
    metric = DetectionMAP(
        dataset.num_classes, iou_threshold, names if dataset.num_classes > 1 else None
    )
    rows = []
    for start in range(0, len(dataset), predictor.batch_size):
        samples = [
            dataset[i] for i in range(start, min(start + predictor.batch_size, len(dataset)))
        ]
        found = predictor.detect(torch.stack([s["image"] for s in samples]))
        metric.update(found, [s["boxes"] for s in samples], [s["labels"] for s in samples])
        for sample, detection in zip(samples, found):
            scene = dataset.scenes[sample["source"]]
            x0, y0 = float(sample["window"][0]), float(sample["window"][1])
            sx, sy = scene.scale
            boxes = (detection["boxes"].cpu().numpy().astype(np.float64) + [x0, y0, x0, y0]) / [
                sx,
                sy,
                sx,
                sy,
            ]
            tile_rows = _rows(sample["name"], {**detection, "boxes": boxes}, min_score, names)
            for row in tile_rows:
                row["image"] = os.path.basename(scene.item.image_path)
            rows += tile_rows
    return rows, {**metric.compute(), "tiles": len(dataset)}


def predict_images(
    predictor: CenterNetPredictor, paths: Sequence, config: Dict[str, Any], min_score: float = 0.1
) -> List[Dict[str, Any]]:
    """Detections of every image file (whole images), boxes in that image's pixels."""
    if not paths:
        raise PodiumError(
            "no images to predict: give image files or a folder holding .png/.jpg/.tif files"
        )
    names = _class_names(run_data_config(config), int(getattr(predictor.model, "num_classes", 1)))
    rows = []
    for path in paths:
        rows += _rows(Path(path).stem, predictor.predict_image(read_image(path)), min_score, names)
    return rows


def write_csv(rows: Sequence[Dict[str, Any]], path) -> Path:
    """Rows to CSV atomically (a temp file in the same folder, then os.replace)."""
    columns = ["image", "name", "x1", "y1", "x2", "y2", "score", "label", "class"]
    frame = pd.DataFrame(
        list(rows), columns=[c for c in columns if any(c in r for r in rows)] or columns
    )
    return write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))
