"""Pseudo-labels for self-training: the TTA ensemble's probabilities on unlabeled images.

`pseudo_label(run_dir, images, out, ...)`:
1. the teacher: every finished fold of a `podium cv` run directory (fold_<k>/cv_done.json), or
   one run directory of `catalyst-dl run`, with its best, last or both checkpoints;
2. `podium predict`'s own pipeline (`podium.inference.pipeline.predict`: each model reads the
   images as its validation did, TTA, tiles, weighted mean of the models) writes probability maps
   only, into OUT/probabilities: uint8 round(p × 255) + classes.json, the bytes
   `podium predict --probabilities` writes;
3. per image, from the stored maps (what training will read): `max_prob`, the largest
   foreground p (every channel; multiclass: every class but 0, the background), and
   `positive_fraction`, the share of pixels whose foreground p ≥ `negative_threshold`;
4. negative mining (`negatives=N`): an image without a positive pixel (max_prob <
   negative_threshold) becomes a *negative*, trained as an empty mask; at most N of them, the
   most confident first (lowest max_prob, ties by name); the other positive-free images are
   dropped (their maps deleted). Without `negatives` every image is kept as a soft label;
5. OUT/manifest.csv (name, kind, max_prob, positive_fraction: one row per kept image, sorted by
   name, written last and atomically: a folder without it is unfinished) and
   OUT/pseudo_label.json (the images folder, models, TTA, settings and counts).

The training side reads OUT with `data: {soft_labels: OUT}` (podium.datasets.soft_labels).
"""

import csv
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from podium.datasets.soft_labels import KINDS, MANIFEST, MAPS, SETTINGS
from podium.errors import PodiumError, check_output_folder
from podium.files import write_atomically, write_json
from podium.inference import cv_runs
from podium.inference.checkpoint import CONFIG_PATH
from podium.inference.probability_maps import (
    probability_map_classes,
    probability_map_names,
    read_probability_map,
)
from podium.validation import check_int, check_probability

__all__ = [
    "CHECKPOINTS",
    "PREDICT_FILES",
    "teacher_models",
    "cv_predict_settings",
    "image_stats",
    "choose_kinds",
    "write_manifest",
    "pseudo_label",
]

CHECKPOINTS = {"best": ["best"], "last": ["last"], "both": ["best", "last"]}
PREDICT_FILES = (
    "predict_config.yml",
    "timings.json",
    "metrics.json",
)  # what podium predict adds to OUT
BASE_KEYS = (
    "tiles",
    "ensemble",
    "batch_size",
    "num_workers",
    "device",
    "tta",
)  # taken from a --predict-config


def teacher_models(run_dir, checkpoint: str = "best") -> List[Dict[str, Any]]:
    """Inference-config `models:` of the teacher: each finished fold of a cv run, or the one run."""
    if checkpoint not in CHECKPOINTS:
        raise PodiumError(f"checkpoint {checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PodiumError(
            f"run directory {run_dir} does not exist; "
            "expected podium cv's --out or a catalyst-dl run logdir"
        )
    folds = cv_runs.fold_dirs(run_dir)
    if folds:
        runs = cv_runs.finished_folds(run_dir)
        if not runs:
            raise PodiumError(
                f"{run_dir} holds no trained model to pseudo-label "
                f"with: none of its {len(folds)} fold(s) is finished "
                f"(no {cv_runs.DONE}); finish podium cv first"
            )
    elif (run_dir / CONFIG_PATH).is_file():
        runs = [run_dir]
    else:
        raise PodiumError(
            f"{run_dir} holds no trained model to pseudo-label "
            f"with: it has neither fold_<k>/{cv_runs.DONE} "
            f"(podium cv) nor {CONFIG_PATH} (one catalyst-dl run)"
        )
    return [{"run": str(run), "checkpoint": CHECKPOINTS[checkpoint]} for run in runs]


def cv_predict_settings(run_dir) -> Dict[str, Any]:
    """The inference settings podium cv predicted its out-of-fold maps with ({}: not a cv run)."""
    path = Path(run_dir) / cv_runs.SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PodiumError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    predict = settings.get("predict") if isinstance(settings, Mapping) else None
    return dict(predict) if isinstance(predict, Mapping) else {}


def image_stats(probabilities: np.ndarray, mode: str, threshold: float) -> Tuple[float, float]:
    """(max foreground p, share of pixels with a foreground p ≥ threshold) of a K×H×W map."""
    foreground = probabilities[1:] if mode == "multiclass" else probabilities
    if foreground.shape[0] == 0:
        raise PodiumError("a multiclass map needs a background and at least one foreground class")
    top = foreground.max(axis=0)
    return float(top.max()), float((top >= threshold).mean())


