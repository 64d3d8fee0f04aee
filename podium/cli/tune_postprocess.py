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
from typing import List, Optional, Sequence

import numpy as np
import yaml

from podium.datasets import ImageFolderDataset, read_split, select_names
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.postprocess import (
    PostProcess,
    binary_class_mask,
    components,
    default_threshold,
    highest_presence,
    multiclass_class_mask,
)
from podium.inference.probability_maps import (
    probability_map_classes,
    probability_map_names,
    read_presence,
    read_probability_map,
)
from podium.datasets.readers import MASK_EXTENSIONS, read_mask
from podium.metrics.segmentation import default_class_names
from podium.tasks import instance_tuning

__all__ = ["register", "run", "parse_grid", "tune", "replace_yaml_block"]

METRICS = ("dice", "iou")
AGGREGATES = ("image", "dataset")
TARGETS = ("binary", "multilabel", "multiclass")
BLOCK = "postprocess"
DEFAULT_THRESHOLDS = {
    "binary": "0.3:0.7:0.05",
    "multilabel": "0.3:0.7:0.05",
    "multiclass": "0,0.3:0.7:0.05",
}
TUNED = "tuned by podium tune-postprocess"
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
    config_text, config = _read_config(args.config)
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
    config_text, config = _read_config(args.config)
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


# ---------------------------------------------------------------------- search
class TuneResult:
    """Scores [class, threshold, min_size] of the grid and of the defaults, and the best pairs."""

    def __init__(
        self,
        classes,
        thresholds,
        min_sizes,
        scores,
        default_scores,
        default_t,
        presence_threshold=None,
    ):
        self.classes, self.thresholds, self.min_sizes = classes, thresholds, min_sizes
        self.scores, self.default_scores, self.default_t = scores, default_scores, default_t
        self.presence_threshold = presence_threshold  # None: not tuned (no presence maps)
        self.best = [self._best(k) for k in range(len(classes))]

    @property
    def mean_best(self) -> float:
        return float(np.mean([score for _, _, score in self.best]))

    def _best(self, k: int):
        """(threshold, min_size, score): highest score; ties → smaller min_size, threshold nearest
        the default."""
        top = self.scores[k].max()
        candidates = [
            (s, abs(t - self.default_t), t, i, j)
            for i, t in enumerate(self.thresholds)
            for j, s in enumerate(self.min_sizes)
            if self.scores[k, i, j] >= top - 1e-12
        ]
        s, _, t, i, j = min(candidates)
        return t, s, float(self.scores[k, i, j])

    def block(self, fill_holes, num_classes: int) -> dict:
        """The `postprocess:` block: scalars for one class, else one value per class."""
        gate = (
            {}
            if self.presence_threshold is None
            else {"presence_threshold": self.presence_threshold}
        )
        if num_classes == 1:
            t, s, _ = self.best[0]
            return {"threshold": t, "min_size": s, "fill_holes": fill_holes, **gate}
        thresholds, sizes = (
            [self.default_t] * num_classes,
            [0] * num_classes,
        )  # background keeps the defaults
        for c, (t, s, _) in zip(self.classes, self.best):
            thresholds[c], sizes[c] = t, s
        return {"threshold": thresholds, "min_size": sizes, "fill_holes": fill_holes, **gate}

    def table(self, names: Sequence[str], metric: str) -> str:
        default = f"{metric}@{self.default_t:g}/0"
        width = max([5] + [len(n) for n in names])
        lines = [
            f"{'class':<{width}}  {'threshold':>9}  {'min_size':>8}  {metric:>7}  {default:>10}"
        ]
        for name, (t, s, score), base in zip(names, self.best, self.default_scores):
            lines.append(f"{name:<{width}}  {t:>9.3g}  {s:>8d}  {score:>7.4f}  {base:>10.4f}")
        if len(names) > 1:
            mean = np.mean([b[2] for b in self.best])
            lines.append(
                f"{'mean':<{width}}  {'':>9}  {'':>8}  "
                f"{mean:>7.4f}  {np.mean(self.default_scores):>10.4f}"
            )
        if self.presence_threshold is not None:
            lines.append(f"presence_threshold {self.presence_threshold:g} (0: no gating)")
        return "\n".join(lines)


