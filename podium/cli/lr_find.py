"""`podium lr-find`: an exponential learning-rate sweep of one stage of a training config.

    podium lr-find --config configs/nuclei/unet_resnet18.yml --stage train --steps 100
    podium lr-find --config configs/nuclei/unet_resnet18.yml --stages/train/loaders/batch_size=4:int

The runner is built from the YAML exactly as `catalyst-dl run` builds it (same loading,
merging of several --config files, Catalyst-style `--a/b/c=value:type` overrides, the config's
runner `_target_`), and the stage runs for real — its model, train loader, optimizer, loss
callbacks (CriterionCallbacks + MetricAggregation → the OptimizerCallback's `metric_key`) —
with three changes: the LR of every parameter group is set before each batch to
min_lr·(max_lr/min_lr)^(i/(steps-1)); only the train loader runs; and nothing of the run is
written (no logdir, no loggers, no checkpoint / early-stopping / scheduler callbacks, no
callback watching another loader). The sweep stops after --steps batches or when the
smoothed loss exceeds 4× its best value.

Output in --out (default `<args/logdir>/lr_find`): `lr_find.csv` (step, lr, loss,
smoothed_loss) and `lr_find.png` (loss vs LR, log scale). The suggested LR is where the
smoothed loss falls fastest (steepest negative slope against log LR, before its minimum);
the LR at the minimum divided by 10 is printed too.
"""

import argparse
import csv
import math
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from podium.cli.overrides import OverridesParser
from podium.errors import PodiumError, did_you_mean
from podium.files import write_atomically

