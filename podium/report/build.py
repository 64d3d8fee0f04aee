"""`write_report(RUN_DIR)`: one self-contained `report.html` for a run or a `podium cv` directory.

A run: summary and best-epoch metrics, per-class metrics of the best epoch, curves per metric
(train vs valid, stages marked), the best / worst overlays, prediction metrics, timings and the
resolved config. A cv directory: the fold table (`cv_summary.csv`), every fold's curves on
one figure per metric, then each fold's own report, folded away.

Every image is a PNG embedded as base64, so the file can be mailed or moved alone; overlays also
link to their full-size file. Nothing is read from the environment.
"""

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference import cv_runs
from podium.report import html as h
from podium.report.config_text import config_yaml, file_as_yaml
from podium.report.cv_dir import Fold, folds as list_folds, is_cv_dir, read_cv_summary
from podium.report.metric_keys import TIMING_KEYS, curve_keys, families
from podium.report.overlays import OverlaySet, choose_overlays, page_png
from podium.report.plots import Line, curve_png
from podium.report.predictions import PredictionRun, find_predictions
from podium.report.run_logs import RunLogs, is_run_dir, read_run

__all__ = ["build_report", "write_report"]

Section = Tuple[str, str, str]  # anchor id, heading, body HTML
_AGGREGATE_NAMES = {
    "_macro": "macro (mean over classes)",
    "_micro": "micro (all pixels pooled)",
    "_weighted": "weighted",
    "_pooled": "pooled",
}
_EPOCH_KEYS = (
    "lr",
    "momentum",
)  # per epoch, not per loader: Catalyst copies them into every loader's row


def _color(index: int) -> str:
    return f"C{index % 10}"


# ---------------------------------------------------------------------------- one run
def _all_keys(run: RunLogs) -> List[str]:
    keys: Dict[str, None] = {}
    for rows in run.loaders.values():
        for item in rows:
            keys.update(dict.fromkeys(item.values))
    return list(keys)


def _summary(run: RunLogs, scope: str) -> str:
    model = run.config.get("model") or {}
    model_text = (
        ", ".join(f"{k}: {v}" for k, v in model.items() if not isinstance(v, (dict, list))) or "–"
    )
    planned = run.config.get("stages") or {}
    stage_rows = []
    for stage in run.stages + [s for _, s in run.stage_starts() if s not in run.stages]:
        logged = max(
            (
                item.stage_epoch
                for rows in run.loaders.values()
                for item in rows
                if item.stage == stage
            ),
            default=0,
        )
        plan = (
            (planned.get(stage) or {}).get("num_epochs")
            if isinstance(planned.get(stage), dict)
            else None
        )
        stage_rows.append(("", [h.key_cell(stage), h.number_cell(plan), h.number_cell(logged)]))
    parts = [
        f"<p><b>Model</b>: {h.esc(model_text)}</p>",
        h.table(["stage", "epochs planned", "epochs logged"], stage_rows),
    ]
    if run.best is None:
        parts.append('<p class="muted">No best epoch: no metrics were logged.</p>')
        return "".join(parts)
    best = run.best
    parts.append(
        f"<p><b>Best epoch</b>: stage <b>{h.esc(best.stage)}</b>, "
        f"epoch <b>{best.stage_epoch}</b> (epoch {best.epoch} of the run) "
        f"— {h.esc(best.source)}; criterion {h.esc(run.criterion.describe())}.</p>"
    )
    loaders = list(run.loaders)
    keys = curve_keys(_all_keys(run))
    rows = []
    for key in keys:
        cells = [h.key_cell(key)]
        for loader in loaders:
            item = run.row(loader, best.epoch)
            value = item.values.get(key) if item else None
            chosen = loader == run.criterion.loader and key == run.criterion.metric
            cells.append(h.number_cell(value, f"{scope}{loader}/{key}", "best" if chosen else ""))
        rows.append(("", cells))
    parts.append(h.table(["metric"] + loaders, rows))
    return "".join(parts)


