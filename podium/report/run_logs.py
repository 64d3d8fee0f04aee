"""What a `catalyst-dl run` logdir says about its training: config, per-epoch metrics, best epoch.

Catalyst's CSVLogger writes `logs/<loader>.csv` with `step` = the epoch *within the stage* and
the metric keys sorted; it writes the header once per process (a resumed run appends a second
header) and nothing names the stage. So the stages are recovered here: the step falling back
(to 1, or below the previous step) starts the next stage of the config's `stages:` order.
A row whose field count differs from its header (a stage that logs other keys than the first
one — Catalyst keeps the first header) cannot be read by name: it is skipped with a note.

The best epoch is the one `checkpoints/best.pth` holds: Catalyst's `checkpoints/_metrics.json`
stores its metrics and `_score_` (`<stage>.<epoch>`); the CSV row with exactly those values is
that epoch. Without `_metrics.json` it is the best row of the checkpoint callback's criterion
(`loader_key`, `metric_key`, `minimize`; default valid / loss / minimize).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from podium.errors import PodiumError

__all__ = [
    "CONFIG_PATH",
    "Epoch",
    "BestEpoch",
    "Criterion",
    "RunLogs",
    "read_loader_csv",
    "split_stages",
    "is_run_dir",
    "read_run",
]

CONFIG_PATH = Path("configs") / "_config.json"
# loaders Catalyst logs that hold no metrics of their own (lr/momentum live in each loader's row)
_NOT_LOADERS = ("_epoch_",)


@dataclass
class Epoch:
    """One row of one loader's CSV."""

    epoch: int  # 1-based over the whole run (stages one after the other)
    stage: str
    stage_epoch: int  # Catalyst's `step`
    values: Dict[str, float]


@dataclass
class Criterion:
    """How the best epoch is chosen (the checkpoint callback's settings)."""

    loader: str
    metric: str
    minimize: bool

    def describe(self) -> str:
        return f"{self.loader}/{self.metric} ({'min' if self.minimize else 'max'})"


@dataclass
class BestEpoch:
    epoch: int
    stage: str
    stage_epoch: int
    source: str  # where it came from, for the reader


@dataclass
class RunLogs:
    """Everything the report shows of one run directory, read once."""

    path: Path
    config: dict
    stages: List[str]  # the config's stage names, in run order
    loaders: Dict[str, List[Epoch]]  # loader -> rows in run order
    criterion: Criterion
    best: Optional[BestEpoch]
    notes: List[str] = field(default_factory=list)

    def row(self, loader: str, epoch: int) -> Optional[Epoch]:
        for item in self.loaders.get(loader, []):
            if item.epoch == epoch:
                return item
        return None

    def stage_starts(self) -> List[Tuple[int, str]]:
        """(first global epoch, stage) of every stage seen in the logs."""
        starts: Dict[str, int] = {}
        for rows in self.loaders.values():
            for item in rows:
                if item.stage not in starts or item.epoch < starts[item.stage]:
                    starts[item.stage] = item.epoch
        return sorted(((epoch, stage) for stage, epoch in starts.items()))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_PATH).is_file()


def read_loader_csv(
    path: Path, notes: Optional[List[str]] = None
) -> List[Tuple[int, Dict[str, float]]]:
    """`(step, {key: value})` per row of a Catalyst CSV log; a `step,...` line restarts the
    header."""
    rows: List[Tuple[int, Dict[str, float]]] = []
    header: Optional[List[str]] = None
    skipped = 0
    with open(path) as file:
        for number, line in enumerate(file, 1):
            fields = line.rstrip("\n").split(",")
            if not line.strip():
                continue
            if fields[0] == "step":
                header = fields
                continue
            if header is None:
                raise PodiumError(
                    f"{path}:{number}: a row before the `step,...` header; "
                    "expected a Catalyst CSV log"
                )
            if len(fields) != len(header):
                skipped += 1
                continue
            try:
                step = int(fields[0])
                values = {key: float(text) for key, text in zip(header[1:], fields[1:])}
            except ValueError:
                raise PodiumError(
                    f"{path}:{number}: {line.strip()[:80]!r} is not numbers; "
                    "expected a Catalyst CSV log (step, then one number per metric)"
                ) from None
            rows.append((step, values))
    if skipped and notes is not None:
        notes.append(
            f"{path.name}: {skipped} row(s) have another number of values than the header and "
            "are not shown (Catalyst writes the CSV header once per process: "
            "a stage that logs other metrics than the first stage cannot be read by name; "
            "the TensorBoard logs have them)"
        )
    return rows


def split_stages(
    rows: List[Tuple[int, Dict[str, float]]], stages: List[str]
) -> List[Tuple[str, int, Dict[str, float]]]:
    """`(stage, stage_epoch, values)`: a step that does not grow starts the next stage.

    A rerun of an epoch after a resume (the same step again right after a new header) is not
    told apart from a new stage: more restarts than stages are numbered `stage <k>`.
    """
    out = []
    index, previous = 0, None
    for step, values in rows:
        if previous is not None and step <= previous:
            index += 1
        previous = step
        name = stages[index] if index < len(stages) else f"stage {index + 1}"
        out.append((name, step, values))
    return out


def _stage_names(config: dict) -> List[str]:
    stages = config.get("stages") or {}
    return (
        [str(name) for name in stages if not str(name).startswith("infer")]
        if isinstance(stages, dict)
        else []
    )


