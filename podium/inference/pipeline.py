"""One prediction run: checkpoints + images → masks, probability maps, overlays, submission,
metrics, timings.

`predict(config)` takes a resolved inference config (`podium.inference.config`) and:

1. loads every model (weights_only) with its run's resolved config; all must agree on the mode
   (binary / multilabel / multiclass) and the number of classes;
2. builds one dataset per distinct way of reading images (each run's `READING_KEYS` and
   `valid_transforms`, so every model sees images exactly as its validation did), all over the
   same names (the selection and the dataset: `reading.py`);
3. streams batch by batch — this rank's share of the images only — through each model
   (TTA, tiles), maps outputs back to each image's original size (`geometry.py`), averages the
   models (`Ensemble`), post-processes (`PostProcess`) and writes each image's files at once
   (`prediction_files.py`): nothing but confusion counts and submission rows is kept across
   images;
4. merges across ranks: Dice / IoU (when masks exist, `scores.py`), the submission CSV, timings
   (`timings.py`).

Files in `out`: masks/NAME.png (binary 0/255, multiclass class index; multilabel
masks/CLASS/NAME.png 0/255), probabilities/ (uint8 p × 255, see probability_maps.py),
overlays/NAME.png, metrics.json (with per-image Dice / IoU when masks are known), timings.json,
probabilities/_presence/NAME.json (models with a presence head, with the probabilities),
predict_config.yml (the resolved config); whatever the `writers:` write (writers.py), with their
numbers in metrics.json under each writer's key. A run whose `data:` block names its own builder
(`_target_`, another task's targets) is read without masks: its targets are not masks/ files.
"""

import json
import os
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Subset

from podium.datasets.exclusion import resolve_data_path
from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError
from podium.files import write_atomically, write_json
from podium.inference.checkpoint import load_model, run_data_config
from podium.inference.ensemble import Ensemble, average_presence
from podium.inference.geometry import ImagePipeline, WithOriginalSize
from podium.inference.postprocess import PostProcess
from podium.inference.prediction_files import Outputs, merge_written
from podium.inference.predictor import Predictor, ProbabilityPredictor, default_device
from podium.inference.reading import build_dataset
from podium.inference.scores import Scores
from podium.inference.sharding import Shards
from podium.inference.tiles import TiledPrediction
from podium.inference.timings import Timings, merge_timings
from podium.inference.writers import build_writers
from podium.metrics.segmentation import default_class_names

__all__ = ["READING_KEYS", "LoadedModel", "load_models", "predict"]

# Keys of a run's `data:` block that say how an image is read and scored (not which images):
# the arguments of build_segmentation_dataset minus the selection (root, split, fold, exclude),
# augmentation, and on_bad_sample (a skipped test image would silently miss from the submission).
READING_KEYS = (
    "normalize",
    "channels",
    "in_channels",
    "num_classes",
    "image_dir",
    "mask_dir",
    "split_file",
    "layout",
    "mask_suffix",
    "target",
    "masks_csv",
    "class_names",
)
MASK_MODES = {"binary": "binary", "multiclass": "multiclass", "multilabel": "multilabel"}


class LoadedModel:
    """A model in eval mode and what its run says about reading images and its outputs."""

    def __init__(self, entry: Dict[str, Any], ema="auto"):
        self.run, self.checkpoint, self.weight = entry["run"], entry["checkpoint"], entry["weight"]
        model, run_config = load_model(Path(self.run), self.checkpoint, ema=ema)
        self.data = run_data_config(run_config)
        model_config = run_config.get("model") or {}
        self.num_classes = int(self.data.get("num_classes", model_config.get("num_classes", 1)))
        target = self.data.get("target") or ("binary" if self.num_classes == 1 else "multiclass")
        if target not in MASK_MODES:
            raise PodiumError(
                f"run {self.run} has target {target!r}; podium predict writes masks for binary, "
                "multiclass and multilabel targets only"
            )
        self.mode = MASK_MODES[target]
        self.class_names = self.data.get("class_names")
        self.in_channels = model_config.get("in_channels")
        self.valid_transforms = self.data.get("valid_transforms")
        self.metric_classes = _metric_classes(run_config)
        self.own_targets = "_target_" in self.data  # another builder's targets: not masks/ files
        self.postprocess: Dict[str, Any] = {}  # a run has none of its own (an ONNX export has)
        self.model = model

    def describe(self) -> Dict[str, Any]:
        return {"run": self.run, "checkpoint": self.checkpoint, "weight": self.weight}


