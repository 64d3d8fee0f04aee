"""`podium predict --scenes a.tif b.tif`: checkpoints + whole rasters → GeoTIFFs and polygons.

`predict_scenes(config)` takes a resolved inference config whose `scenes:` block names the
rasters (config.py) and, with the same model loading, TTA, ensembling, precision and
post-processing as image prediction (pipeline.py), predicts each raster with a
`ScenePredictor` (scenes.py). Each model reads windows as its run read them: the run's `bands`
and `normalize` (a scenes run: `data: {layout: scenes}`), its `valid_transforms`; the window is
`scenes/window`, else the run's `data/window`, else 512.

Files in `out`, per scene: <stem>_probability.tif, <stem>_mask.tif (scenes.py), with
`polygons:` the polygons (polygons.py; several scenes: one file each, <stem>_<scene><suffix>),
with `instances: true` <stem>_instances.tif; then scenes.json (what was written, seconds,
megapixels/s, peak RSS) and predict_config.yml.
"""

import json
import resource
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import yaml

from podium.datasets.normalize import build_normalizer
from podium.errors import PodiumError
from podium.files import write_atomically, write_json
from podium.inference.ensemble import Ensemble
from podium.inference.geometry import ImagePipeline
from podium.inference.pipeline import (
    LoadedModel,
    build_predictors,
    load_models,
    resolve_device,
)
from podium.inference.polygons import mask_polygons, polygons_path, write_instances
from podium.inference.polygons import write_polygons
from podium.inference.postprocess import PostProcess
from podium.inference.predictor import Predictor
from podium.inference.scenes import ScenePredictor
from podium.inference.sharding import Shards
from podium.metrics.segmentation import default_class_names

__all__ = ["predict_scenes", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 512


def predict_scenes(config: Dict[str, Any]) -> Dict[str, Any]:
    """Predict every raster of `config["scenes"]["images"]`; returns the scenes.json summary."""
    scenes = config["scenes"]
    out = Path(config["out"])
    for image in scenes["images"]:
        if not Path(image).is_file():
            raise PodiumError(f"scene {image} does not exist; expected a raster file (GeoTIFF …)")
    device = resolve_device(config["device"], Shards())
    models = load_models(
        config["models"], config.get("ema", "auto"), config.get("providers"), config.get("threads")
    )
    first = models[0]
    reading = _reading(models)
    class_names = list(first.class_names or default_class_names(first.num_classes))
    post = PostProcess.from_config(
        config["postprocess"],
        mode=first.mode,
        class_names=class_names if first.mode != "binary" else None,
    )
    from podium.inference.tta import build_tta

    tta = build_tta(config["tta"])  # "none" too: one view, channels_last where it is faster
    speed = {key: config.get(key) for key in ("precision", "memory_format", "compile")}
    speed = {key: value for key, value in speed.items() if value is not None}
    predictors = build_predictors(models, device, tta, None, speed)
    predictor = ScenePredictor(
        _predict_fn(
            predictors, [m.weight for m in models], Ensemble.from_config(config["ensemble"])
        ),
        window=scenes["window"] or reading["window"] or DEFAULT_WINDOW,
        overlap=scenes["overlap"],
        weight=scenes["weight"],
        batch_size=config["batch_size"],
        normalizer=build_normalizer(reading["normalize"]),
        bands=reading["bands"],
        post=post,
        mode=first.mode,
        num_classes=first.num_classes,
        class_names=class_names,
        transforms=ImagePipeline(first.valid_transforms) if first.valid_transforms else None,
        progress=config["progress"],
    )
    started = time.perf_counter()
    written: List[Dict[str, Any]] = []
    for image in scenes["images"]:
        summary = predictor(image, out)
        if scenes["polygons"] is not None or scenes["instances"]:
            polygons = mask_polygons(summary["mask"])
            if scenes["instances"]:
                instances = out / f"{Path(image).stem}_instances.tif"
                summary["instances"] = str(write_instances(polygons, summary["mask"], instances))
            if scenes["polygons"] is not None:
                if scenes["simplify"]:
                    polygons["geometry"] = polygons.geometry.simplify(scenes["simplify"])
                path = polygons_path(scenes["polygons"], image, len(scenes["images"]))
                summary["polygons"] = str(write_polygons(polygons, path))
                summary["objects"] = len(polygons)
        written.append(summary)
    result = {
        "scenes": written,
        "models": [m.describe() for m in models],
        "mode": first.mode,
        "window": list(predictor.window),
        "overlap": predictor.overlap,
        "weight": scenes["weight"],
        "seconds": round(time.perf_counter() - started, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(device),
    }
    write_json(out / "scenes.json", result)
    text = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False)
    write_atomically(out / "predict_config.yml", lambda tmp: tmp.write_text(text))
    return result


def _reading(models: List[LoadedModel]) -> Dict[str, Any]:
    """bands, normalize and window of the runs; every model must read scenes the same way."""
    readings = [
        {key: m.data.get(key) for key in ("bands", "normalize", "valid_transforms")} for m in models
    ]
    for model, reading in zip(models[1:], readings[1:]):
        if reading != readings[0]:
            raise PodiumError(
                f"run {model.run} reads scenes as {reading} but run {models[0].run} as "
                f"{readings[0]}; expected the same bands, normalize and valid_transforms"
            )
    return {**readings[0], "window": models[0].data.get("window")}


def _predict_fn(predictors: List[Predictor], weights, ensemble: Ensemble):
    """A batch of windows → probabilities: one predictor, or the ensemble's average."""
    if len(predictors) == 1:
        return predictors[0]

    def predict(batch: torch.Tensor) -> torch.Tensor:
        maps = [p(batch).float().cpu().numpy() for p in predictors]
        return torch.from_numpy(np.asarray(ensemble(maps, weights), dtype=np.float32))

    return predict