def _criterion(config: dict, loaders: List[str]) -> Criterion:
    """The checkpoint callback's loader / metric / minimize (the last stage that has one)."""
    found = None
    for stage in (config.get("stages") or {}).values():
        for callback in ((stage or {}).get("callbacks") or {}).values():
            if isinstance(callback, dict) and str(callback.get("_target_", "")).endswith(
                "CheckpointCallback"
            ):
                if callback.get("metric_key"):
                    found = callback
    if found is not None:
        return Criterion(
            str(found.get("loader_key") or "valid"),
            str(found["metric_key"]),
            bool(found.get("minimize", True)),
        )
    loader = "valid" if "valid" in loaders else (loaders[-1] if loaders else "valid")
    return Criterion(loader, "loss", True)


def _same(a: Dict[str, float], b: dict) -> bool:
    common = [key for key in a if key in b and isinstance(b[key], (int, float))]
    if not common:
        return False
    for key in common:
        x, y = a[key], float(b[key])
        if not (x == y or (math.isnan(x) and math.isnan(y))):
            return False
    return True


def _best_from_checkpoints(
    path: Path, loaders: Dict[str, List[Epoch]], notes: List[str]
) -> Optional[BestEpoch]:
    file = path / "checkpoints" / "_metrics.json"
    if not file.is_file():
        return None
    try:
        best = json.loads(file.read_text()).get("best")
    except (OSError, ValueError, AttributeError):
        notes.append(
            "checkpoints/_metrics.json is not readable JSON: "
            "the best epoch is taken from the CSV logs"
        )
        return None
    if not isinstance(best, dict):
        return None
    score = str(best.get("_score_", ""))
    stage, _, number = score.rpartition(".")
    # the row whose values are exactly the checkpoint's (every loader logged that epoch)
    candidates = None
    for loader, rows in loaders.items():
        if isinstance(best.get(loader), dict) and best[loader]:
            epochs = {item.epoch for item in rows if _same(item.values, best[loader])}
            candidates = epochs if candidates is None else candidates & epochs
    by_name = [
        item.epoch
        for rows in loaders.values()
        for item in rows
        if item.stage == stage and str(item.stage_epoch) == number
    ]
    if candidates:
        preferred = [e for e in by_name if e in candidates]
        epoch = preferred[0] if preferred else max(candidates)
    elif by_name:
        epoch = by_name[0]
    else:
        notes.append(
            f"checkpoints/_metrics.json names the best epoch {score!r}, "
            "which the CSV logs do not have"
        )
        return None
    item = next(i for rows in loaders.values() for i in rows if i.epoch == epoch)
    return BestEpoch(
        epoch,
        item.stage,
        item.stage_epoch,
        f"checkpoints/best.pth ({score})" if score else "checkpoints/best.pth",
    )


def _best_from_logs(
    loaders: Dict[str, List[Epoch]], criterion: Criterion, notes: List[str]
) -> Optional[BestEpoch]:
    rows = [
        item
        for item in loaders.get(criterion.loader, [])
        if criterion.metric in item.values and not math.isnan(item.values[criterion.metric])
    ]
    if not rows:
        if loaders:
            notes.append(
                f"no best epoch: {criterion.loader}.csv has no {criterion.metric!r} column"
            )
        return None
    sign = 1 if criterion.minimize else -1
    item = min(rows, key=lambda r: (sign * r.values[criterion.metric], r.epoch))
    return BestEpoch(
        item.epoch,
        item.stage,
        item.stage_epoch,
        f"best {criterion.describe()} in logs/{criterion.loader}.csv",
    )


def _loader_order(name: str) -> Tuple[int, str]:
    return (0 if name.startswith("train") else 1 if name.startswith("valid") else 2, name)


def read_run(path: Path) -> RunLogs:
    """Read a run directory's config, CSV logs and best epoch (PodiumError if it is not one)."""
    path = Path(path)
    config_file = path / CONFIG_PATH
    if not config_file.is_file():
        raise PodiumError(
            f"{path} is not a run directory: {config_file} is missing "
            "(expected the logdir `catalyst-dl run` wrote, with configs/_config.json and logs/)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise PodiumError(
            f"{config_file}: not readable JSON ({error}); expected the config Catalyst saved"
        ) from None
    if not isinstance(config, dict):
        raise PodiumError(
            f"{config_file}: expected a mapping (the resolved config), got {type(config).__name__}"
        )
    notes: List[str] = []
    stages = _stage_names(config)
    parsed = {}
    for file in sorted((path / "logs").glob("*.csv"), key=lambda f: _loader_order(f.stem)):
        if file.stem not in _NOT_LOADERS:
            rows = split_stages(read_loader_csv(file, notes), stages)
            if rows:
                parsed[file.stem] = rows
    # global epochs: each stage starts after the longest run of the stages before it
    order: List[str] = []
    length: Dict[str, int] = {}
    for rows in parsed.values():
        for stage, step, _ in rows:
            if stage not in order:
                order.append(stage)
            length[stage] = max(length.get(stage, 0), step)
    order.sort(key=lambda s: stages.index(s) if s in stages else len(stages) + int(s.split()[-1]))
    offset, total = {}, 0
    for stage in order:
        offset[stage] = total
        total += length[stage]
    loaders = {
        loader: [Epoch(offset[stage] + step, stage, step, values) for stage, step, values in rows]
        for loader, rows in parsed.items()
    }
    if any(stage not in stages for stage in order):
        notes.append(
            "the CSV logs restart their epoch count more often than the config has stages "
            f"({', '.join(stages)}): a resumed run? The later parts are numbered `stage <k>`"
        )
    if not loaders:
        notes.append(
            "no metrics: logs/*.csv is missing "
            "(add `csv: {_target_: catalyst.loggers.CSVLogger}` to loggers:)"
        )
    criterion = _criterion(config, list(loaders))
    best = _best_from_checkpoints(path, loaders, notes) or _best_from_logs(
        loaders, criterion, notes
    )
    return RunLogs(path, config, stages, loaders, criterion, best, notes)