def load_models(
    entries: Sequence[Dict[str, Any]], ema="auto", providers=None, threads=None
) -> List[LoadedModel]:
    """Every model of the ensemble; they must agree on mode and number of classes. `ema`:
    auto | true | false, which weights of checkpoints that hold EMA weights. An entry
    {onnx: PATH} is an exported file (`OnnxModel`, run by onnxruntime with `providers` and
    `threads`)."""
    from podium.inference.onnx_predictor import OnnxModel

    models = [
        OnnxModel(entry, providers, threads) if "onnx" in entry else LoadedModel(entry, ema)
        for entry in entries
    ]
    first = models[0]
    for model in models[1:]:
        if (model.mode, model.num_classes) != (first.mode, first.num_classes):
            raise PodiumError(
                "the models of an ensemble must agree on the mode and number of "
                f"classes: {first.run} ({first.checkpoint}) is {first.mode} "
                f"with {first.num_classes} class(es), {model.run} ({model.checkpoint}) "
                f"is {model.mode} with {model.num_classes}"
            )
        if (
            first.class_names is not None
            and model.class_names is not None
            and list(first.class_names) != list(model.class_names)
        ):
            raise PodiumError(
                f"the models of an ensemble must agree on class_names: {first.run} "
                f"has {first.class_names}, {model.run} has {model.class_names}"
            )
    return models


def _metric_classes(run_config: Dict[str, Any]) -> Optional[List[int]]:
    """`classes` of the run's SegmentationMetricsCallback (the classes its `dice` averaged), if
    any."""
    for stage in (run_config.get("stages") or {}).values():
        for callback in ((stage or {}).get("callbacks") or {}).values():
            if isinstance(callback, dict) and str(callback.get("_target_", "")).endswith(
                "SegmentationMetricsCallback"
            ):
                if callback.get("classes") is not None:
                    return [int(c) for c in callback["classes"]]
    return None


# ---------------------------------------------------------------------------- data
# How each model reads (its READING_KEYS) and which models share a dataset; the dataset itself
# is reading.py's.
def reading_params(model: LoadedModel, root: Path, data: Dict[str, Any]) -> Dict[str, Any]:
    """build_segmentation_dataset arguments that make `root` read the way `model`'s validation
    read."""
    reading = {key: deepcopy(model.data[key]) for key in READING_KEYS if key in model.data}
    if "in_channels" not in reading and "channels" not in reading and model.in_channels is not None:
        reading["in_channels"] = int(
            model.in_channels
        )  # a wrong channel count names the image, not a conv layer
    if data.get("split_file") is not None:
        reading["split_file"] = data["split_file"]
    same_root = model.data.get("root") is not None and os.path.realpath(
        str(model.data["root"])
    ) == os.path.realpath(str(root))
    if (
        reading.get("masks_csv") is not None
        and not same_root
        and not os.path.isfile(resolve_data_path(root, reading["masks_csv"]))
    ):
        reading.pop(
            "masks_csv"
        )  # another folder (e.g. a test set) without the run's RLE table: no masks
    image_dir = reading.get("image_dir", "images")
    if (
        reading.get("layout", "auto") == "folders"
        and not (root / image_dir).is_dir()
        and _has_images(root)
    ):
        reading["layout"] = "side_by_side"  # a plain folder of images
    return reading


def _has_images(root: Path) -> bool:
    return root.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir())


class ReadingGroup:
    """Models that read images the same way share one dataset (and one read of every image)."""

    def __init__(self, dataset: WithOriginalSize, members: List[Tuple[int, ProbabilityPredictor]]):
        self.dataset, self.members = dataset, members
        self.inverse = dataset.pipeline.inverse


