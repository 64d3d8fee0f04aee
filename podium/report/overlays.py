"""The best and worst overlays of a run, ranked by per-image Dice where it is known.

In order of preference:
1. prediction overlays (`<predictions>/overlays/NAME.png`) ranked by the per-image scores of
   their `metrics.json` (see `podium.report.predictions`);
2. the training overlays of `podium.callbacks.OverlayCallback` of the best epoch (else of the
   last epoch that has some): `overlays/<stage>/epoch_<k>/{best,worst}_<rank>_<name>_<score>.png`,
   ranked by the callback, the per-image score in the file name;
3. prediction overlays without scores, by name (unranked).
"""

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from podium.report.predictions import PredictionRun
from podium.report.run_logs import RunLogs

__all__ = ["Overlay", "OverlaySet", "choose_overlays", "page_png", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TRAINING_NAME = re.compile(r"^(best|worst)_(\d+)_(.*)_(-?\d+(?:\.\d+)?|nan)\.png$")


@dataclass
class Overlay:
    path: Path
    name: str
    score: Optional[float]


@dataclass
class OverlaySet:
    source: str  # one sentence for the reader: where the images come from, how they are ranked
    metric: Optional[str]
    best: List[Overlay] = field(default_factory=list)
    worst: List[Overlay] = field(default_factory=list)


def _overlay_metric(config: dict) -> str:
    for stage in (config.get("stages") or {}).values():
        for callback in ((stage or {}).get("callbacks") or {}).values():
            if isinstance(callback, dict) and str(callback.get("_target_", "")).endswith(
                "OverlayCallback"
            ):
                return str(callback.get("metric", "dice"))
    return "dice"


def _epoch_folder(run: RunLogs) -> Optional[Path]:
    """overlays/<stage>/epoch_<k> of the best epoch, else of the last epoch that has one."""
    root = run.path / "overlays"
    if run.best is not None:
        folder = root / run.best.stage / f"epoch_{run.best.stage_epoch}"
        if folder.is_dir():
            return folder
    stages = run.stages + sorted(
        p.name for p in root.glob("*") if p.is_dir() and p.name not in run.stages
    )
    for stage in reversed(stages):
        epochs = [p for p in (root / stage).glob("epoch_*") if p.is_dir() and p.name[6:].isdigit()]
        if epochs:
            return max(epochs, key=lambda p: int(p.name[6:]))
    return None


def _training(run: RunLogs, limit: int) -> Optional[OverlaySet]:
    folder = _epoch_folder(run)
    if folder is None:
        return None
    ranked: Dict[str, List] = {"best": [], "worst": []}
    for path in folder.glob("*.png"):
        match = _TRAINING_NAME.match(path.name)
        if match:
            kind, rank, name, score = match.groups()
            ranked[kind].append((int(rank), Overlay(path, name, float(score))))
    if not ranked["best"] and not ranked["worst"]:
        return None
    stage, epoch = folder.parent.name, folder.name[6:]
    which = (
        "the best epoch"
        if run.best and (stage, epoch) == (run.best.stage, str(run.best.stage_epoch))
        else "the last epoch with overlays"
    )
    metric = _overlay_metric(run.config)
    return OverlaySet(
        f"Training overlays of {which} (stage {stage}, "
        f"epoch {epoch}; {folder.relative_to(run.path)}), "
        f"ranked by per-image {metric} on the validation loader",
        metric,
        [item for _, item in sorted(ranked["best"], key=lambda e: e[0])][:limit],
        [item for _, item in sorted(ranked["worst"], key=lambda e: e[0])][:limit],
    )


def _prediction(
    prediction: PredictionRun, limit: int, root: Path, ranked: bool
) -> Optional[OverlaySet]:
    if prediction.overlays is None:
        return None
    files = {p.stem: p for p in prediction.overlays.glob("*.png")}
    if not files:
        return None
    where = (
        prediction.path.relative_to(root).as_posix()
        if prediction.path.is_relative_to(root)
        else prediction.path
    )
    metric, scores = prediction.per_image()
    scored = [(scores[name], name) for name in files if name in scores]
    if ranked:
        if not scored:
            return None
        order = sorted(scored, key=lambda e: (-e[0], e[1]))
        best = order[: min(limit, (len(order) + 1) // 2)]  # a few images: half best, half worst
        rest = [e for e in order if e not in best]
        worst = sorted(rest, key=lambda e: (e[0], e[1]))[:limit]
        return OverlaySet(
            f"Prediction overlays of {where}/overlays, ranked by the per-image {metric} "
            f"in {where}/{prediction.metrics_name}",
            metric,
            [Overlay(files[n], n, s) for s, n in best],
            [Overlay(files[n], n, s) for s, n in worst],
        )
    names = sorted(files)[: 2 * limit]
    return OverlaySet(
        f"Prediction overlays of {where}/overlays (no per-image scores: "
        f"the first {len(names)} by name, unranked)",
        None,
        [Overlay(files[n], n, scores.get(n)) for n in names],
        [],
    )


def choose_overlays(
    run: RunLogs, predictions: Sequence[PredictionRun], limit: int = 4
) -> Optional[OverlaySet]:
    """The overlays the report shows (see the module docstring for the order)."""
    for prediction in predictions:
        chosen = _prediction(prediction, limit, run.path, ranked=True)
        if chosen:
            return chosen
    chosen = _training(run, limit)
    if chosen:
        return chosen
    for prediction in predictions:
        chosen = _prediction(prediction, limit, run.path, ranked=False)
        if chosen:
            return chosen
    return None


def page_png(path: Path, max_side: int = 1024) -> Optional[bytes]:
    """The PNG's bytes, downscaled (area average) when a side exceeds `max_side`; None if not a
    PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= max_side:
                return data
            image.thumbnail((max_side, max_side), Image.Resampling.BOX)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()
    except (OSError, ValueError):
        return None