def choose_kinds(
    stats: Mapping[str, Tuple[float, float]], threshold: float, negatives: Optional[int]
) -> Dict[str, Optional[str]]:
    """{name: soft | negative | None (dropped)} from each image's (max_prob, positive_fraction).

    negatives None: every image is soft. Else images with max_prob < threshold are negative
    candidates: the `negatives` lowest max_prob (ties by name) are kept, the others dropped.
    """
    if negatives is None:
        return {name: "soft" for name in stats}
    kinds: Dict[str, Optional[str]] = {
        name: "soft" for name, (top, _) in stats.items() if top >= threshold
    }
    candidates = sorted((top, name) for name, (top, _) in stats.items() if top < threshold)
    for rank, (_, name) in enumerate(candidates):
        kinds[name] = "negative" if rank < negatives else None
    return kinds


def write_manifest(path: Path, rows: Sequence[Dict[str, Any]]) -> None:
    """manifest.csv (name, kind, max_prob, positive_fraction), written to a temporary file and
    renamed."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["name", "kind", "max_prob", "positive_fraction"]
            )
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        **row,
                        "max_prob": f"{row['max_prob']:.6f}",
                        "positive_fraction": f"{row['positive_fraction']:.6f}",
                    }
                )

    write_atomically(path, write)


def _prepare_out(out: Path, overwrite: bool) -> None:
    check_output_folder(out, "--out")
    ours = [out / MAPS, out / MANIFEST, out / SETTINGS, *(out / name for name in PREDICT_FILES)]
    present = [path for path in ours if path.exists()]
    if present and not overwrite:
        raise PodiumError(
            f"{out} already holds pseudo-labels ({present[0].name}); "
            "choose another --out or pass --overwrite"
        )
    for path in present:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _check_settings(negatives: Optional[int], threshold: float) -> None:
    if negatives is not None:
        check_int(negatives, "--negatives", 0, "an integer >= 0 (the most negatives to keep)")
    check_probability(threshold, "--negative-threshold", "(0, 1]")


def _delete_maps(maps: Path, classes: List[str], name: str) -> None:
    for class_name in classes:
        path = (maps if len(classes) == 1 else maps / class_name) / f"{name}.png"
        path.unlink(missing_ok=True)


def pseudo_label(
    run_dir,
    images,
    out,
    tta: Optional[Any] = None,
    checkpoint: str = "best",
    negatives: Optional[int] = None,
    negative_threshold: float = 0.5,
    predict_config: Optional[Mapping[str, Any]] = None,
    batch_size: Optional[int] = None,
    device: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Write OUT (see the module docstring); returns pseudo_label.json's content.

    `predict_config`: an inference config whose tiles / ensemble / batch_size / num_workers /
    device / tta are used (None: the ones podium cv predicted with, for a cv run). `tta`,
    `batch_size`, `device` override it; the TTA defaults to none.
    """
    from podium.inference.config import resolve_inference_config
    from podium.inference.pipeline import predict

    _check_settings(negatives, negative_threshold)
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise PodiumError(
            f"unlabeled folder {images} does not exist; expected images/ or a folder of images"
        )
    models = teacher_models(run_dir, checkpoint)
    base = cv_predict_settings(run_dir) if predict_config is None else predict_config
    config = {key: value for key, value in dict(base).items() if key in BASE_KEYS}
    for key, value in (("tta", tta), ("batch_size", batch_size), ("device", device)):
        if value is not None:
            config[key] = value
    config.setdefault("tta", "none")
    config.update(
        models=models,
        data={"root": str(images)},
        out=str(out),
        progress=progress,
        postprocess={},
        outputs={"masks": False, "probabilities": True, "overlays": False, "submission": None},
    )
    resolved = resolve_inference_config(config)  # checked before anything is deleted or written
    _prepare_out(out, overwrite)
    summary = predict(resolved)

    maps = out / MAPS
    classes = probability_map_classes(maps)
    stats = {
        name: image_stats(read_probability_map(maps, name), summary["mode"], negative_threshold)
        for name in probability_map_names(maps)
    }
    kinds = choose_kinds(stats, negative_threshold, negatives)
    rows = []
    for name in sorted(stats):
        if kinds[name] is None:
            _delete_maps(maps, classes, name)
        else:
            rows.append(
                {
                    "name": name,
                    "kind": kinds[name],
                    "max_prob": stats[name][0],
                    "positive_fraction": stats[name][1],
                }
            )
    if not rows:
        raise PodiumError(
            f"every image of {images} was dropped (no positive "
            "pixel and --negatives 0); nothing to train on"
        )
    counts = {kind: sum(row["kind"] == kind for row in rows) for kind in KINDS}
    counts["dropped"] = len(stats) - len(rows)
    settings = {
        "images": os.path.abspath(images),
        "run": str(run_dir),
        "models": resolved["models"],
        "tta": resolved["tta"],
        "checkpoint": checkpoint,
        "mode": summary["mode"],
        "classes": classes,
        "negatives": negatives,
        "negative_threshold": negative_threshold,
        "counts": counts,
    }
    write_json(out / SETTINGS, settings)
    write_manifest(out / MANIFEST, rows)  # last: its presence marks a finished folder
    return settings
