"""`podium tune-postprocess`: grid-search threshold × min-size per class on saved probabilities.

    podium tune-postprocess --probabilities preds/probabilities --data data/nuclei --split valid \\
        --thresholds 0.3:0.7:0.05 --min-sizes 0,16,32,64,128 --config infer.yml [--write tuned.yml]

Reads the probability maps written by `podium predict` (podium/inference/probability_maps.py:
DIR/NAME.png or DIR/CLASS/NAME.png + classes.json) and the true masks of the same images in
DATA (images/ + masks/, or --masks-csv), scores every (threshold, min_size) pair of every class
with exactly the steps of `PostProcess` (threshold → fill holes as the config says → remove
blobs smaller than min_size), and writes the best pair per class into the `postprocess:` block
of the inference YAML: a copy at --write, or the file itself (atomically). Only the values of
that block are rewritten, so comments and layout are kept; a comment line under `postprocess:`
says how the values were tuned. (Files PyYAML must rewrite whole, e.g. a flow-style `{...}`
top level, lose their comments; the command says so.)

Which images: those of --split in DATA's split file (each needs a map), else every map (each
needs an image and a mask in DATA). Mode: one channel is binary; several are multi-label with a
CSV of classes, else multiclass (softmax, class 0 = background, not tuned); --target overrides.

Presence gating: when the maps come from a model with a presence head (DIR/_presence/NAME.json
beside every map, written by `podium predict`), a `presence_threshold` T is searched too
(--presence-thresholds, 0 = no gating always included): an image whose highest presence
probability is below T gets an empty mask. For each T the classes are tuned on their own as
above; the T with the best mean score over classes wins (ties: the lower T).

Instances (--instances): the InstanceWriter of the YAML's `writers:` block is tuned instead:
its seed / mask thresholds and min size (--seed-thresholds, --mask-thresholds, --min-sizes),
scored with exactly the writer's steps against the true ids in DATA/<its truth_dir>
(--metric ap: DSB2018 AP over IoU 0.5:0.95, or object_f1 at IoU 0.5), and written back into
that writer's entry (podium/tasks/instances/tune.py).

Score (--metric dice | iou), per class: with --aggregate image (default, Kaggle) the mean over
images of each image's score, an image where both prediction and truth are empty scoring 1 —
so removing false blobs from empty images pays; with --aggregate dataset the score of the
pixel counts summed over all images. Ties go to the smaller min_size, then to the threshold
nearest the default (0.5; 0 = plain argmax for multiclass).
"""

import argparse
import math
from pathlib import Path
from typing import List, Optional

import numpy as np
import yaml

from podium.cli.yaml_blocks import TUNED, read_inference_yaml, replace_yaml_block
from podium.datasets import ImageFolderDataset, read_split, select_names
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.postprocess import PostProcess, highest_presence
from podium.inference.postprocess_search import AGGREGATES, METRICS, tune
from podium.inference.probability_maps import (
    probability_map_classes,
    probability_map_names,
    read_presence,
    read_probability_map,
)
from podium.datasets.readers import MASK_EXTENSIONS, read_mask
from podium.metrics.segmentation import default_class_names
from podium.tasks import instance_tuning

__all__ = ["register", "run", "parse_grid"]

