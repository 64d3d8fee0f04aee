"""The run directory of `podium cv`, read by `podium cv`, `podium submit` and `podium pseudo-label`.

    RUN_DIR/
      cv.yml                    the settings of the run (configs, overrides, seed, prediction); a
                                rerun must match
      configs/                  copies of the training configs + cv_fold_<k>.yml (the fold's data
                                override)
      folds.csv                 copy of --folds; the folds train from this copy
      fold_<k>/                 the `catalyst-dl run` logdir: checkpoints/{best,last}.pth,
                                configs/, logs/
      fold_<k>/oof_names.csv    the fold's validation images (its out-of-fold images)
      fold_<k>/oof_metrics.json Dice / IoU of its out-of-fold maps (podium predict's metrics.json)
      fold_<k>/cv_done.json     written last and atomically: the fold is complete
      oof/probabilities/        uint8 maps of the out-of-fold images (podium predict's layout)
      cv_summary.csv            fold, best_epoch, metrics; then the rows mean and std over the folds

A fold is finished when, and only when, fold_<k>/cv_done.json exists: everything else in a fold
directory without it (a run killed mid-epoch, half its maps) is thrown away by the next
`podium cv`. Nothing here imports Catalyst; best.pth is read as plain data (weights_only).
"""

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from podium import checkpoints
from podium.errors import PodiumError
from podium.files import write_atomically, write_json

__all__ = [
    "SETTINGS",
    "FOLDS",
    "SUMMARY",
    "DONE",
    "NAMES",
    "OOF_METRICS",
    "OOF_PROBABILITIES",
    "fold_dir",
    "fold_index",
    "fold_dirs",
    "finished_folds",
    "read_cv_done",
    "write_cv_done",
    "fold_names",
    "write_fold_names",
    "best_checkpoint_info",
    "summary_rows",
    "write_summary",
]

SETTINGS = "cv.yml"
FOLDS = "folds.csv"
SUMMARY = "cv_summary.csv"
DONE = "cv_done.json"
NAMES = "oof_names.csv"
OOF_METRICS = "oof_metrics.json"
OOF_PROBABILITIES = Path("oof") / "probabilities"
_FOLD = re.compile(r"^fold_(\d+)$")
_NOT_METRICS = ("lr", "momentum")  # optimizer state Catalyst logs beside the metrics


def fold_dir(run_dir, fold: int) -> Path:
    return Path(run_dir) / f"fold_{int(fold)}"


def fold_index(path) -> int:
    """k of a fold_<k> directory."""
    match = _FOLD.match(Path(path).name)
    if match is None:
        raise PodiumError(
            f"{path} is not a fold directory; "
            "expected a folder named fold_<k> inside a podium cv run"
        )
    return int(match.group(1))


