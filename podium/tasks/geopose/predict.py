"""Prediction for Geopose runs (model.py): height and flow maps, direction and scale.

    image ─► normalise ─► model on each TTA view ─► undo the view ─► average ─► write

TTA is podium's `podium.inference.tta.build_tta` (`none`, `flip`, `d2`, `d4`; non-square images
too) with the geopose outputs declared (`VECTOR_RULES`):
- height and magnitude maps are moved back pixel by pixel;
- the direction (x, y) is a *vector* (rule `xy`): a transpose swaps x and y, a horizontal flip
  negates x, a vertical flip y. Each view's direction is re-normalised before the views are
  averaged and the mean is re-normalised again, so it stays a unit (sin θ, cos θ);
- the scale (pixels per metre) does not change under a flip or transpose (rule `scalar`).
The averaged prediction is then exactly D4-equivariant whatever the model (tested). Scales ≠ 1
(multiscale TTA) are refused: magnitudes and scales are in pixels and would need rescaling.
Scalar inputs (GSD) are repeated for every view in a forward pass.

The model is a run's (`load_geopose_predictor(run)`) or its export run by onnxruntime
(`load_geopose_predictor(OnnxModule.open("geopose.onnx"))`, scalar inputs from its metadata);
the normalisation comes from the run's config or, alike, from the file's metadata `reading`.

Two sources:
- `predict_synthetic(split)`: the run's own synthetic scenes (rebuilt from its `data:` block),
  scored with the Geopose metric — R2 of height and magnitude per city, averaged over cities —
  plus the mean angular error of the direction and the relative error of the scale; without
  TTA it equals the run's logged validation numbers;
- `predict_images(paths, scalars)`: any image files, whole; scalar inputs (e.g. gsd) given once
  for all images.

Files, per image, in Geopose's submission style: `<name>_AGL.tif` (float32 metres),
`<name>_MAG.tif` (float32 pixels), `<name>_VFLOW.json` ({"scale": px/m, "angle": θ radians with
(sin θ, cos θ) = direction}); and `predictions.csv` (one row per image) and `metrics.json`.
"""

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tifffile
import torch
import torch.nn.functional as F

from podium.datasets.normalize import resolved_normalize
from podium.errors import PodiumError
from podium.files import write_atomically, write_json
from podium.inference.checkpoint import run_data_config
from podium.inference.task_predictor import (
    TaskPredictor,
    load_task_model,
    run_split,
    write_rows,
)
from podium.inference.tta import TTA, build_tta
from podium.metrics.regression import R2Score
from podium.tasks.geopose.data import build_geopose_datasets

__all__ = [
    "GeoposePredictor",
    "TTA_MODES",
    "VECTOR_RULES",
    "build_geopose_tta",
    "geopose_tta",
    "load_geopose_predictor",
    "predict_images",
    "predict_synthetic",
    "predictor_settings",
    "write_outputs",
    "write_table",
]

TTA_MODES = ("none", "flip", "d2", "d4")
VECTOR_RULES = {"direction": "xy", "scale": "scalar"}
MAPS = ("height", "magnitude")


def build_geopose_tta(spec: Union[None, str, Mapping, TTA] = "none") -> TTA:
    """podium's TTA for a mode (none, flip, d2, d4) or mapping, with the geopose output rules."""
    tta = spec if isinstance(spec, TTA) else build_tta(spec, vector_keys=VECTOR_RULES)
    if any(view.scale != 1.0 for view in tta.views):
        raise PodiumError(
            "geopose tta takes flips and transposes only (none, flip, d2, d4): magnitudes and "
            "scales are in pixels, so rescaled views would need their values rescaled too"
        )
    return tta