def tune(
    names: Sequence[str],
    load_probabilities,
    load_truth,
    mode: str,
    thresholds: Sequence[float],
    min_sizes: Sequence[int],
    fills: Sequence[bool],
    metric: str = "dice",
    aggregate: str = "image",
    presence: Optional[Sequence[float]] = None,
    presence_thresholds: Sequence[float] = (0.0,),
) -> TuneResult:
    """Score every (class, threshold, min_size) on images `names`.

    `load_probabilities(name)` gives float C×H×W, `load_truth(name)` booleans C×H×W (one channel
    per class, multiclass ones one-hot); `fills` is fill_holes per class, as it will be applied.
    `presence`: each image's highest presence probability (None: no gating is tuned); then
    every T of `presence_thresholds` (and 0) is scored with the masks of images below T empty.

    Per image, class and threshold the mask is built once and split into blobs; a min_size then
    only selects blobs, so its predicted and true-positive pixel counts are sums over the blobs'
    areas and overlaps — one connected-components pass covers every min_size.
    """
    t0 = default_threshold(mode)
    grid_t = list(thresholds) + [t0]  # last row: the default threshold, for comparison
    sizes = np.asarray(list(min_sizes) + [0])
    first = load_probabilities(names[0])
    classes = list(range(1, first.shape[0]) if mode == "multiclass" else range(first.shape[0]))
    gates = [0.0] if presence is None else sorted({0.0, *map(float, presence_thresholds)})
    shape = (len(gates), len(classes), len(grid_t), len(sizes))
    counts = np.zeros(shape + (3,))  # tp, fp, fn summed over images (aggregate dataset)
    score_sums = np.zeros(shape)  # per-image scores summed (aggregate image)
    for i, name in enumerate(names):
        kept = [presence is None or presence[i] >= gate for gate in gates]
        probabilities = first if i == 0 else load_probabilities(name)
        truth = load_truth(name)
        if probabilities.shape[0] != truth.shape[0] or probabilities.shape[1:] != truth.shape[1:]:
            raise PodiumError(
                f"probability map of {name} "
                f"is {probabilities.shape[0]}×{probabilities.shape[1]}×{probabilities.shape[2]} "
                f"(C×H×W) but its mask is {truth.shape[0]}×{truth.shape[1]}×{truth.shape[2]}; "
                "expected the same classes and size"
            )
        argmax = probabilities.argmax(axis=0) if mode == "multiclass" else None
        for k, c in enumerate(classes):
            gt = truth[c]
            blank = np.array([0.0, 0.0, float(gt.sum())])  # an empty mask: every true pixel missed
            for j, t in enumerate(grid_t):
                if mode == "multiclass":
                    mask = multiclass_class_mask(argmax, probabilities[c], c, t, fills[c])
                else:
                    mask = binary_class_mask(probabilities[c], t, fills[c])
                labels, areas = components(mask)
                overlap = np.bincount(labels[gt], minlength=len(areas))
                keep = areas[None, 1:] >= sizes[:, None]  # (sizes, blobs)
                tp = keep @ overlap[1:]
                fp = keep @ areas[1:] - tp
                fn = int(gt.sum()) - tp
                image = np.stack([tp, fp, fn], axis=1)
                for g, keep in enumerate(kept):
                    if aggregate == "dataset":
                        counts[g, k, j] += image if keep else blank
                    else:
                        score_sums[g, k, j] += _score(*(image.T if keep else blank), metric)
    if aggregate == "dataset":
        scores = _score(counts[..., 0], counts[..., 1], counts[..., 2], metric)
    else:
        scores = score_sums / len(names)
    results = [
        TuneResult(
            classes,
            list(thresholds),
            list(min_sizes),
            scores[g, :, :-1, :-1],
            scores[0, :, -1, -1],  # the defaults: no gating
            t0,
            None if presence is None else gate,
        )
        for g, gate in enumerate(gates)
    ]
    top = max(result.mean_best for result in results)
    return next(result for result in results if result.mean_best >= top - 1e-12)  # lowest T