def _per_class(run: RunLogs, scope: str) -> str:
    if run.best is None:
        return '<p class="muted">No best epoch.</p>'
    loaders = list(run.loaders)
    rows_by_loader = {loader: run.row(loader, run.best.epoch) for loader in loaders}
    found = families(_all_keys(run))
    if not found:
        return (
            '<p class="muted">The logs have no per-class or averaged metrics (keys like '
            "dice/&lt;class&gt;, dice/_macro).</p>"
        )
    parts = []
    for base, members in found.items():
        header = ["class"] + [f"{base} ({loader})" for loader in loaders]
        rows = []
        for css, names in (("", members["classes"]), ("summary", members["aggregates"])):
            for name in names:
                cells = [h.key_cell(_AGGREGATE_NAMES.get(name, name))]
                for loader in loaders:
                    item = rows_by_loader[loader]
                    value = item.values.get(f"{base}/{name}") if item else None
                    cells.append(h.number_cell(value, f"{scope}{loader}/{base}/{name}"))
                rows.append((css, cells))
        parts.append(f"<h3>{h.esc(base)}</h3>" + h.table(header, rows))
    return "".join(parts)


def _curves(run: RunLogs) -> str:
    keys = _all_keys(run)
    starts = run.stage_starts()
    figures = []
    for key in curve_keys(keys):
        lines = [
            Line(
                loader,
                [r.epoch for r in rows if key in r.values],
                [r.values[key] for r in rows if key in r.values],
                _color(i),
            )
            for i, (loader, rows) in enumerate(run.loaders.items())
        ]
        if key in _EPOCH_KEYS:
            lines = [line for line in lines if line.xs][:1]  # the same value in every loader's row
        png = curve_png(lines, key, starts)
        if png:
            figures.append(h.image(png, f"curve: {key}"))
    loader = (
        run.criterion.loader
        if run.criterion.loader in run.loaders
        else next(iter(run.loaders), None)
    )
    for base, members in families(keys).items():
        if not members["classes"] or loader is None:
            continue
        rows = run.loaders[loader]
        lines = [
            Line(
                name,
                [r.epoch for r in rows],
                [r.values.get(f"{base}/{name}", float("nan")) for r in rows],
                _color(i),
            )
            for i, name in enumerate(members["classes"])
        ]
        png = curve_png(lines, f"{base} per class ({loader})", starts)
        if png:
            figures.append(h.image(png, f"curve: {base} per class ({loader})"))
    if not figures:
        return '<p class="muted">No curves: no metrics were logged.</p>'
    return '<div class="grid">' + "".join(figures) + "</div>"


def _link(path: Path, link_base: Optional[Path]) -> Optional[str]:
    if link_base is None:
        return None
    return Path(os.path.relpath(path.resolve(), link_base.resolve())).as_posix()


def _overlays(chosen: Optional[OverlaySet], link_base: Optional[Path], notes: List[str]) -> str:
    if chosen is None:
        return (
            '<p class="muted">No overlays: add podium.callbacks.OverlayCallback to the training '
            "callbacks, or run podium predict into the run directory.</p>"
        )
    parts = [f"<p>{h.esc(chosen.source)}. Red: predicted outline, green: true outline.</p>"]
    for kind, items in (("best", chosen.best), ("worst", chosen.worst)):
        if not items:
            continue
        figures = []
        for rank, item in enumerate(items):
            png = page_png(item.path)
            if png is None:
                notes.append(f"{item.path}: not a readable PNG, left out")
                continue
            score = (
                f" — {chosen.metric} {item.score:.4f}"
                if item.score is not None and chosen.metric
                else ""
            )
            figures.append(
                h.image(
                    png,
                    f"{kind} {rank + 1}: {item.name}",
                    f"{item.name}{score}",
                    "overlay",
                    _link(item.path, link_base),
                )
            )
        title = {"best": "Best", "worst": "Worst"}[kind] if chosen.metric else "Overlays"
        parts.append(f'<h3>{title}</h3><div class="grid">{"".join(figures)}</div>')
    return "".join(parts)


def _scalars_table(data: dict, skip: Sequence[str], prefix: str) -> str:
    rows = [
        (
            "",
            [
                h.key_cell(k),
                f"<td>{h.esc(v)}</td>"
                if isinstance(v, (str, bool))
                else h.number_cell(v, f"{prefix}{k}"),
            ],
        )
        for k, v in data.items()
        if k not in skip and (v is None or isinstance(v, (int, float, str, bool)))
    ]
    return h.table(["key", "value"], rows) if rows else ""


def _where(prediction: PredictionRun, root: Path) -> str:
    """The prediction folder relative to the run, with a trailing slash ('' for the run itself)."""
    path = prediction.path
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return "" if relative == "." else relative + "/"


