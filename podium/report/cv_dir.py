"""A `podium cv` directory (layout: podium/inference/cv_runs.py): the fold table and the folds.

`cv_summary.csv` has one row per finished fold (`fold, best_epoch, <metrics>...`) and the rows
`mean` and `std`; a fold without `cv_done.json` is still training (or was interrupted).
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from podium.errors import PodiumError
from podium.inference import cv_runs
from podium.report.run_logs import is_run_dir

__all__ = ["Fold", "is_cv_dir", "folds", "read_cv_summary"]


@dataclass
class Fold:
    index: int
    path: Path
    finished: bool  # cv_done.json written
    started: bool  # a run directory already (configs/_config.json)


def folds(path: Path) -> List[Fold]:
    """Every `fold_<k>/`, by k."""
    return [
        Fold(cv_runs.fold_index(p), p, (p / cv_runs.DONE).is_file(), is_run_dir(p))
        for p in cv_runs.fold_dirs(path)
    ]


def is_cv_dir(path: Path) -> bool:
    return (Path(path) / cv_runs.SUMMARY).is_file() or bool(cv_runs.fold_dirs(path))


def read_cv_summary(path: Path) -> Optional[Tuple[List[str], List[List[str]]]]:
    """(header, rows) of `cv_summary.csv` as text, or None if it is not there yet."""
    file = Path(path) / cv_runs.SUMMARY
    if not file.is_file():
        return None
    try:
        with open(file, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PodiumError(
            f"{file}: not a readable CSV ({error}); expected fold,best_epoch,<metrics> rows"
        ) from None
    if not rows:
        raise PodiumError(
            f"{file} is empty; expected a header fold,best_epoch,<metrics> and one row per fold"
        )
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, 2):
        if len(row) != len(header):
            raise PodiumError(
                f"{file}:{number}: {len(row)} values under a header of {len(header)} columns"
            )
    return header, body
