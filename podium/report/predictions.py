"""`podium predict` outputs inside a run directory: metrics.json, timings.json, overlays/.

`podium predict --run RUN --out RUN/predictions` (or any folder below the run) leaves
`metrics.json` (Dice / IoU per class, macro), `timings.json` and `overlays/NAME.png`; `podium cv`
moves a fold's out-of-fold ones to `fold_<k>/oof_metrics.json` and `oof_timings.json`. If
`metrics.json` also has per-image scores, the report ranks the overlays by them:

    "per_image": {"NAME": 0.91, ...}            (Dice)
                 or {"NAME": {"dice": 0.91, "iou": 0.84}, ...}   (Dice, else IoU)
                 or [{"name": "NAME", "dice": 0.91}, ...]
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from podium.inference.cv_runs import OOF_METRICS

__all__ = ["PredictionRun", "find_predictions"]

# folders of a Catalyst logdir (and of a podium cv directory) that never hold predictions
_SKIP = {
    "checkpoints",
    "logs",
    "configs",
    "code",
    "tensorboard",
    "overlays",
    "masks",
    "probabilities",
    ".neptune",
}
_SCORE_KEYS = ("dice", "iou")
OOF_TIMINGS = "oof_timings.json"  # podium cv's name for the fold's timings.json


@dataclass
class PredictionRun:
    path: Path  # the folder
    metrics: Optional[dict]
    timings: Optional[dict]
    metrics_name: str = "metrics.json"
    timings_name: str = "timings.json"
    overlays: Optional[Path] = None  # its overlays/ folder, if it has one

    def per_image(self) -> Tuple[Optional[str], Dict[str, float]]:
        """(metric name, {image name: score}) from `metrics.json`'s `per_image`, if it has one."""
        raw = (self.metrics or {}).get("per_image")
        if isinstance(raw, list):
            raw = {
                str(item.get("name")): item
                for item in raw
                if isinstance(item, dict) and "name" in item
            }
        if not isinstance(raw, dict) or not raw:
            return None, {}
        scores: Dict[str, float] = {}
        metric = None
        for name, value in raw.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                scores[str(name)] = float(value)
                metric = metric or "dice"
            elif isinstance(value, dict):
                key = next((k for k in _SCORE_KEYS if isinstance(value.get(k), (int, float))), None)
                if key is not None:
                    scores[str(name)] = float(value[key])
                    metric = metric or key
        return metric, scores


def _read_json(path: Path, notes: List[str]) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        notes.append(f"{path}: not readable JSON, left out")
        return None
    return data if isinstance(data, dict) else None


def find_predictions(root: Path, notes: List[str], max_depth: int = 3) -> List[PredictionRun]:
    """`root`'s out-of-fold files, then the folders below it (not the run's own logs, nor
    `fold_<k>/`) with metrics.json or timings.json."""
    root = Path(root)
    found = []
    oof = [_read_json(root / name, notes) for name in (OOF_METRICS, OOF_TIMINGS)]
    if any(item is not None for item in oof):
        found.append(PredictionRun(root, oof[0], oof[1], OOF_METRICS, OOF_TIMINGS))
    for folder, subfolders, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(
            d
            for d in subfolders
            if depth < max_depth
            and d not in _SKIP
            and not d.startswith(".")
            and not d.startswith("fold_")
        )
        if folder == str(root) or not ({"metrics.json", "timings.json"} & set(files)):
            continue
        path = Path(folder)
        metrics = _read_json(path / "metrics.json", notes)
        timings = _read_json(path / "timings.json", notes)
        if metrics is not None or timings is not None:
            overlays = path / "overlays"
            found.append(
                PredictionRun(
                    path, metrics, timings, overlays=overlays if overlays.is_dir() else None
                )
            )
    return found