def _prediction_metrics(prediction: PredictionRun, where: str) -> str:
    metrics = prediction.metrics
    if not metrics:
        return ""
    parts = [_scalars_table(metrics, ("per_image",), f"{where}{prediction.metrics_name}/")]
    models = metrics.get("models")
    if isinstance(models, list) and models:
        text = "; ".join(
            ", ".join(f"{k}: {v}" for k, v in m.items()) if isinstance(m, dict) else str(m)
            for m in models
        )
        parts.append(f"<p><b>Models</b>: {h.esc(text)}</p>")
    classes = metrics.get("classes")
    if isinstance(classes, list) and classes:
        columns = [
            k
            for k, v in metrics.items()
            if isinstance(v, list)
            and len(v) == len(classes)
            and k not in ("classes", "models")
            and all(isinstance(x, (int, float)) for x in v)
        ]
        if columns:
            rows = [
                (
                    "",
                    [h.key_cell(name)]
                    + [
                        h.number_cell(metrics[c][i], f"{where}{prediction.metrics_name}/{c}/{name}")
                        for c in columns
                    ],
                )
                for i, name in enumerate(classes)
            ]
            parts.append(h.table(["class"] + columns, rows))
    metric, scores = prediction.per_image()
    if scores:
        parts.append(f"<p>Per-image {h.esc(metric)} for {len(scores)} images.</p>")
    return "".join(parts)


def _predictions(predictions: Sequence[PredictionRun], root: Path, scope: str = "") -> str:
    parts = []
    for prediction in predictions:
        where = _where(prediction, root)
        body = _prediction_metrics(prediction, scope + where)
        if body:
            parts.append(f"<h3>{h.esc(where)}{h.esc(prediction.metrics_name)}</h3>{body}")
    return "".join(parts)


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _timings(run: RunLogs, predictions: Sequence[PredictionRun], scope: str) -> str:
    parts = []
    rows = []
    total = 0.0
    for loader, epochs in run.loaders.items():
        series = {key: [e.values[key] for e in epochs if key in e.values] for key in TIMING_KEYS}
        if not any(series.values()):
            continue
        seconds = sum(series["time/loader_s"]) if series["time/loader_s"] else None
        total += seconds or 0.0
        rows.append(
            (
                "",
                [
                    h.key_cell(loader),
                    h.number_cell(len(epochs)),
                    h.number_cell(seconds),
                    h.number_cell(_mean(series["images_per_s"])),
                    h.number_cell(_mean(series["time/data_fraction"])),
                ],
            )
        )
    if rows:
        rows.append(
            (
                "summary",
                [
                    h.key_cell("all loaders"),
                    h.number_cell(None),
                    h.number_cell(total),
                    h.number_cell(None),
                    h.number_cell(None),
                ],
            )
        )
        parts.append(
            "<h3>Training</h3><p>From the throughput keys of the CSV logs "
            "(podium.callbacks.ThroughputCallback): seconds summed over the epochs, "
            "images/s and the data-loading share averaged over them.</p>"
        )
        parts.append(
            h.table(
                ["loader", "epochs", "seconds", "images/s (mean)", "data-loading share (mean)"],
                rows,
            )
        )
    else:
        parts.append(
            '<p class="muted">No training timings in the logs (add '
            "podium.callbacks.ThroughputCallback).</p>"
        )
    for prediction in predictions:
        if not prediction.timings:
            continue
        name = _where(prediction, run.path) + prediction.timings_name
        parts.append(f"<h3>Prediction: {h.esc(name)}</h3>")
        parts.append(_scalars_table(prediction.timings, ("ranks",), f"{scope}{name}/"))
        ranks = prediction.timings.get("ranks")
        if isinstance(ranks, list) and len(ranks) > 1 and all(isinstance(r, dict) for r in ranks):
            keys = [
                k for k in ranks[0] if isinstance(ranks[0][k], (int, float)) or ranks[0][k] is None
            ]
            rank_rows = [
                ("", [h.key_cell(i)] + [h.number_cell(r.get(k)) for k in keys])
                for i, r in enumerate(ranks)
            ]
            parts.append(h.table(["rank"] + keys, rank_rows))
    return "".join(parts)


def _config(run: RunLogs) -> str:
    parts = [
        "<p>The resolved config Catalyst saved (configs/_config.json: the YAML files merged, "
        "command-line overrides applied); secret-looking values would show as ***.</p>",
        h.pre(config_yaml(run.config)),
    ]
    for path in sorted((run.path / "configs").glob("transforms_*.json")):
        text = file_as_yaml(path)
        if text is not None:
            parts.append(
                h.details(f"{path.name}: the albumentations pipelines as built", h.pre(text))
            )
    return "".join(parts)