__all__ = [
    "register",
    "run",
    "lr_schedule",
    "default_smoothing",
    "smooth",
    "suggest_lr",
    "load_run_config",
    "build_sweep_runner",
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lr-find",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.__class__ = OverridesParser  # accept `--a/b=value:type` like catalyst-dl run
    parser.add_argument(
        "--config",
        "--configs",
        "-C",
        dest="configs",
        nargs="+",
        required=True,
        metavar="CONFIG",
        help="YAML config(s), merged in order",
    )
    parser.add_argument("--stage", help="stage to sweep (default: the first)")
    parser.add_argument("--min-lr", type=float, default=1e-7)
    parser.add_argument("--max-lr", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=100, help="batches in the sweep")
    parser.add_argument(
        "--smoothing",
        type=float,
        default=None,
        help="EMA factor of the smoothed loss (default: 1 - 10/steps, "
        "clipped to 0.5 .. 0.98: 0.9 for 100 steps)",
    )
    parser.add_argument(
        "--divergence",
        type=float,
        default=4.0,
        help="stop when the smoothed loss exceeds this × its best (default 4)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <logdir>/lr_find)")
    parser.set_defaults(func=run, overrides=[])


# -- the math (no Catalyst) -------------------------------------------------------------------
def lr_schedule(min_lr: float, max_lr: float, steps: int) -> List[float]:
    """`steps` LRs from min_lr to max_lr, evenly spaced on a log scale."""
    if steps == 1:
        return [min_lr]
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def default_smoothing(steps: int) -> float:
    """EMA factor for a sweep of `steps` batches: a window of about a tenth of the sweep."""
    return min(0.98, max(0.5, 1 - 10 / steps))


def smooth(losses: Sequence[float], beta: float = 0.98) -> List[float]:
    """Exponential moving average with bias correction (the first values are not damped)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> Dict[str, Optional[float]]:
    """`steepest`: the LR where the smoothed loss falls fastest against log LR, looking only
    before its minimum and skipping the first tenth of the sweep (start-up noise);
    `min_over_10`: the LR of the minimum / 10. `steepest` is None with fewer than 3 points."""
    finite = [i for i, value in enumerate(smoothed) if math.isfinite(value)]
    if not finite:
        return {"steepest": None, "min_over_10": None}
    best = min(finite, key=lambda i: smoothed[i])
    result = {"steepest": None, "min_over_10": lrs[best] / 10}
    start = len(lrs) // 10
    points = [i for i in finite if start <= i <= best]
    if len(points) >= 3:
        slopes = []
        for a, b in zip(points, points[1:]):
            slopes.append((smoothed[b] - smoothed[a]) / (math.log(lrs[b]) - math.log(lrs[a])))
        steepest = min(range(len(slopes)), key=lambda k: slopes[k])
        a, b = points[steepest], points[steepest + 1]
        if slopes[steepest] < 0:
            result["steepest"] = math.sqrt(lrs[a] * lrs[b])  # the middle of that segment
    return result


# -- the Catalyst side ------------------------------------------------------------------------
def _merge(base: Dict, update: Optional[Dict]) -> Dict:
    """catalyst.utils.misc.merge_dicts (nested dicts merged, anything else replaced), which
    itself fails on Python >= 3.10 (`collections.Mapping`) as soon as two configs are given."""
    merged = deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(merged.get(key), dict) and isinstance(value, Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_run_config(configs: Sequence[str], overrides: Sequence[str]) -> Dict:
    """The config dict `catalyst-dl run --config ... <overrides>` would build."""
    from catalyst.dl.scripts._misc import parse_config_args
    from catalyst.utils.config import load_config

    config: Dict = {}
    for path in configs:
        if not Path(path).is_file():
            raise PodiumError(f"config file not found: {path}")
        config = _merge(config, load_config(str(path), ordered=True))
    try:
        config, _ = parse_config_args(
            config=config, args=argparse.Namespace(), unknown_args=list(overrides)
        )
    except Exception as error:
        raise PodiumError(f"bad override in {' '.join(overrides)}: {error}") from None
    return config


def _watches_other_loader(callback, train_key: str) -> bool:
    loader_key = getattr(callback, "loader_key", None)
    return isinstance(loader_key, str) and loader_key != train_key


def build_sweep_runner(config: Dict, stage: str, sweep):
    """The config's runner, restricted to the sweep: one stage, its train loader, no outputs."""
    from catalyst.callbacks import EarlyStoppingCallback, ICheckpointCallback
    from catalyst.core.callback import CallbackWrapper, ISchedulerCallback
    from catalyst.registry import REGISTRY

    from podium.callbacks.progress import ProgressPlotCallback
    from podium.callbacks.visuals import OverlayCallback

    config = deepcopy(config)
    stage_config = config["stages"][stage]
    config["stages"] = OrderedDict([(stage, stage_config)])
    stage_config["num_epochs"] = len(sweep.lrs)  # an upper bound: the sweep stops the stage
    stage_config.pop("scheduler", None)
    run_args = config.setdefault("args", {})
    for key in ("logdir", "baselogdir", "resume", "autoresume"):
        run_args[key] = None  # no logdir: nothing can be written into the run

    runner_params = dict(config.get("runner") or {})
    target = runner_params.pop("_target_", None)
    if target is None:
        raise PodiumError("the config has no runner/_target_")
    base = REGISTRY.get(target)
    # outputs of a run, LR changes other than the sweep's, and watchers of other loaders
    dropped = (
        ICheckpointCallback,
        ISchedulerCallback,
        EarlyStoppingCallback,
        OverlayCallback,
        ProgressPlotCallback,
    )

    class SweepRunner(base):
        def get_loggers(self):
            return {}

        def get_loaders(self, stage):
            loaders = super().get_loaders(stage)
            keys = [key for key in loaders if key.startswith("train")]
            if not keys:
                raise PodiumError(f"stage {stage} has no train loader (loaders: {list(loaders)})")
            self._sweep_train_key = "train" if "train" in keys else keys[0]
            return OrderedDict(train=loaders[self._sweep_train_key])

        def get_callbacks(self, stage):
            kept = OrderedDict()
            for name, callback in super().get_callbacks(stage).items():
                inner = callback
                while isinstance(inner, CallbackWrapper):
                    inner = inner.callback
                if isinstance(inner, dropped) or _watches_other_loader(inner, "train"):
                    continue
                kept[name] = callback
            kept["_lr_sweep"] = sweep
            return kept

    runner = SweepRunner(config=config, **runner_params)
    if runner.get_engine().is_ddp:
        raise PodiumError(
            "lr-find runs in one process: override the config's DDP engine, e.g. "
            "--engine/_target_=catalyst.engines.DeviceEngine:str"
        )
    return runner


def write_outputs(records: List[Dict], out: Path, suggestion: Dict, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lr_find.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["step", "lr", "loss", "smoothed_loss"])
        writer.writeheader()
        writer.writerows(records)

    figure = Figure(figsize=(7, 4.5), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    lrs = [r["lr"] for r in records]
    axes.plot(lrs, [r["loss"] for r in records], color="tab:blue", alpha=0.3, label="loss")
    axes.plot(lrs, [r["smoothed_loss"] for r in records], color="tab:blue", label="smoothed")
    for key, colour, label in (
        ("steepest", "tab:red", "steepest descent"),
        ("min_over_10", "tab:green", "min-loss LR / 10"),
    ):
        if suggestion.get(key):
            axes.axvline(
                suggestion[key],
                color=colour,
                linestyle="--",
                label=f"{label}: {suggestion[key]:.2e}",
            )
    smoothed = [r["smoothed_loss"] for r in records if math.isfinite(r["smoothed_loss"])]
    raw = [r["loss"] for r in records if math.isfinite(r["loss"])]
    if smoothed:  # keep a divergent tail from flattening the interesting part
        low = min(smoothed + raw)
        high = max(smoothed)
        if min(smoothed) > 0:
            high = min(high, 4 * min(smoothed))
        margin = 0.05 * (high - low or 1.0)
        axes.set_ylim(low - margin, high + margin)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    write_atomically(out / "lr_find.png", lambda tmp: figure.savefig(tmp, format="png"))


def run(args) -> int:
    from catalyst.utils.misc import set_global_seed

    from podium.callbacks.lr_sweep import LRSweepCallback

    if not 0 < args.min_lr < args.max_lr:
        raise PodiumError(f"need 0 < --min-lr < --max-lr (got {args.min_lr}, {args.max_lr})")
    if args.steps < 2:
        raise PodiumError(f"--steps must be at least 2 (got {args.steps})")
    if args.smoothing is None:
        args.smoothing = default_smoothing(args.steps)
    if not 0 <= args.smoothing < 1:
        raise PodiumError(f"--smoothing must be in [0, 1) (got {args.smoothing})")

    config = load_run_config(args.configs, args.overrides)
    stages = list((config.get("stages") or {}).keys())
    if not stages:
        raise PodiumError("the config has no stages")
    stage = args.stage or stages[0]
    if stage not in stages:
        raise PodiumError(
            f"no stage {stage!r} in the config (stages: {', '.join(stages)})"
            f"{did_you_mean(stage, stages)}"
        )
    logdir = (config.get("args") or {}).get("logdir")
    out = args.out or (Path(logdir) / "lr_find" if logdir else Path("lr_find"))

    sweep = LRSweepCallback(
        lr_schedule(args.min_lr, args.max_lr, args.steps), args.smoothing, args.divergence
    )
    set_global_seed(int((config.get("args") or {}).get("seed", 42)))
    runner = build_sweep_runner(config, stage, sweep)
    runner.run()
    if not sweep.records:
        raise PodiumError(f"no training batch ran in stage {stage}")

    lrs = [r["lr"] for r in sweep.records]
    suggestion = suggest_lr(lrs, [r["smoothed_loss"] for r in sweep.records])
    write_outputs(sweep.records, out, suggestion, f"lr-find: stage {stage}")
    suggested = suggestion["steepest"] or suggestion["min_over_10"]
    how = (
        "steepest descent of the smoothed loss"
        if suggestion["steepest"]
        else "min-loss LR / 10: no descending stretch to measure"
    )
    print(
        f"lr-find: stage {stage}, {len(lrs)} steps, LR {lrs[0]:.2e} → {lrs[-1]:.2e} "
        f"({sweep.stop_reason}); loss key {sweep.loss_key}"
    )
    if suggestion["min_over_10"] is not None:
        print(f"min-loss LR / 10: {suggestion['min_over_10']:.3e}")
    print(f"wrote {out / 'lr_find.csv'} and {out / 'lr_find.png'}")
    if suggested is None:
        raise PodiumError("the loss was never finite: no LR to suggest")
    print(f"suggested LR: {suggested:.3e} ({how})")
    return 0