def geopose_tta(
    tta: TTA,
    fn: Callable[..., Mapping[str, torch.Tensor]],
    images: torch.Tensor,
    scalars: Optional[Mapping[str, torch.Tensor]] = None,
) -> Dict[str, torch.Tensor]:
    """fn's {height, magnitude, direction, scale} averaged over the TTA's views of N×C×H×W images.

    `scalars` (N×K each) are repeated for every view a forward pass holds; each view's direction
    is re-normalised, and so is the mean.
    """
    scalars = dict(scalars or {})
    batch = images.shape[0]

    def forward(views: torch.Tensor) -> Dict[str, torch.Tensor]:
        repeats = views.shape[0] // batch  # views are concatenated view by view
        out = fn(views, **{name: value.repeat(repeats, 1) for name, value in scalars.items()})
        missing = [key for key in (*MAPS, "direction", "scale") if key not in out]
        if missing:
            raise PodiumError(
                f"the model must return height, magnitude, direction and scale "
                f"(podium.tasks.geopose.model); it returned no {', '.join(missing)}"
            )
        return {
            key: out[key].float()
            if key != "direction"
            else F.normalize(out[key].float(), dim=1, eps=1e-8)
            for key in (*MAPS, "direction", "scale")
        }

    mean = tta(forward, images)
    mean["direction"] = F.normalize(mean["direction"], dim=1, eps=1e-8)
    return mean


class GeoposePredictor(TaskPredictor):
    """Normalise, run the TTA views with the scalar inputs, average (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        normalize=None,
        tta: str = "none",
        batch_size: int = 16,
        device=None,
        channels: int = 3,
    ):
        super().__init__(model, normalize, batch_size, device, channels)
        self.scalar_inputs = tuple(getattr(model, "scalar_inputs", ()))
        self.tta_name = tta if isinstance(tta, str) else "custom"
        self.tta = build_geopose_tta(tta)

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, scalars: Optional[Mapping[str, Any]] = None
    ) -> Dict[str, torch.Tensor]:
        """{height N×1×H×W, magnitude N×1×H×W, direction N×2, scale N×1} of standardised images."""
        images = images.to(self.device)
        scalars = {
            name: torch.as_tensor(value, dtype=images.dtype, device=self.device).reshape(
                len(images), -1
            )
            for name, value in (scalars or {}).items()
        }
        return geopose_tta(self.tta, self.model, images, scalars)


def predictor_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """What the predictor reads from a run's config: `normalize` (scalar inputs: the model's;
    the same key for any config); `podium export` writes it as the file's metadata `reading`."""
    return {"normalize": resolved_normalize(run_data_config(dict(config)).get("normalize"))}


def load_geopose_predictor(
    run, checkpoint="best", tta="none", batch_size=16, device=None
) -> Tuple[GeoposePredictor, Optional[Dict[str, Any]]]:
    """(GeoposePredictor with the weights and normalisation of `run` — a run directory, or an
    `OnnxModule` of its export —; the run's config, None for an export)."""
    model, config, settings, channels = load_task_model(
        run,
        checkpoint,
        "geopose",
        predictor_settings,
        lambda m: hasattr(m, "magnitude_head"),
        "Geopose",
    )
    predictor = GeoposePredictor(model, settings["normalize"], tta, batch_size, device, channels)
    return predictor, config


def _angle(direction: np.ndarray) -> float:
    """θ of a (sin θ, cos θ) direction, in radians [0, 2π) (Geopose's VFLOW angle)."""
    return float(math.atan2(direction[0], direction[1]) % (2 * math.pi))


