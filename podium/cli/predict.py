"""`podium predict`: checkpoints over a folder, a split or a list of names → masks, overlays,
submission, Dice/IoU.

    podium predict --config configs/nuclei/infer.yml
    podium predict --run logs/nuclei --data data/nuclei --split valid --out predictions/
    podium predict --run logs/nuclei --checkpoint best --checkpoint last --tta d4 --out preds/
    podium predict --model model.onnx --data data/test --out preds/   # onnxruntime: podium export
    podium predict --run logs/trees_geo --scenes a.tif b.tif --out preds/ --polygons trees.gpkg
    podium predict --config infer.yml --nproc 2   # = torchrun --nproc_per_node=2 -m podium predict
    torchrun --nproc_per_node=2 -m podium predict --run-dir logs/nuclei --out preds/  # see below

Flags override the inference YAML (see configs/nuclei/infer.yml for every key). Each model
reads images as its run's validation did (normalisation, channels, layout, valid_transforms …,
see podium.inference.pipeline.READING_KEYS); predictions come back at each image's original size.
Under torchrun, spell --run as --run-dir: torchrun's argument parser matches option prefixes
even after the script name, so `--run` stops it ("ambiguous option: --run could match --run-path").

A run of a task's model (podium/tasks: CenterNet, Geopose, boxes), or its export (--model), is
predicted by that task, with its own arguments (`podium predict-centernet --help`,
`predict-geopose`, `predict-boxes`):
    podium predict --run logs/centernet_trees --deepforest valid --out valid.csv --tta flip
    podium predict --model centernet.onnx --images scenes/ --out boxes.csv --tta flip
"""

import argparse
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import yaml

from podium import tasks
from podium.errors import PodiumError

__all__ = ["register", "run", "task_command"]

FLAGS = (
    "runs",
    "onnx",
    "checkpoints",
    "weights",
    "data",
    "split",
    "fold",
    "names",
    "out",
    "tta",
    "threshold",
    "min_size",
    "presence_threshold",
    "submission",
    "probabilities",
    "overlays",
    "masks",
    "tile_size",
    "tile_overlap",
    "device",
    "precision",
    "memory_format",
    "compile",
    "batch_size",
    "num_workers",
    "progress",
    "ema",
    "providers",
    "threads",
    "scenes",
    "window",
    "overlap",
    "blend",
    "polygons",
    "simplify",
    "instances",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="inference YAML (e.g. configs/nuclei/infer.yml)"
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--run",
        "--run-dir",
        dest="runs",
        action="append",
        type=Path,
        default=[],
        help="run directory of catalyst-dl run (repeat for an ensemble; under torchrun write "
        "--run-dir: torchrun's parser takes --run for its --run-path)",
    )
    models.add_argument(
        "--model",
        dest="onnx",
        action="append",
        type=Path,
        default=[],
        help="an ONNX file of podium export, run by onnxruntime (no run directory needed; "
        "repeat for an ensemble)",
    )
    models.add_argument(
        "--checkpoint",
        dest="checkpoints",
        action="append",
        default=[],
        help="best | last | path to a .pth (repeat: "
        "--checkpoint best --checkpoint last; default best)",
    )
    models.add_argument(
        "--weight",
        dest="weights",
        action="append",
        type=float,
        default=[],
        help="ensemble weight, one per model (default 1)",
    )
    models.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--ema: the EMA weights of the checkpoints (an error if one has none); --no-ema: "
        "their trained weights (default: the EMA weights where a checkpoint has them)",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        help="data folder: images/ (+ masks/, split.csv) or a plain folder of images "
        "(default: the run's data root); starts a new selection (the YAML's split is dropped)",
    )
    data.add_argument("--split", help="a split of split.csv (default: every image)")
    data.add_argument("--fold", type=int, help="a fold of split.csv")
    data.add_argument("--names", help="CSV of image names (column name, else the first column)")
    scenes = parser.add_argument_group(
        "whole scenes (GeoTIFF in, tiled GeoTIFFs out: OUT/<scene>_probability.tif, _mask.tif)"
    )
    scenes.add_argument(
        "--scenes", nargs="+", metavar="RASTER", help="predict these rasters whole (not --data)"
    )
    scenes.add_argument(
        "--window", type=int, help="window size in pixels (default: the run's window, else 512)"
    )
    scenes.add_argument("--overlap", type=int, help="window overlap in pixels (default window/4)")
    scenes.add_argument(
        "--blend", help="window weights: gaussian (default, MONAI's) | mean | pyramid"
    )
    scenes.add_argument(
        "--polygons", metavar="FILE", help="also write the mask's polygons (.gpkg or .geojson)"
    )
    scenes.add_argument(
        "--simplify", type=float, metavar="UNITS", help="simplify polygons (tolerance, map units)"
    )
    scenes.add_argument(
        "--instances",
        action="store_const",
        const=True,
        help="also write OUT/<scene>_instances.tif (one id per object, as in the polygons)",
    )
    how = parser.add_argument_group("prediction")
    how.add_argument("--tta", help="none | flip | d2 | d4 | multiscale (default none)")
    how.add_argument(
        "--tiles", dest="tile_size", type=int, metavar="SIZE", help="predict in SIZE×SIZE tiles"
    )
    how.add_argument(
        "--tile-overlap", type=int, metavar="PIXELS", help="tile overlap (default SIZE/4)"
    )
    how.add_argument("--threshold", type=float, help="probability threshold (default 0.5)")
    how.add_argument("--min-size", type=int, help="remove blobs smaller than this many pixels")
    how.add_argument(
        "--presence-threshold",
        type=float,
        metavar="T",
        help="empty mask where the presence head's highest probability is below T "
        "(models with model aux_heads: {presence: {type: presence}})",
    )
    how.add_argument(
        "--batch-size", type=int, help="images (or tiles) per forward pass (default 8)"
    )
    how.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    how.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: auto)")
    how.add_argument(
        "--precision", help="fp32 | bf16 | fp16 | auto: bf16 where native (default fp32)"
    )
    how.add_argument(
        "--memory-format",
        help="contiguous | channels_last | auto: channels_last with bf16/fp16 (default contiguous)",
    )
    how.add_argument(
        "--compile",
        nargs="?",
        const=True,
        metavar="MODE",
        help="torch.compile the model (optional MODE: reduce-overhead, max-autotune, ...)",
    )
    how.add_argument(
        "--providers",
        help="onnxruntime execution providers for --model, in order: cpu (default), cuda, "
        "tensorrt or onnxruntime's names, comma-separated",
    )
    how.add_argument("--threads", type=int, help="onnxruntime intra-op threads for --model")
    how.add_argument("--nproc", type=int, help="shard the images over N processes (torchrun)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", help="output folder")
    out.add_argument("--submission", help="write a submission CSV (RLE) to this path")
    out.add_argument(
        "--probabilities", action="store_const", const=True, help="write uint8 probability maps"
    )
    out.add_argument(
        "--no-overlays",
        dest="overlays",
        action="store_const",
        const=False,
        help="skip overlay PNGs",
    )
    out.add_argument(
        "--no-masks", dest="masks", action="store_const", const=False, help="skip mask PNGs"
    )
    out.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, help="no progress bar"
    )
    parser.set_defaults(func=run)