def run_sections(
    run: RunLogs,
    limit: int,
    link_base: Optional[Path],
    notes: List[str],
    prefix: str = "",
    scope: str = "",
) -> List[Section]:
    """The sections of one run's report: anchor ids start with `prefix`, `data-metric` names with
    `scope`."""
    predictions = find_predictions(run.path, notes)
    sections = [
        (f"{prefix}summary", "Summary", _summary(run, scope)),
        (f"{prefix}per-class", "Per-class metrics of the best epoch", _per_class(run, scope)),
        (f"{prefix}curves", "Curves", _curves(run)),
        (
            f"{prefix}overlays",
            "Best and worst overlays",
            _overlays(choose_overlays(run, predictions, limit), link_base, notes),
        ),
    ]
    if any(p.metrics for p in predictions):
        sections.append(
            (f"{prefix}predictions", "Predictions", _predictions(predictions, run.path, scope))
        )
    sections.append((f"{prefix}timings", "Timings", _timings(run, predictions, scope)))
    sections.append((f"{prefix}config", "Config", _config(run)))
    return sections


# ---------------------------------------------------------------------------- cv
def _value(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _fold_table(path: Path, folds: List[Fold]) -> str:
    summary = read_cv_summary(path)
    finished = [f.index for f in folds if f.finished]
    unfinished = [f.index for f in folds if not f.finished]
    status = (
        f"<p>{len(folds)} fold director{'y' if len(folds) == 1 else 'ies'}: finished "
        f"{', '.join(map(str, finished)) or 'none'}"
        + (
            f"; not finished (no cv_done.json): {', '.join(map(str, unfinished))}"
            if unfinished
            else ""
        )
        + ".</p>"
    )
    if summary is None:
        return (
            status + '<p class="muted">No cv_summary.csv yet: '
            "it is written when the cross-validation ends.</p>"
        )
    header, rows = summary
    table_rows = []
    for row in rows:
        fold = row[0]
        css = "summary" if fold in ("mean", "std") else ""
        cells = [h.key_cell(fold)]
        for column, text in zip(header[1:], row[1:]):
            value = _value(text)
            cells.append(
                h.number_cell(value, f"cv/{fold}/{column}")
                if not isinstance(value, str)
                else f"<td>{h.esc(text)}</td>"
            )
        table_rows.append((css, cells))
    return status + h.table(header, table_rows, "fold-table")


def _fold_curves(runs: List[Tuple[Fold, RunLogs]]) -> str:
    keys: Dict[str, None] = {}
    for _, run in runs:
        keys.update(dict.fromkeys(_all_keys(run)))
    figures = []
    for key in curve_keys(list(keys)):
        lines = []
        for number, (fold, run) in enumerate(runs):
            loaders = list(run.loaders.items())
            for loader, rows in loaders[:1] if key in _EPOCH_KEYS else loaders:
                points = [(r.epoch, r.values[key]) for r in rows if key in r.values]
                if points:
                    style = "--" if loader.startswith("train") else "-"
                    lines.append(
                        Line(
                            f"fold {fold.index} {loader}",
                            [p[0] for p in points],
                            [p[1] for p in points],
                            _color(number),
                            style,
                        )
                    )
        png = curve_png(lines, f"{key}: every fold", runs[0][1].stage_starts(), size=(5.6, 3.4))
        if png:
            figures.append(h.image(png, f"fold curves: {key}"))
    if not figures:
        return '<p class="muted">No fold has logged metrics yet.</p>'
    return (
        "<p>One colour per fold; solid: validation, dashed: training. x: "
        "epoch of the fold's run.</p>"
        '<div class="grid">' + "".join(figures) + "</div>"
    )


def _cv_timings(folds: List[Fold], notes: List[str]) -> str:
    """Seconds of training and out-of-fold prediction per finished fold (its cv_done.json)."""
    rows = []
    for fold in folds:
        if not fold.finished:
            continue
        try:
            done = cv_runs.read_cv_done(fold.path)
        except PodiumError as error:
            notes.append(str(error))
            continue
        seconds = done.get("seconds") if isinstance(done.get("seconds"), dict) else {}
        rows.append(
            (
                "",
                [
                    h.key_cell(fold.index),
                    h.number_cell(seconds.get("train"), f"cv/{fold.index}/seconds/train"),
                    h.number_cell(seconds.get("predict"), f"cv/{fold.index}/seconds/predict"),
                    h.number_cell(done.get("images")),
                ],
            )
        )
    if not rows:
        return ""
    return (
        "<p>From each fold's cv_done.json; the training loaders' own "
        "timings are in the folds' sections.</p>"
        + h.table(
            ["fold", "training s", "out-of-fold prediction s", "out-of-fold images"],
            rows,
            "cv-timings",
        )
    )


def _cv_settings(path: Path) -> str:
    parts = []
    for file in sorted(
        list(path.glob("*.yml"))
        + list(path.glob("*.yaml"))
        + list((path / "configs").glob("*.yml"))
    ):
        text = file_as_yaml(file)
        if text is not None:
            parts.append(h.details(file.relative_to(path).as_posix(), h.pre(text)))
    return "".join(parts)


def _cv_sections(
    path: Path, limit: int, link_base: Optional[Path], notes: List[str]
) -> List[Section]:
    folds = list_folds(path)
    runs = [(fold, read_run(fold.path)) for fold in folds if fold.started]
    for fold, run in runs:
        notes.extend(f"fold {fold.index}: {note}" for note in run.notes)
    sections = [
        ("folds", "Folds", _fold_table(path, folds)),
        ("fold-curves", "Fold curves", _fold_curves(runs)),
    ]
    predictions = find_predictions(path, notes)
    if any(p.metrics for p in predictions):
        sections.append(("predictions", "Predictions", _predictions(predictions, path)))
    for fold, run in runs:
        fold_notes: List[str] = []
        parts = run_sections(
            run, limit, link_base, fold_notes, f"fold-{fold.index}-", f"{fold.path.name}/"
        )
        notes.extend(f"fold {fold.index}: {note}" for note in fold_notes)
        # one level down: the fold's sections are h3, their sub-headings h4
        body = "".join(
            f'<section id="{h.esc(i)}"><h3>{h.esc(title)}</h3>'
            f"{html_.replace('<h3>', '<h4>').replace('</h3>', '</h4>')}</section>"
            for i, title, html_ in parts
        )
        state = "" if fold.finished else " (not finished)"
        sections.append(
            (
                f"fold-{fold.index}",
                f"Fold {fold.index}",
                h.details(
                    f"fold {fold.index}{state}: {fold.path.name}/ "
                    "— summary, curves, overlays, config",
                    body,
                ),
            )
        )
    timings = _cv_timings(folds, notes)
    if timings:
        sections.insert(2, ("cv-timings", "Timings", timings))
    settings = _cv_settings(path)
    if settings:
        sections.append(("settings", "CV settings", settings))
    return sections


# ---------------------------------------------------------------------------- entry points
def build_report(
    run_dir, num_overlays: int = 4, link_base: Optional[Path] = None
) -> Tuple[str, List[str]]:
    """(the HTML, notes about what could not be shown) for a run or cv directory."""
    path = Path(run_dir)
    if not path.exists():
        raise PodiumError(
            f"{path}: no such directory; expected a run directory (the logdir of catalyst-dl run) "
            "or a podium cv directory"
        )
    if not path.is_dir():
        raise PodiumError(
            f"{path} is a file; expected a run directory (the logdir of catalyst-dl run) "
            "or a podium cv directory"
        )
    notes: List[str] = []
    if is_run_dir(path):
        run = read_run(path)
        notes.extend(run.notes)
        sections = run_sections(run, num_overlays, link_base, notes)
        kind = "run"
    elif is_cv_dir(path):
        sections = _cv_sections(path, num_overlays, link_base, notes)
        kind = "cross-validation"
    else:
        raise PodiumError(
            f"{path} is not a run directory: it has no configs/_config.json (written by "
            "catalyst-dl run) and no fold_<k>/ or cv_summary.csv (written by podium cv)"
        )
    title = f"podium report: {path.resolve().name}"
    return h.page(title, f"{kind} directory {path.resolve()}", sections, notes), notes


def write_report(run_dir, out=None, num_overlays: int = 4) -> Tuple[Path, List[str]]:
    """Write the report (default `RUN_DIR/report.html`) atomically; returns (path, notes)."""
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out.is_dir():
        raise PodiumError(
            f"--out {out} is a directory; expected a file name such as {out / 'report.html'}"
        )
    if num_overlays < 0:
        raise PodiumError(f"--num-overlays must be >= 0, got {num_overlays}")
    text, notes = build_report(run_dir, num_overlays, link_base=out.resolve().parent)
    write_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out, notes
