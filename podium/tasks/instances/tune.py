"""Grid search of the watershed thresholds (t, t2) and min size on saved probability maps.

    python -m podium.tasks.instances.tune --probabilities OOF/probabilities \\
        --truth data/nuclei/instances --seed-thresholds 0.5,0.6,0.7,0.8 \\
        --mask-thresholds 0.3,0.4,0.5,0.6 --min-sizes 0,8,16 [--metric ap | object_f1]

Reads the maps `podium predict --probabilities` (or `podium cv`, out of fold) writes and the
true ids of the same images; scores every setting with exactly the writer's steps
(watershed.py, metrics.py) and prints the table and the best `writers:` values. Ties go to the
smaller min size, then to the earlier thresholds. `podium tune-postprocess` tunes per-class
pixel scores into the `postprocess:` block; these object-level thresholds are not per class, so
they are tuned here.
"""

import argparse
import itertools
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from podium.datasets.readers import MASK_EXTENSIONS, read_mask
from podium.errors import PodiumError
from podium.inference.probability_maps import read_probability_maps
from podium.tasks.instances.metrics import InstanceScores
from podium.tasks.instances.watershed import InstanceSettings

__all__ = ["tune_instances", "table", "main"]

METRICS = ("ap", "object_f1")


def tune_instances(
    probabilities: Dict[str, np.ndarray],
    truths: Dict[str, np.ndarray],
    seed_thresholds: Sequence[float],
    mask_thresholds: Sequence[float],
    min_sizes: Sequence[int] = (0,),
    method: str = "watershed",
    metric: str = "ap",
) -> Tuple[Dict, List[Dict]]:
    """(best settings, one row per setting with its `ap` and `object_f1`)."""
    if metric not in METRICS:
        raise PodiumError(f"metric {metric!r} is not supported; expected one of {METRICS}")
    missing = sorted(set(probabilities) - set(truths))
    if missing:
        raise PodiumError(f"no true instances for {len(missing)} map(s): {', '.join(missing[:5])}")
    rows = []
    for seed, mask, size in itertools.product(seed_thresholds, mask_thresholds, min_sizes):
        settings = InstanceSettings(method, seed, mask, size)
        scores = InstanceScores()
        for name, p in probabilities.items():
            scores.add_image(settings(p), truths[name])
        values = scores.compute()
        rows.append({**settings.to_config(), "ap": values["ap"], "object_f1": values["object_f1"]})
    best = max(rows, key=lambda r: (r[metric], -r["min_size"]))  # max keeps the first of ties
    return {k: best[k] for k in InstanceSettings.KEYS}, rows


def table(rows: List[Dict]) -> str:
    """The rows of `tune_instances` as a text table, one setting a line."""
    lines = ["seed_threshold mask_threshold min_size      ap  object_f1"]
    for r in rows:
        lines.append(
            f"{r['seed_threshold']:14.2f} {r['mask_threshold']:14.2f} {r['min_size']:8d} "
            f"{r['ap']:7.4f} {r['object_f1']:10.4f}"
        )
    return "\n".join(lines)


def _floats(text: str) -> List[float]:
    return [float(v) for v in text.split(",")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podium.tasks.instances.tune")
    parser.add_argument("--probabilities", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True, help="folder of true id maps")
    parser.add_argument("--method", default="watershed", choices=("watershed", "components"))
    parser.add_argument("--seed-thresholds", type=_floats, default=[0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--mask-thresholds", type=_floats, default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--min-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[0])
    parser.add_argument("--metric", default="ap", choices=METRICS)
    args = parser.parse_args(argv)
    maps = dict(read_probability_maps(args.probabilities))
    truths = {
        p.stem: read_mask(p)
        for p in sorted(args.truth.iterdir())
        if p.suffix.lower() in MASK_EXTENSIONS and p.stem in maps
    }
    best, rows = tune_instances(
        maps,
        truths,
        args.seed_thresholds,
        args.mask_thresholds,
        args.min_sizes,
        args.method,
        args.metric,
    )
    print(table(rows))
    print(f"best ({args.metric}, {len(maps)} images): {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