TARGETS = ("binary", "multilabel", "multiclass")
BLOCK = "postprocess"
DEFAULT_THRESHOLDS = {
    "binary": "0.3:0.7:0.05",
    "multilabel": "0.3:0.7:0.05",
    "multiclass": "0,0.3:0.7:0.05",
}
DEFAULT_PRESENCE_THRESHOLDS = "0:0.95:0.05"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune-postprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--probabilities",
        type=Path,
        required=True,
        metavar="DIR",
        help="probability maps written by podium predict "
        "(NAME.png or CLASS/NAME.png, classes.json)",
    )
    parser.add_argument(
        "--data", type=Path, required=True, metavar="DATA", help="data folder with the true masks"
    )
    parser.add_argument(
        "--split", help="score the images of this split of the split file (default: every map)"
    )
    parser.add_argument(
        "--split-file", default="split.csv", help="split file inside DATA (default split.csv)"
    )
    parser.add_argument(
        "--image-dir", default="images", help="image folder inside DATA (default images)"
    )
    parser.add_argument(
        "--mask-dir", default="masks", help="mask folder inside DATA (default masks)"
    )
    parser.add_argument(
        "--masks-csv", help="masks from a Kaggle RLE CSV inside DATA instead of mask files"
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        help="mask kind (default: from the number of channels, see above)",
    )
    parser.add_argument(
        "--thresholds",
        help="comma list of values and START:STOP:STEP ranges, "
        "STOP included (default 0.3:0.7:0.05; multiclass 0,0.3:0.7:0.05, "
        "where 0 is the plain argmax)",
    )
    parser.add_argument(
        "--min-sizes",
        default="0,16,32,64,128",
        help="comma list of pixel counts and START:STOP:STEP ranges (default 0,16,32,64,128)",
    )
    parser.add_argument(
        "--presence-thresholds",
        help="presence_threshold grid, searched when every map has presence probabilities "
        f"(DIR/_presence/NAME.json; default {DEFAULT_PRESENCE_THRESHOLDS}, 0 = no gating)",
    )
    parser.add_argument(
        "--metric",
        choices=METRICS + ("ap", "object_f1"),
        help="score to maximise (default dice; with --instances ap)",
    )
    instances = parser.add_argument_group("instances (--instances)")
    instances.add_argument(
        "--instances",
        action="store_true",
        help="tune the InstanceWriter of the YAML's writers: block (watershed / components)",
    )
    instances.add_argument(
        "--seed-thresholds", default="0.5:0.8:0.1", help="seed threshold t grid (0.5:0.8:0.1)"
    )
    instances.add_argument(
        "--mask-thresholds", default="0.3:0.6:0.1", help="mask threshold t2 grid (0.3:0.6:0.1)"
    )
    parser.add_argument(
        "--aggregate",
        default="image",
        choices=AGGREGATES,
        help="image: mean of per-image scores, "
        "empty vs empty = 1 (default); dataset: pooled pixel counts",
    )
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="YAML",
        help="inference YAML whose postprocess: block is set (fill_holes is read from it)",
    )
    parser.add_argument(
        "--write",
        type=Path,
        metavar="YAML",
        help="write the tuned YAML here (default: --config, in place)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.instances:
        return _run_instances(args)
    args.metric = args.metric or "dice"
    if args.metric not in METRICS:
        raise PodiumError(f"--metric {args.metric} is for --instances; expected one of {METRICS}")
    thresholds = (
        parse_grid(args.thresholds, "--thresholds", float) if args.thresholds is not None else None
    )
    min_sizes = parse_grid(args.min_sizes, "--min-sizes", int)
    config_text, config = read_inference_yaml(args.config)
    if not args.data.is_dir():
        raise PodiumError(
            f"data folder {args.data} does not exist (expected images/ and masks/ inside)"
        )
    classes = probability_map_classes(args.probabilities)
    names = _names(args)
    dataset = _truth_dataset(args, names, classes)
    mode = dataset.target
    if mode == "regression":
        raise PodiumError(
            "tune-postprocess needs binary, multilabel or multiclass masks; got target regression"
        )
    if thresholds is None:
        thresholds = parse_grid(DEFAULT_THRESHOLDS[mode], "--thresholds", float)
    try:
        current = PostProcess.from_config(config.get(BLOCK), mode=mode, class_names=classes)
        fills = current.per_class(len(classes))[2]
    except PodiumError as error:
        raise PodiumError(f"{args.config}: {error}") from None

    index = {name: i for i, name in enumerate(dataset.names)}
    presence = _presence(args, names, mode)
    result = tune(
        names,
        lambda name: read_probability_map(args.probabilities, name),
        lambda name: _truth(dataset, index[name], len(classes)),
        mode,
        thresholds,
        min_sizes,
        fills,
        metric=args.metric,
        aggregate=args.aggregate,
        presence=presence,
        presence_thresholds=parse_grid(
            args.presence_thresholds or DEFAULT_PRESENCE_THRESHOLDS, "--presence-thresholds", float
        ),
    )
    block = result.block(current.fill_holes, len(classes))
    PostProcess.from_config(block, mode=mode, class_names=classes)  # what we write must load
    out = args.write or args.config
    comment = (
        f"{TUNED}: {args.metric} ({args.aggregate}) on {len(names)} images of "
        f"{args.data}{f' (split {args.split})' if args.split else ''}, maps {args.probabilities}"
    )
    text, kept = replace_yaml_block(config_text, BLOCK, block, comment)
    write_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(result.table([classes[c] for c in result.classes], args.metric))
    print(f"wrote {BLOCK}: {_inline(block)} into {out}")
    if not kept:
        print(
            f"note: {args.config} could not be edited line by line, "
            "so PyYAML rewrote it and its comments were dropped"
        )
    return 0


def _run_instances(args) -> int:
    """--instances: the writer's thresholds and min size, tuned on object scores."""
    tuning = instance_tuning()
    metric = args.metric or "ap"
    if metric not in tuning.METRICS:
        raise PodiumError(
            f"--metric {metric} scores pixels; with --instances: one of {tuning.METRICS}"
        )
    config_text, config = read_inference_yaml(args.config)
    writers = config.get("writers") or []
    found = [
        i
        for i, w in enumerate(writers)
        if isinstance(w, dict) and str(w.get("_target_", "")).endswith(".InstanceWriter")
    ]
    if not found:
        raise PodiumError(
            f"{args.config}: --instances tunes the InstanceWriter of its writers: block, and "
            "there is none (see configs/nuclei/infer_instances.yml)"
        )
    writer = writers[found[0]]
    truth_dir = args.data / str(writer.get("truth_dir") or "instances")
    names = _names(args)
    truths = {}
    for name in names:
        files = [truth_dir / f"{name}{ext}" for ext in MASK_EXTENSIONS]
        path = next((f for f in files if f.is_file()), None)
        if path is None:
            raise PodiumError(
                f"no true instance ids for {name} in {truth_dir} (the writer's truth_dir inside "
                "--data); expected NAME.png or NAME.tif of object ids"
            )
        truths[name] = read_mask(path)
    maps = {name: read_probability_map(args.probabilities, name) for name in names}
    best, rows = tuning.tune_instances(
        maps,
        truths,
        parse_grid(args.seed_thresholds, "--seed-thresholds", float),
        parse_grid(args.mask_thresholds, "--mask-thresholds", float),
        parse_grid(args.min_sizes, "--min-sizes", int),
        method=str(writer.get("method", "watershed")),
        metric=metric,
    )
    writer.update({key: best[key] for key in ("seed_threshold", "mask_threshold", "min_size")})
    comment = (
        f"{TUNED}: instance writer, {metric} on {len(names)} images of {args.data}"
        f"{f' (split {args.split})' if args.split else ''}, maps {args.probabilities}"
    )
    text, kept = replace_yaml_block(config_text, "writers", writers, comment)
    out = args.write or args.config
    write_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(tuning.table(rows))
    tuned = {key: best[key] for key in ("seed_threshold", "mask_threshold", "min_size")}
    print(f"wrote writers/{found[0]}: {_inline(tuned)} into {out}")
    if not kept:
        print(
            f"note: {args.config} could not be edited line by line, "
            "so PyYAML rewrote it and its comments were dropped"
        )
    return 0


# ---------------------------------------------------------------------- grids
def parse_grid(text: str, option: str, kind=float) -> list:
    """'0.3:0.7:0.05' (STOP included), '0,16,32' or both ('0,0.3:0.7:0.1') → sorted unique values of
    `kind`."""
    what = "probabilities in [0, 1]" if kind is float else "pixel counts >= 0"
    example = "0.3:0.7:0.05 or 0.4,0.5" if kind is float else "0:128:16 or 0,16,32"
    bad = PodiumError(
        f'{option} "{text}" is not a grid of {what}; expected values and START:STOP:STEP ranges '
        f"separated by commas, e.g. {example}"
    )
    values = []
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if ":" not in part:
                values.append(float(part))
                continue
            bounds = [float(p) for p in part.split(":")]
            if len(bounds) != 3 or not bounds[2] > 0 or not bounds[1] >= bounds[0]:
                raise bad
            start, stop, step = bounds
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            values += [start + i * step for i in range(count)]
    except (ValueError, OverflowError):
        raise bad from None
    if not values or not all(math.isfinite(v) for v in values):
        raise bad
    if kind is int:
        if any(v < 0 or v != int(v) for v in values):
            raise bad
        values = [int(v) for v in values]
    else:
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise bad
        values = [round(v, 6) for v in values]  # 0.35, not 0.35000000000000003, in the YAML
    return sorted(set(values))


# ---------------------------------------------------------------------- data
def _presence(args, names: List[str], mode: str) -> Optional[List[float]]:
    """Each image's highest presence probability (`highest_presence`), when every map has one;
    else None."""
    found = [read_presence(args.probabilities, name) for name in names]
    if all(p is None for p in found):
        if args.presence_thresholds is not None:
            raise PodiumError(
                f"--presence-thresholds: {args.probabilities} has no presence probabilities "
                "(_presence/NAME.json); expected maps predicted by a model with a presence head"
            )
        return None
    missing = [name for name, p in zip(names, found) if p is None]
    if missing:
        raise PodiumError(
            f"{len(missing)} of {len(names)} maps in {args.probabilities} have no presence "
            f"probabilities: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
            "expected _presence/NAME.json for each (or for none)"
        )
    return [highest_presence(p, mode) for p in found]


def _names(args) -> List[str]:
    maps = probability_map_names(args.probabilities)
    if args.split is None:
        return maps
    names = select_names(read_split(args.data, args.split_file), split=args.split)
    present = set(maps)
    missing = [n for n in names if n not in present]
    if missing:
        raise PodiumError(
            f"{len(missing)} of {len(names)} images of split {args.split} have no probability map "
            f"in {args.probabilities}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
            "expected NAME.png for each"
        )
    return names


def _truth_dataset(args, names: List[str], classes: List[str]) -> ImageFolderDataset:
    generic = classes in (["foreground"], default_class_names(len(classes)))
    return ImageFolderDataset(
        args.data,
        names,
        num_classes=len(classes),
        image_dir=args.image_dir,
        mask_dir=args.mask_dir,
        with_masks=True,
        target=args.target,
        masks_csv=args.masks_csv,
        class_names=None if (generic or args.masks_csv is None) else classes,
    )


def _truth(dataset: ImageFolderDataset, index: int, num_classes: int) -> np.ndarray:
    """Booleans C×H×W: one channel per class (multiclass indices are one-hot encoded)."""
    mask = dataset[index]["mask"].numpy()
    if dataset.target == "multiclass":
        return mask[None] == np.arange(num_classes)[:, None, None]
    return mask > 0.5


# ---------------------------------------------------------------------- output
def _inline(block: dict) -> str:
    """The block on one line, for the message that says what was written."""
    return yaml.safe_dump(block, default_flow_style=True, sort_keys=False, width=1 << 16).strip()