SOURCES = {"--run": "run", "--run-dir": "run", "--model": "export"}  # flags that name a model


def task_command(argv: Sequence[str]) -> Optional[str]:
    """`predict-<task>` when `argv` is `predict … --run RUN …` and RUN is a run of a task's
    model, or `predict … --model FILE …` and FILE its export; None for anything else
    (segmentation runs and files, other commands, neither flag)."""
    if not argv or argv[0] != "predict":
        return None
    sources = []
    for word, value in zip(argv[1:], [*argv[2:], None]):
        flag, equals, given = word.partition("=")
        if flag in SOURCES and (equals or value is not None):
            sources.append((flag, given if equals else value))
    named = [(flag, value, task) for flag, value in sources if (task := task_of(flag, value))]
    if named and len(sources) > 1:
        flag, value, task = named[0]
        raise PodiumError(
            f"{flag} {value} is a {task} {SOURCES[flag]}: podium predict takes one run or model "
            f"of a task at a time (several --run / --model make an ensemble, for segmentation "
            f"only)"
        )
    return f"predict-{named[0][2]}" if named else None


def task_of(flag: str, value: str) -> Optional[str]:
    """The task of --run's run or --model's file; None for segmentation (or unreadable)."""
    return tasks.task_of_export(value) if flag == "--model" else tasks.task_of_run(value)


def run(args) -> int:
    data, nproc = getattr(args, "data", None), getattr(args, "nproc", None)
    if getattr(args, "scenes", None) and (data is not None or nproc not in (None, 1)):
        given = "--data" if data is not None else "--nproc"
        raise PodiumError(
            f"--scenes predicts rasters whole, in one process; {given} does not go with it "
            f"(expected --scenes A.tif … or --data DIR)"
        )
    from podium.inference.config import apply_flags, load_inference_config
    from podium.inference.config import resolve_inference_config

    config = load_inference_config(args.config) if args.config is not None else {}
    flags = {key: getattr(args, key, None) for key in FLAGS}
    config = resolve_inference_config(apply_flags(config, flags))
    if config["scenes"] is not None:
        from podium.inference.scene_run import predict_scenes

        summary = predict_scenes(config)
        for scene in summary["scenes"]:
            extra = (
                f", {scene['objects']} objects → {scene['polygons']}" if "polygons" in scene else ""
            )
            print(
                f"predicted {scene['scene']} ({scene['width']}×{scene['height']}, "
                f"{scene['windows']} windows) in {scene['seconds']:.1f} s → "
                f"{scene['probability']}, {scene['mask']}{extra}"
            )
        return 0
    if args.nproc is not None and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(config, args.nproc)
    from podium.inference.pipeline import predict
    from podium.inference.sharding import Shards

    shards = Shards()
    summary = predict(config, shards)
    if shards.is_main:
        print(_report(config, summary))
    return 0


def _launch(config, nproc: int) -> int:
    """Hand the resolved config to `nproc` torchrun ranks."""
    from podium.inference.sharding import launch

    handle, path = tempfile.mkstemp(prefix="podium_predict_", suffix=".yml")
    try:
        with os.fdopen(handle, "w") as file:
            yaml.safe_dump(config, file, sort_keys=False)
        return launch(nproc, ["predict", "--config", path])
    finally:
        os.unlink(path)


def _report(config, summary) -> str:
    out = config["out"]
    lines = [f"predicted {summary['images']} images in {summary['seconds']:.1f} s → {out}"]
    if "dice" in summary:
        selection = config["data"].get("split") or (
            f"fold {config['data']['fold']}" if config["data"].get("fold") is not None else "all"
        )
        lines.append(
            f"{selection} Dice {summary['dice_macro']:.4f}  IoU {summary['iou_macro']:.4f}"
        )
        if len(summary["dice"]) > 1:
            per_class = ", ".join(
                f"{summary['classes'][c]} {summary['dice'][c]:.3f}"
                for c in range(len(summary["dice"]))
            )
            lines.append(f"Dice per class: {per_class}")
    submission = config["outputs"]["submission"]
    if submission is not None:
        lines.append(f"submission: {submission['path']}")
    return "\n".join(lines)
