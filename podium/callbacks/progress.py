"""ProgressPlotCallback: `<logdir>/progress.png`, loss and metric curves of the whole run.

    callbacks:
      progress: {_target_: podium.callbacks.progress.ProgressPlotCallback}

At the end of every epoch (and of the experiment) the figure is redrawn and atomically
replaces `progress.png`: one subplot per metric key (loss, loss_bce, dice, iou, lr, ...), one
curve per loader (train vs valid), x = global epoch, dashed vertical lines where a stage
starts. Values are read from `runner.epoch_metrics` as epochs pass, never from the CSV logs.

Catalyst builds a config's callbacks anew for every stage (and, under DDP, in a new process),
so the history also goes to `<logdir>/progress.json` (tagged with the run's name); the next
stage's callback picks it up and the curves continue across stages. A new run in the same
logdir starts a fresh history.
"""

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

from podium.files import write_atomically

if TYPE_CHECKING:
    from catalyst.core.runner import IRunner

__all__ = ["ProgressPlotCallback", "plot_progress", "default_metric_keys"]


def default_metric_keys(keys: Sequence[str]) -> List[str]:
    """The keys worth a subplot: no `*/std`, no momentum, and no `X/mean`, `X/_micro`,
    `X/_macro`, `X/_weighted` when `X` itself is there (Catalyst logs both)."""
    present = set(keys)
    chosen = []
    for key in keys:
        if key.endswith("/std") or key.split("/")[0] == "momentum":
            continue
        base, _, suffix = key.rpartition("/")
        if suffix in ("mean", "_micro", "_macro", "_weighted") and base in present:
            continue
        chosen.append(key)
    return chosen


def plot_progress(
    history: Sequence[Dict], path: Path, metrics: Optional[Sequence[str]] = None, title: str = ""
) -> bool:
    """Draws the history (records of `epoch`, `stage`, `metrics: {loader: {key: value}}`).

    Writes a temporary file next to `path` and renames it over `path` (atomic on POSIX), so
    a reader never sees half a PNG. Returns False when there is nothing to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    all_keys: List[str] = []
    loaders: List[str] = []
    for record in history:
        for loader, values in record["metrics"].items():
            if loader not in loaders:
                loaders.append(loader)
            all_keys += [key for key in values if key not in all_keys]
    keys = [k for k in metrics if k in all_keys] if metrics else default_metric_keys(all_keys)
    if not keys:
        return False
    # loss first, then the other loss terms, then metrics in order of appearance
    keys.sort(key=lambda k: (k != "loss", not k.startswith("loss")))

    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    figure = Figure(figsize=(5 * ncols, 3.4 * nrows), dpi=80)
    FigureCanvasAgg(figure)
    stage_starts = []
    for record in history:
        if not stage_starts or stage_starts[-1][1] != record["stage"]:
            stage_starts.append((record["epoch"], record["stage"]))

    for index, key in enumerate(keys):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        for loader in loaders:
            points = [
                (r["epoch"], r["metrics"][loader][key])
                for r in history
                if key in r["metrics"].get(loader, {}) and math.isfinite(r["metrics"][loader][key])
            ]
            if points:
                xs, ys = zip(*points)
                axes.plot(xs, ys, marker="o", markersize=3, label=loader)
        for number, (epoch, stage) in enumerate(stage_starts):
            x = epoch - 0.5 if number > 0 else epoch
            if number > 0:
                axes.axvline(x, color="grey", linestyle="--", linewidth=1)
            if len(stage_starts) > 1:
                axes.text(
                    x,
                    0.99,
                    f" {stage}",
                    transform=axes.get_xaxis_transform(),
                    fontsize=8,
                    color="grey",
                    va="top",
                    ha="left",
                )
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(key)
        axes.set_xlabel("epoch")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()

    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png"))
    return True


class ProgressPlotCallback(Callback):
    """Redraws `<logdir>/progress.png` after every epoch and at the end of the experiment.

    Args:
        filename: the PNG's name inside the logdir.
        metrics: metric keys to draw (default: every key of the loaders' epoch metrics except
            `*/std`, momentum and `X/mean` duplicates of `X`).
        logdir: where to write (default: the runner's logdir; nothing is written without one).
    """

    def __init__(
        self,
        filename: str = "progress.png",
        metrics: Optional[Sequence[str]] = None,
        logdir: Optional[str] = None,
    ):
        # after every metric / scheduler callback: their epoch values are final by then
        super().__init__(order=CallbackOrder.ExternalExtra, node=CallbackNode.master)
        self.filename = filename
        self.metrics = list(metrics) if metrics else None
        self.logdir = logdir
        self.history: List[Dict] = []

    def _paths(self, runner: "IRunner"):
        logdir = self.logdir or getattr(runner, "logdir", None)
        if not logdir:
            return None, None
        png = Path(logdir) / self.filename
        return png, png.with_suffix(".json")

    def on_stage_start(self, runner: "IRunner") -> None:
        if self.history:
            return  # the same object across stages (Python API): history is in memory
        _, state = self._paths(runner)
        if state is None or not state.is_file():
            return
        try:
            saved = json.loads(state.read_text())
        except (OSError, ValueError):
            return
        if saved.get("run") == str(runner.run_key):
            self.history = saved.get("history", [])

    def on_epoch_end(self, runner: "IRunner") -> None:
        metrics = {
            str(loader): {str(k): float(v) for k, v in values.items()}
            for loader, values in runner.epoch_metrics.items()
            if loader != "_epoch_" and isinstance(values, dict)
        }
        epoch = int(runner.global_epoch_step)
        # a resumed run repeats epochs: the newest values win
        self.history = [record for record in self.history if record["epoch"] < epoch]
        self.history.append(
            {
                "epoch": epoch,
                "stage": str(runner.stage_key),
                "stage_epoch": int(runner.stage_epoch_step),
                "metrics": metrics,
            }
        )
        self._save(runner)

    def on_experiment_end(self, runner: "IRunner") -> None:
        try:
            self._save(runner)
        except Exception as error:  # never hide the run's own exception behind a plot error
            warnings.warn(
                f"ProgressPlotCallback: could not draw the final plot: {error}", stacklevel=2
            )

    def _save(self, runner: "IRunner") -> None:
        png, state = self._paths(runner)
        if png is None or not self.history:
            return
        saved = json.dumps({"run": str(runner.run_key), "history": self.history})
        write_atomically(state, lambda tmp: tmp.write_text(saved))
        plot_progress(self.history, png, self.metrics, title=png.parent.name)