def _score(tp, fp, fn, metric: str):
    """Dice or IoU of counts; nothing predicted and nothing true scores 1 (Kaggle's convention)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    numerator, denominator = (2 * tp, 2 * tp + fp + fn) if metric == "dice" else (tp, tp + fp + fn)
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 1.0)


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


# ---------------------------------------------------------------------- YAML
def _read_config(path: Path):
    if not path.is_file():
        raise PodiumError(f"inference config {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PodiumError(
            f"cannot parse inference config {path}: {str(error).splitlines()[0]}"
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise PodiumError(
            f"inference config {path} must be a YAML mapping, got {type(data).__name__}"
        )
    return text, data


def replace_yaml_block(text: str, key: str, block: dict, comment: Optional[str] = None):
    """(new text, comments kept?): `text` with its top-level `key:` set to `block`.

    Tried in turn, each checked by parsing the result: (1) the values of the block's keys are
    replaced where they stand, so every comment survives, those inside the block too; (2) the
    block's lines are replaced (or appended), so comments outside it survive; (3) PyYAML
    re-dumps the whole file (a flow-style top level, anchors into the block), dropping comments.
    `comment` goes on a line of its own under `key:`, replacing the one a previous tuning left.
    """
    data = yaml.safe_load(text) or {}
    expected = dict(data, **{key: block})
    for edit in (_edit_values, _replace_lines):
        try:
            edited = edit(text, key, block, comment)
        except yaml.YAMLError:
            edited = None
        if edited is not None and yaml.safe_load(edited) == expected:
            return edited, True
    return _dump(expected), False


class _Dumper(yaml.SafeDumper):
    """Block mappings, one-line lists: `threshold: [0.4, 0.6]`."""


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)


def _dump(data) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 16,
        allow_unicode=True,
    )


def _flow(value) -> str:
    """A value as YAML text on one line: 0.45, [0.4, 0.6], false."""
    return _dump({"v": value})[len("v: ") :].strip()


def _top_level(text: str, key: str):
    """(lines, key node, value node) of the top-level `key` (nodes None if absent); None if the
    top level is not a block mapping."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines()
    if root is None:
        return lines, None, None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    for key_node, value_node in root.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value == key
            and key_node.start_mark.column == 0
        ):
            return lines, key_node, value_node
    return lines, None, None


def _edit_values(text: str, key: str, block: dict, comment: Optional[str]) -> Optional[str]:
    """Each key's one-line value replaced in place; absent keys added after the last one."""
    found = _top_level(text, key)
    if found is None or found[1] is None:
        return None
    lines, key_node, value_node = found
    if (
        not isinstance(value_node, yaml.MappingNode)
        or value_node.flow_style
        or not value_node.value
    ):
        return None
    items = {k.value: (k, v) for k, v in value_node.value if isinstance(k, yaml.ScalarNode)}
    indent = value_node.value[0][0].start_mark.column
    last = max(v.end_mark.line for _, v in value_node.value)
    added = []
    for name, value in block.items():
        if name not in items:
            added.append(" " * indent + f"{name}: {_flow(value)}")
            continue
        k, v = items[name]
        line = k.start_mark.line
        if v.start_mark.line != line or v.end_mark.line != line:
            return None  # a value over several lines: replace the whole block instead
        lines[line] = (
            lines[line][: v.start_mark.column] + _flow(value) + lines[line][v.end_mark.column :]
        )
    lines[last + 1 : last + 1] = added
    if comment:
        first = key_node.start_mark.line + 1
        tuned = first < len(lines) and lines[first].strip().startswith(f"# {TUNED}")
        lines[first : first + tuned] = [" " * indent + f"# {comment}"]
    return "\n".join(lines) + "\n"


def _replace_lines(text: str, key: str, block: dict, comment: Optional[str]) -> Optional[str]:
    """The block's lines replaced by freshly dumped ones (appended if the key is absent)."""
    found = _top_level(text, key)
    if found is None:
        return None
    lines, key_node, value_node = found
    head = [f"  # {comment}"] if comment else []
    new = [f"{key}:"] + head + [f"  {line}" for line in _dump(block).splitlines()]
    if key_node is None:
        tail = [""] if lines and lines[-1].strip() else []
        return "\n".join(lines + tail + new) + "\n"
    start = key_node.start_mark.line
    end = value_node.end_mark.line + (1 if value_node.end_mark.column > 0 else 0)
    while end > start + 1 and (
        not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
    ):
        end -= 1  # blank lines and comments before the next key belong to it
    return "\n".join(lines[:start] + new + lines[end:]) + "\n"


def _inline(block: dict) -> str:
    return yaml.safe_dump(block, default_flow_style=True, sort_keys=False, width=1 << 16).strip()
