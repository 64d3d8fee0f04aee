"""`podium submit`: from a finished `podium cv` to a submission, in one command.

    podium submit --cv logs/nuclei_cv --data data/test
    podium submit --cv logs/nuclei_cv --data data/test --tta d4 --checkpoint both --metric iou \\
        --out subs/v3

1. Tunes the post-processing (threshold × min-size per class, `podium tune-postprocess`'s
   search) on the out-of-fold maps RUN_DIR/oof/probabilities of the finished folds against
   their true masks;
2. writes OUT/infer.yml: the ensemble of every finished fold's best (and/or last) checkpoint,
   the TTA (--tta, else the one of podium cv), the tuned `postprocess:` block and the
   submission options (from --predict-config, else podium cv's); `podium predict --config
   OUT/infer.yml` redoes step 3;
3. predicts TEST_DIR with it: OUT/submission.csv (Kaggle RLE), OUT/masks/, predict_config.yml.

The thresholds are tuned on maps of one model per image (each fold's best checkpoint, with the
OOF TTA); the test maps average the folds' models, which are smoother: the tuned values are the
usual, slightly conservative, choice.
"""

import argparse
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import yaml

from podium.cli.tune_postprocess import DEFAULT_THRESHOLDS, parse_grid
from podium.datasets import ImageFolderDataset
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference import cv_runs
from podium.inference.checkpoint import load_run_config, run_data_config
from podium.inference.config import load_inference_config, resolve_inference_config
from podium.inference.postprocess import PostProcess
from podium.inference.postprocess_search import AGGREGATES, METRICS, tune
from podium.inference.probability_maps import probability_map_classes, read_probability_map

__all__ = ["register", "run", "CHECKPOINTS", "tune_on_oof"]

