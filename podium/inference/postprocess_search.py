"""The threshold × min-size grid search of `podium tune-postprocess` and `podium submit`.

    result = tune(names, load_probabilities, load_truth, "binary", [0.4, 0.5, 0.6], [0, 32],
                  fills=[False])
    block = result.block(fill_holes=False, num_classes=1)   # the `postprocess:` block

Scores every (class, threshold, min_size) pair on saved probability maps with exactly the
steps of `PostProcess` (podium/inference/postprocess.py, which this sits beside): threshold →
fill holes → remove blobs smaller than min_size; and, for maps of a model with a presence head,
a presence threshold below which an image's masks are empty. It takes loaders, not files or
arguments, so both commands (and tests) feed it their own maps and masks; reading them and
writing the YAML stay in the commands.

Score (`metric` dice | iou), per class: with `aggregate="image"` (Kaggle) the mean over images
of each image's score, an image where both prediction and truth are empty scoring 1; with
`aggregate="dataset"` the score of the pixel counts summed over all images. Ties go to the
smaller min_size, then to the threshold nearest the default (0.5; 0 = plain argmax for
multiclass); presence thresholds tie to the lower one.
"""

from typing import Optional, Sequence

import numpy as np

from podium.errors import PodiumError
from podium.inference.postprocess import (
    binary_class_mask,
    components,
    default_threshold,
    multiclass_class_mask,
)

__all__ = ["AGGREGATES", "METRICS", "TuneResult", "tune"]

METRICS = ("dice", "iou")
AGGREGATES = ("image", "dataset")


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