def _row(
    name: str, out: Dict[str, np.ndarray], extra: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    direction = out["direction"]
    row = {
        "name": name,
        "direction_x": round(float(direction[0]), 6),
        "direction_y": round(float(direction[1]), 6),
        "angle": round(_angle(direction), 6),
        "scale": round(float(out["scale"][0]), 6),
    }
    return {**row, **(extra or {})}


def _numpy(out: Dict[str, torch.Tensor], index: int) -> Dict[str, np.ndarray]:
    return {key: value[index].detach().cpu().numpy() for key, value in out.items()}


def predict_synthetic(
    predictor: GeoposePredictor, config: Dict[str, Any], split: str = "valid", out_dir=None
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(rows per scene, metrics) for the run's synthetic `split`; files into `out_dir` if given.

    Metrics: `height_r2`, `magnitude_r2` (R2 per city, averaged over cities, missing heights
    left out), `geopose_r2` (their mean), `height_r2/<city>` …, `direction_error_deg` (mean
    angle between predicted and true direction), `scale_error` (mean |ŝ − s| / s).
    """
    dataset = run_split(config, build_geopose_datasets, split)
    metrics = {key: R2Score(ignore_value=float("nan")) for key in MAPS}
    rows, angles, scale_errors = [], [], []
    for samples in predictor.batches(dataset):
        scalars = {
            name: torch.stack([s[name] for s in samples]) for name in predictor.scalar_inputs
        }
        out = predictor.predict(torch.stack([s["image"] for s in samples]), scalars)
        cities = [s["city"] for s in samples]
        for key in MAPS:
            metrics[key].update(
                out[key].cpu(), torch.stack([s[f"{key}_target"] for s in samples]), group=cities
            )
        for index, sample in enumerate(samples):
            found = _numpy(out, index)
            truth = sample["direction_target"].numpy().astype(np.float64)
            cosine = float(np.clip(np.dot(found["direction"], truth), -1.0, 1.0))
            angle_error = math.degrees(math.acos(cosine))
            true_scale = float(sample["scale_target"][0])
            scale_error = abs(float(found["scale"][0]) - true_scale) / true_scale
            angles.append(angle_error)
            scale_errors.append(scale_error)
            rows.append(
                _row(
                    sample["name"],
                    found,
                    {
                        "city": sample["city"],
                        "true_angle": round(_angle(truth), 6),
                        "true_scale": round(true_scale, 6),
                        "angle_error_deg": round(angle_error, 4),
                    },
                )
            )
            if out_dir is not None:
                write_outputs(out_dir, sample["name"], found)
    summary: Dict[str, Any] = {"split": split, "scenes": len(dataset), "tta": predictor.tta_name}
    for key in MAPS:
        summary.update(metrics[key].compute_key_value(f"{key}_"))
    summary["geopose_r2"] = float(np.mean([summary["height_r2"], summary["magnitude_r2"]]))
    summary["direction_error_deg"] = float(np.mean(angles))
    summary["scale_error"] = float(np.mean(scale_errors))
    return rows, summary


def predict_images(
    predictor: GeoposePredictor,
    paths: Sequence,
    scalars: Optional[Mapping[str, float]] = None,
    out_dir=None,
) -> List[Dict[str, Any]]:
    """Rows per image file (whole images, one at a time); files into `out_dir` if given."""
    images = predictor.read_images(paths)
    scalars = dict(scalars or {})
    if set(scalars) != set(predictor.scalar_inputs):
        raise PodiumError(
            f"the model takes the scalar inputs [{', '.join(predictor.scalar_inputs)}]; got "
            f"[{', '.join(scalars)}] (give each once: --scalar NAME=VALUE)"
        )
    rows, given = [], {name: [float(value)] for name, value in scalars.items()}
    for path, image in images:
        found = _numpy(predictor.predict(predictor.standardize(image)[None], given), 0)
        rows.append(_row(path.stem, found))
        if out_dir is not None:
            write_outputs(out_dir, path.stem, found)
    return rows


def write_outputs(out_dir, name: str, found: Dict[str, np.ndarray]) -> None:
    """`<name>_AGL.tif`, `<name>_MAG.tif` (float32) and `<name>_VFLOW.json` into out_dir."""
    out_dir = Path(out_dir)
    for key, suffix in (("height", "AGL"), ("magnitude", "MAG")):
        array = np.ascontiguousarray(found[key][0], np.float32)
        write_atomically(
            out_dir / f"{name}_{suffix}.tif", lambda p, array=array: tifffile.imwrite(p, array)
        )
    vflow = {"scale": float(found["scale"][0]), "angle": _angle(found["direction"])}
    write_atomically(out_dir / f"{name}_VFLOW.json", lambda p: p.write_text(json.dumps(vflow)))


def write_table(rows: Sequence[Dict[str, Any]], summary: Optional[Dict[str, Any]], out_dir) -> Path:
    """`predictions.csv` (and `metrics.json` when scored) into out_dir, atomically."""
    path = write_rows(rows, Path(out_dir) / "predictions.csv")
    if summary is not None:
        write_json(Path(out_dir) / "metrics.json", summary)
    return path