CHECKPOINTS = {
    "best": ["best"],
    "last": ["last"],
    "both": ["best", "last"],
    "average": ["average"],  # checkpoints/average.pth of `podium average --run FOLD_DIR`
}
# how a run's validation read its masks: what the truth of the OOF images is read with
MASK_KEYS = (
    "num_classes",
    "image_dir",
    "mask_dir",
    "layout",
    "mask_suffix",
    "target",
    "masks_csv",
    "class_names",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--cv", type=Path, required=True, metavar="RUN_DIR", help="run directory of podium cv"
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="TEST_DIR",
        help="images to predict: images/ (+ masks/ to score) or a plain folder of images",
    )
    parser.add_argument("--out", type=Path, help="output folder (default RUN_DIR/submission)")
    parser.add_argument(
        "--tta", help="none | flip | d2 | d4 | multiscale (default: the TTA of podium cv)"
    )
    parser.add_argument(
        "--checkpoint",
        choices=sorted(CHECKPOINTS),
        default="best",
        help="checkpoints of each fold in the ensemble (default best; average: each fold's "
        "checkpoints/average.pth, written by podium average --run FOLD_DIR)",
    )
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the folds' EMA weights (--ema) or trained weights (--no-ema); default: as podium "
        "cv predicted the OOF maps (the EMA weights where a checkpoint has them)",
    )
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="dice",
        help="score the tuning maximises (default dice)",
    )
    parser.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        default="image",
        help="image: mean of per-image scores, "
        "empty vs empty = 1 (default); dataset: pooled pixels",
    )
    parser.add_argument(
        "--thresholds", help="threshold grid (default 0.3:0.7:0.05; multiclass 0,0.3:0.7:0.05)"
    )
    parser.add_argument(
        "--min-sizes", default="0,16,32,64,128", help="min-size grid (default 0,16,32,64,128)"
    )
    parser.add_argument(
        "--predict-config",
        type=Path,
        metavar="YAML",
        help="inference YAML for tta, tiles, batch_size, fill_holes, outputs/submission … "
        "(default: the one given to podium cv)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    run_dir = args.cv
    settings = _cv_settings(run_dir)
    folds = cv_runs.finished_folds(run_dir)
    if not folds:
        raise PodiumError(
            f"{run_dir} has no finished fold (no fold_<k>/{cv_runs.DONE}); "
            "run or resume podium cv first"
        )
    if not args.data.is_dir():
        raise PodiumError(
            f"test folder {args.data} does not exist; expected images/ or a folder of images"
        )
    base = (
        load_inference_config(args.predict_config)
        if args.predict_config is not None
        else dict(settings.get("predict") or {})
    )
    for key in ("models", "data", "out"):
        base.pop(key, None)
    oof_tta = (settings.get("predict") or {}).get("tta", "none")
    tta = args.tta if args.tta is not None else base.get("tta", "none")
    out = args.out if args.out is not None else run_dir / "submission"
    thresholds = (
        parse_grid(args.thresholds, "--thresholds", float) if args.thresholds is not None else None
    )
    min_sizes = parse_grid(args.min_sizes, "--min-sizes", int)

    block, table, images = tune_on_oof(
        run_dir, folds, base.get("postprocess"), thresholds, min_sizes, args.metric, args.aggregate
    )
    print(
        f"post-processing tuned on {images} out-of-fold images of {len(folds)} fold(s) "
        f"({args.metric}, {args.aggregate}):"
    )
    print(table)
    if tta != oof_tta:
        print(f"note: the OOF maps were predicted with TTA {oof_tta}, the test set uses {tta}")

    config = _inference_config(base, folds, args, tta, block, out)
    resolved = resolve_inference_config(config)
    out.mkdir(parents=True, exist_ok=True)
    _write_yaml(out / "infer.yml", resolved, run_dir, folds, args.metric, images)
    from podium.inference.pipeline import predict

    summary = predict(resolved)
    submission = resolved["outputs"]["submission"]["path"]
    print(
        f"predicted {summary['images']} images with {len(resolved['models'])} models "
        f"({len(folds)} folds × {args.checkpoint}, TTA {tta}) in {summary['seconds']:.1f} s"
    )
    if "dice" in summary:
        print(
            f"test Dice {summary['dice_macro']:.4f}  "
            f"IoU {summary['iou_macro']:.4f} (masks found in {args.data})"
        )
    print(
        f"submission: {submission}\nmasks: {out / 'masks'}\ninference config: {out / 'infer.yml'}"
    )
    return 0


def _cv_settings(run_dir: Path) -> Dict[str, Any]:
    path = Path(run_dir) / cv_runs.SETTINGS
    if not path.is_file():
        raise PodiumError(
            f"{run_dir} is not a podium cv run directory ({path} is missing); "
            "expected the --out of podium cv"
        )
    return yaml.safe_load(path.read_text()) or {}


def tune_on_oof(
    run_dir, folds: List[Path], postprocess, thresholds, min_sizes, metric: str, aggregate: str
):
    """(tuned postprocess block, score table, image count) on the finished folds' OOF maps."""
    maps = Path(run_dir) / cv_runs.OOF_PROBABILITIES
    classes = probability_map_classes(maps)
    names = [name for fold in folds for name in cv_runs.fold_names(fold)]
    data = run_data_config(load_run_config(folds[0]))
    reading = {key: data[key] for key in MASK_KEYS if data.get(key) is not None}
    truth = ImageFolderDataset(data["root"], names, with_masks=True, **reading)
    mode = truth.target
    if mode not in DEFAULT_THRESHOLDS:
        raise PodiumError(
            "podium submit tunes binary, multilabel or multiclass masks; "
            f"the runs of {run_dir} have target {mode}"
        )
    if thresholds is None:
        thresholds = parse_grid(DEFAULT_THRESHOLDS[mode], "--thresholds", float)
    current = PostProcess.from_config(postprocess, mode=mode, class_names=classes)
    fills = current.per_class(len(classes))[2]
    index = {name: i for i, name in enumerate(names)}

    def load_truth(name: str) -> np.ndarray:
        mask = truth[index[name]]["mask"].numpy()
        if mode == "multiclass":
            return mask[None] == np.arange(len(classes))[:, None, None]
        return mask > 0.5

    result = tune(
        names,
        lambda name: read_probability_map(maps, name),
        load_truth,
        mode,
        thresholds,
        min_sizes,
        fills,
        metric=metric,
        aggregate=aggregate,
    )
    block = result.block(current.fill_holes, len(classes))
    return block, result.table([classes[c] for c in result.classes], metric), len(names)


def _inference_config(
    base: Dict[str, Any], folds: List[Path], args, tta, block, out: Path
) -> Dict[str, Any]:
    config = deepcopy(base)
    outputs = dict(config.get("outputs") or {})
    submission = outputs.get("submission")
    submission = dict(submission) if isinstance(submission, dict) else {}
    submission["path"] = str(out / "submission.csv")
    outputs.update(submission=submission)
    outputs.setdefault("masks", True)
    outputs.setdefault("probabilities", False)
    outputs.setdefault("overlays", False)
    config.update(
        models=[{"run": str(fold), "checkpoint": CHECKPOINTS[args.checkpoint]} for fold in folds],
        data={"root": str(args.data)},
        tta=tta,
        postprocess=block,
        outputs=outputs,
        out=str(out),
        progress=args.progress,
    )
    if getattr(args, "ema", None) is not None:  # callers that build args without --ema
        config["ema"] = args.ema
    return config


def _write_yaml(
    path: Path, config: Dict[str, Any], run_dir: Path, folds: List[Path], metric: str, images: int
) -> None:
    indices = ", ".join(str(cv_runs.fold_index(f)) for f in folds)
    header = (
        f"# written by podium submit: the ensemble of folds {indices} of {run_dir};\n"
        f"# postprocess tuned on {images} out-of-fold images ({metric}). "
        f"Rerun: podium predict --config {path}\n"
    )
    text = header + yaml.safe_dump(config, sort_keys=False)
    write_atomically(path, lambda tmp: tmp.write_text(text))