def fold_dirs(run_dir) -> List[Path]:
    """Every fold_<k> directory of the run, finished or not, by fold index."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _FOLD.match(p.name)]
    return sorted(found, key=fold_index)


def finished_folds(run_dir) -> List[Path]:
    """The fold directories holding cv_done.json (complete folds), by fold index."""
    return [path for path in fold_dirs(run_dir) if (path / DONE).is_file()]


def read_cv_done(path) -> Dict[str, Any]:
    """The cv_done.json of a fold directory."""
    done = Path(path) / DONE
    try:
        return json.loads(done.read_text())
    except FileNotFoundError:
        raise PodiumError(
            f"{done} does not exist: fold {Path(path).name} is not finished (rerun podium cv)"
        ) from None
    except ValueError as error:
        raise PodiumError(
            f"cannot read {done}: {error}; delete it and rerun podium cv to redo the fold"
        ) from None


def write_cv_done(path, info: Dict[str, Any]) -> Path:
    """Mark a fold complete (a temporary file renamed: a kill never leaves half of it)."""
    done = Path(path) / DONE
    write_json(done, info)
    return done


def fold_names(path) -> List[str]:
    """The validation (out-of-fold) image names of a fold directory."""
    names = Path(path) / NAMES
    if not names.is_file():
        raise PodiumError(
            f"{names} does not exist; expected the fold's "
            "validation names (rerun podium cv for this fold)"
        )
    with open(names, newline="") as file:
        return [row["name"] for row in csv.DictReader(file)]


def write_fold_names(path, names: Sequence[str]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["name"])
            writer.writerows([name] for name in names)

    return write_atomically(Path(path) / NAMES, write)


def best_checkpoint_info(path) -> Dict[str, Any]:
    """Stage, epoch and validation metrics of a fold's checkpoints/best.pth.

    Catalyst 21.12 keeps best.pth per stage (a later stage overwrites it), so the best epoch is
    an epoch of the last stage: `best_epoch` counts within `stage`, `global_epoch` across stages.
    """
    checkpoint = Path(path) / "checkpoints" / "best.pth"
    if not checkpoint.is_file():
        raise PodiumError(
            f"{checkpoint} does not exist: the fold trained but saved no best checkpoint; "
            "expected a catalyst.callbacks.CheckpointCallback (loader_key, "
            "metric_key) in the training config"
        )
    state = checkpoints.read(checkpoint, mmap=True)
    loader = state.get("checkpointer_loader_key") or "valid"
    metrics = (state.get("epoch_metrics") or {}).get(loader) or {}
    return {
        "stage": state.get("stage_key"),
        "best_epoch": state.get("stage_epoch_step"),
        "global_epoch": state.get("global_epoch_step"),
        "selected_by": {
            "loader": loader,
            "metric": state.get("checkpointer_metric_key"),
            "minimize": state.get("checkpointer_minimize"),
        },
        "metrics": scalar_metrics(metrics),
    }


def scalar_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    """Loader metrics without the LR / momentum and Catalyst's `x/mean`, `x/std` copies of `x`."""
    out = {}
    for key, value in metrics.items():
        base, _, suffix = str(key).rpartition("/")
        if (
            key in _NOT_METRICS
            or base in _NOT_METRICS
            or (suffix in ("mean", "std") and base in metrics)
        ):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def summary_rows(done: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per fold (fold, best_epoch, metrics…) and the rows `mean` and `std` over them.

    Columns: the metric that chose best.pth first, then the out-of-fold ones, then the rest.
    std is numpy's (ddof=0, the spread of these folds); a metric a fold lacks is left out of
    that column's mean and std.
    """
    done = sorted(done, key=lambda d: d["fold"])
    selected = (done[0].get("selected_by") or {}).get("metric") if done else None
    rows = []
    for d in done:
        metrics = d.get("metrics", {})
        ordered = sorted(
            metrics, key=lambda key: (key != selected, not key.startswith("oof_"))
        )  # stable sort
        rows.append(
            dict(
                fold=d["fold"],
                best_epoch=d.get("best_epoch"),
                **{key: metrics[key] for key in ordered},
            )
        )
    columns = _columns(rows)
    if not rows:
        return rows
    stats = {"mean": {"fold": "mean"}, "std": {"fold": "std"}}
    for column in columns[1:]:
        values = np.array(
            [row[column] for row in rows if _is_number(row.get(column))], dtype=np.float64
        )
        stats["mean"][column] = float(values.mean()) if len(values) else None
        stats["std"][column] = float(values.std()) if len(values) else None
    return rows + [stats["mean"], stats["std"]]


def write_summary(run_dir, done: Optional[Sequence[Dict[str, Any]]] = None) -> Path:
    """RUN_DIR/cv_summary.csv over the finished folds (rewritten whole, atomically)."""
    run_dir = Path(run_dir)
    if done is None:
        done = [read_cv_done(path) for path in finished_folds(run_dir)]
    rows = summary_rows(done)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=_columns(rows), restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _cell(value) for key, value in row.items()})

    return write_atomically(run_dir / SUMMARY, write)


def _columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    columns = ["fold", "best_epoch"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value):
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value