def build_groups(
    models: List[LoadedModel], predictors: List[ProbabilityPredictor], data: Dict[str, Any]
) -> List[ReadingGroup]:
    root = Path(data["root"])
    groups: Dict[str, ReadingGroup] = {}
    for index, (model, predictor) in enumerate(zip(models, predictors)):
        reading = reading_params(model, root, data)
        key = json.dumps([reading, model.valid_transforms], sort_keys=True, default=str)
        if key not in groups:
            pipeline = ImagePipeline(model.valid_transforms)
            dataset = build_dataset(root, data, reading, pipeline, masks=not model.own_targets)
            groups[key] = ReadingGroup(WithOriginalSize(dataset, pipeline), [])
        groups[key].members.append((index, predictor))
    result = list(groups.values())
    names = result[0].dataset.dataset.names
    for group in result[1:]:
        if group.dataset.dataset.names != names:
            raise PodiumError(
                f"the runs of the ensemble select different images from {root} (their data "
                "layouts differ); expected the same images for every model"
            )
    return result


# ---------------------------------------------------------------------------- the run
def resolve_device(device: Optional[str], shards: Shards) -> torch.device:
    if device is not None:
        try:
            device = torch.device(device)
        except RuntimeError:
            raise PodiumError(
                f"device {device!r} is not a torch device; expected cpu, cuda or cuda:N"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PodiumError(
                f"device {device} was asked for, but torch sees no CUDA GPU; "
                "use --device cpu (or leave it out)"
            )
        return device
    if torch.cuda.is_available() and shards.world_size > 1:
        return torch.device("cuda", shards.local_rank % torch.cuda.device_count())
    return default_device()


def build_predictors(models, device, tta, tiles, speed) -> List[ProbabilityPredictor]:
    """One predictor per model: torch (`speed`: precision, memory format, compile) or, for an
    exported file, onnxruntime."""
    return [
        Predictor(m.model, device=device, mode=m.mode, tta=tta, tiles=tiles, **speed)
        if m.model is not None
        else m.predictor(tta=tta, tiles=tiles)
        for m in models
    ]


def build_tta(spec):
    """podium.inference.tta's builder; `none` needs no wrapper."""
    if spec in (None, "none"):
        return None
    from podium.inference.tta import build_tta as build

    return build(spec)


def predict(config: Dict[str, Any], shards: Optional[Shards] = None) -> Dict[str, Any]:
    """Run a resolved inference config; returns the metrics summary (merged over ranks)."""
    shards = shards or Shards()
    try:
        device = resolve_device(config["device"], shards)
        started = time.perf_counter()
        models = load_models(
            config["models"], config.get("ema", "auto"), config["providers"], config["threads"]
        )
        first = models[0]
        class_names = list(first.class_names or default_class_names(first.num_classes))
        ensemble = Ensemble.from_config(config["ensemble"])
        post = PostProcess.from_config(
            {**first.postprocess, **config["postprocess"]},  # the config's keys win
            mode=first.mode,
            class_names=class_names if first.mode != "binary" else None,
        )
        tta = build_tta(config["tta"])
        tiles = None
        if config["tiles"] is not None:
            t = config["tiles"]
            tiles = TiledPrediction(
                t["size"], t["overlap"], t["weight"], t["batch_size"] or config["batch_size"]
            )
        speed = {key: config.get(key) for key in ("precision", "memory_format", "compile")}
        speed = {key: value for key, value in speed.items() if value is not None}
        predictors = build_predictors(models, device, tta, tiles, speed)
        if post.presence_threshold is not None and all(p.presence_key is None for p in predictors):
            runs = ", ".join(str(m.run) for m in models)
            raise PodiumError(
                f"postprocess presence_threshold is {post.presence_threshold} but no model has a "
                f"presence head ({runs}); expected a run trained with "
                "model aux_heads: {presence: {type: presence}}, or no presence_threshold"
            )
        precision = getattr(predictors[0], "precision", None)  # torch models only
        if precision is not None and not precision.is_default and shards.is_main:
            print(f"=> {precision.describe()}")  # what `auto` chose, and why
        data = dict(config["data"])
        if data.get("root") is None:
            roots = {str(m.data.get("root")) for m in models if m.data.get("root") is not None}
            if len(roots) != 1:
                raise PodiumError(
                    "no data folder: give data: {root: DIR} in the inference config or --data DIR"
                )
            data["root"] = roots.pop()
        groups = build_groups(models, predictors, data)
        total = len(groups[0].dataset)
        with_masks = groups[0].dataset.dataset.with_masks
        scores = (
            Scores(first.mode, first.num_classes, class_names, first.metric_classes)
            if with_masks
            else None
        )
        outputs = Outputs(config, first.mode, class_names, shards)
        writers = build_writers(config["writers"])
        for writer in writers:
            writer.open(Path(config["out"]), Path(data["root"]))
        timings = Timings(device)
        timings.load_seconds = time.perf_counter() - started
        indices = shards.indices(total)
        outputs.writers = writers
        _predict_images(
            config, groups, indices, models, ensemble, post, outputs, scores, timings, shards
        )
        outputs.close()
        rank_timings = timings.summary(tiles.tiles_seen if tiles is not None else 0)
        ok, error = True, None
    except Exception as caught:  # every rank must still reach the collectives below
        ok, error = False, caught
    if not shards.all_ok(ok):
        shards.close()
        if error is not None:
            raise error
        raise PodiumError(
            "another prediction process failed (its error is printed above); nothing was merged"
        )
    if scores is not None:
        scores.reduce(shards)
    written = merge_written(outputs.written, shards)
    all_timings = shards.gather(rank_timings)
    summary = {"images": total, "models": [m.describe() for m in models], "mode": first.mode}
    if shards.is_main:
        outputs.merge()
        merged = merge_timings(all_timings)
        summary["seconds"] = merged["seconds"]
        if scores is not None:
            summary.update(scores.summary())
        for writer in outputs.writers:
            summary[writer.key] = writer.summary(written.get(writer.key, {}))
        out = Path(config["out"])
        write_json(out / "metrics.json", summary)
        write_json(out / "timings.json", merged)
        _write_yaml(out / "predict_config.yml", config)
    shards.close()
    return summary


def _predict_images(
    config, groups, indices, models, ensemble, post, outputs, scores, timings, shards
) -> None:
    from tqdm.auto import tqdm

    loaders = [
        DataLoader(
            Subset(group.dataset, indices),
            batch_size=config["batch_size"],
            num_workers=config["num_workers"],
            collate_fn=list,
        )
        for group in groups
    ]
    weights = [m.weight for m in models]
    desc = (
        "predict" if shards.world_size == 1 else f"predict (rank 0's share of {shards.world_size})"
    )
    progress = tqdm(
        total=len(indices),
        desc=desc,
        unit="img",
        file=sys.stderr,
        disable=not config["progress"] or not shards.is_main,
        dynamic_ncols=True,
    )
    for batches in zip(*loaders):
        per_model: List[Optional[List[Tuple[np.ndarray, Optional[np.ndarray]]]]] = [None] * len(
            models
        )
        for group, batch in zip(groups, batches):
            for index, predictor in group.members:
                per_model[index] = _predict_batch(predictor, group, batch)
        reference = batches[0]
        for i, sample in enumerate(reference):
            probabilities = (
                ensemble([p[i][0] for p in per_model], weights)
                if len(models) > 1
                else per_model[0][i][0]
            )
            probabilities = np.asarray(probabilities, dtype=np.float32)
            presence = average_presence([p[i][1] for p in per_model], weights)
            mask = post(probabilities, presence)
            target = sample["mask"].numpy() if "mask" in sample else None
            if scores is not None:
                scores.add(sample["name"], mask, target)
            image = (
                groups[0].inverse(sample["image"].numpy(), sample["original_size"])
                if outputs.options["overlays"]
                else None
            )
            outputs.write(sample["name"], image, probabilities, mask, target, presence)
            timings.images += 1
            progress.update(1)
    progress.close()


def _predict_batch(
    predictor: ProbabilityPredictor, group: ReadingGroup, batch: List[Dict[str, Any]]
) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """(probabilities K×H×W at the original size, presence K or None) per sample, float32 numpy;
    same-size runs are stacked."""
    out: List[Optional[Tuple[np.ndarray, Optional[np.ndarray]]]] = [None] * len(batch)
    start = 0
    while start < len(batch):
        end = start + 1
        shape = batch[start]["image"].shape
        while end < len(batch) and batch[end]["image"].shape == shape:
            end += 1
        images = torch.stack([sample["image"] for sample in batch[start:end]])
        maps, presence = predictor.outputs(images)
        probabilities = maps.float().cpu().numpy()
        presence = None if presence is None else presence.float().cpu().numpy()
        for offset, p in enumerate(probabilities):
            original = group.inverse(p, batch[start + offset]["original_size"])
            out[start + offset] = (original, None if presence is None else presence[offset])
        start = end
    return out


def _write_yaml(path: Path, config: Dict[str, Any]) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(yaml.safe_dump(config, sort_keys=False)))
