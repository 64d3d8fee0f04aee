"""What does podium (Catalyst + the config's callbacks and loggers) cost over a plain PyTorch loop?

Both train the demo config's model (configs/nuclei/unet_resnet18.yml, one stage, default
`train`: every layer trains) for the same fixed number of steps (default 3 epochs × 10 batches
of 8 random 96² crops = 30 steps), with the same torch threads, device (DeviceEngine's: CUDA
if present) and num_workers 0:

* podium — the `catalyst-dl run` code path in-process: argv → Catalyst's `parse_args_uargs`
  (YAML + `--key=value:type` overrides) → `set_global_seed` → the runner the config names
  (SegmentationRunner) → `runner.run()` (Catalyst's dump of config and code into the run
  folder, before `run()`, is left out), with every callback and logger of the config (loss
  stack, optimizer, sigmoid, IoU, Dice, checkpoint, scheduler, early stopping; console, CSV,
  TensorBoard) and the sample's small validation loader (4 tiles, one batch);
* hand — a hand-written loop: a model from the same `model:` block and seed, the runner's own
  train dataset object, the same batch order and augmentations (global and augmentation seeds
  set per epoch as the runner sets them), the same loss (BCEWithLogits + toolbelt Dice),
  AdamW and cosine schedule; gradients set to None after the step, as in PyTorch's tutorial
  loop and Catalyst's OptimizerCallback; it keeps the epoch's mean loss (one `float()` per
  epoch) and nothing else: no metrics, no logs, no validation, no checkpoints;
* hand_zero_before_backward — the same loop with `zero_grad` just before `backward` instead:
  reported beside the goal, not in it (see below).

Timed: only the training steps, in both. For podium, from the start of the train loader's
`on_loader_start` to the end of its `on_loader_end` (a subclass of the config's runner reads
the clock there: runner hooks run first at a start and last at an end, so every callback's
per-batch and per-loader work is inside); for the hand loop, its batch loops; summed over
epochs. Data loading is in both (the same dataset). Not timed in either: process start-up,
imports, building datasets / model / optimizer. Not in the ratio but reported per epoch
(`podium_outside_train_s_per_epoch`): what podium does around its train loaders — stage
set-up, validation, checkpoint writing, logger flushing.

Each timed run is the second of two identical runs in a fresh process (the first warms up),
the processes alternating (podium, hand, hand_zero_before_backward, podium, …); medians over
`--repeats`; `ratio` = median podium / median hand, goal ≤ 1.03. Why fresh processes: glibc's
allocator state carries over from run to run in one process, and whether a loop then
page-faults ~100 or ~15 000 times per step (fresh memory from the OS each step) depended on
what ran before it — worth ±5 %, more than the overhead being measured. Also reported: the
ratio of the fastest runs, the median of each pair's ratio, the ratio of process CPU time
(steadier than wall time on a shared machine) and page faults per step.

Before the timed runs, one podium and one hand run in this process check that the two loops
do the same work: each batch's sample names and pixel sum (`same_batches`) and each epoch's
mean loss (`check_run_epoch_loss`: equal up to Catalyst's no-weight-decay-on-biases default).
`--profile` adds where the time goes, in this process: ms per step of each callback, the
forward, the runner's hooks and data loading (podium) beside data / forward / loss / backward +
step (hand), podium's ms per epoch outside its train loaders, and a cProfile top list.

Measured 2026-11-29 on the idle 2-core box, 2 threads, 30 steps. The median ratio moved
between idle runs:
- 1.054 with 5 repeats;
- 1.019 and 0.999 with 9 repeats (hence the default of 9).

One loop's runs spread by up to ±9 %. The profile is steadier. podium's own work per step:
- 2.8 ms for callbacks, runner hooks and Catalyst's loop;
- 1.3 ms of that is the two loss terms, which the hand loop computes too;
- so ≈ 1.4 ms of a ~150 ms step (IoU + Dice 0.5, runner hooks 0.6, Catalyst's loop 0.3).

Forward, backward + step and data loading cost what the hand loop's do (Catalyst's
one-param-group-per-tensor AdamW included). With 1 thread under load 2.2–2.7: 1.026.

Outside the train loaders the checkpoint callback dominates: 0.29 s per epoch (it was 0.68 s
while best / last were copies; they are hard links now). It writes, with fsync, the model and
the full checkpoint (model, optimizer, scheduler, ~230 MB). That is also why each run's folder
is deleted right after it.
The hand loop with `zero_grad` before backward was 3.5 % faster than the tutorial loop
(podium / it: 1.057): on CPU, gradients freed after the step go back to the OS and the next
backward page-faults them in again (15 700 vs 8 900 faults per step); keeping them through
the forward costs their size in peak memory (56 MB here); on CUDA the caching allocator makes
the order irrelevant. Under load, 2 threads ran 5–40× slower and erratically (OpenMP threads
spin while the other core is taken): on a shared machine use `--threads 1`.

Results go to benchmarks/results/overhead.json (with the load average before and after:
numbers are only meaningful on an idle machine) and one line is printed: `overhead RATIOx`.

    .venv/bin/python benchmarks/overhead.py [--repeats 9] [--epochs 3] [--batches 10] [--profile]
"""

import argparse
import contextlib
import copy
import cProfile
import csv
import gc
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import podium  # noqa: E402,F401  (first: its compat layer applies, and quiets toolbelt's import warnings)
from catalyst.dl.scripts._misc import parse_args_uargs  # noqa: E402
from catalyst.dl.scripts.run import build_args  # noqa: E402
from catalyst.registry import REGISTRY  # noqa: E402
from catalyst.utils.misc import set_global_seed  # noqa: E402
from catalyst.utils.torch import prepare_cudnn  # noqa: E402
from pytorch_toolbelt.losses import DiceLoss  # noqa: E402

from podium.datasets import seed_transforms  # noqa: E402
from podium.datasets.samples import write_sample  # noqa: E402
from podium.targets import call_target  # noqa: E402

GOAL = 1.03
FAST_GOAL = 2.0  # train_fast: podium bf16 + channels_last over the fp32 hand loop
HAND_ZERO_EARLY = "hand_zero_before_backward"
CONFIG = os.path.join(REPO, "configs", "nuclei", "unet_resnet18.yml")


# ----------------------------------------------------------------------------------- podium
def podium_config(config_path: str, stage: str, data_root: str, logdir: str, overrides=()):
    """(args, config) exactly as `catalyst-dl run --config ... --key=value:type` builds them,
    reduced to one stage."""
    argv = [
        "--config",
        config_path,
        f"--args/logdir={logdir}:str",
        f"--data/root={data_root}:str",
        *overrides,
    ]
    args, unknown = build_args(argparse.ArgumentParser()).parse_known_args(argv)
    args, config = parse_args_uargs(args, unknown)
    if stage not in config["stages"]:
        raise SystemExit(
            f"stage {stage!r} is not in {config_path}; stages: {list(config['stages'])}"
        )
    config["stages"] = {stage: config["stages"][stage]}
    return args, config


class Parts:
    """Wall and CPU seconds per named part (the profiling runs only)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    @contextlib.contextmanager
    def clock(self, part: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[part] = self.wall.get(part, 0.0) + time.perf_counter() - wall
            self.cpu[part] = self.cpu.get(part, 0.0) + time.process_time() - cpu

    def per_unit_ms(
        self, units: int, total_wall: float = None, total_cpu: float = None, rest: str = "rest"
    ) -> dict:
        """{part: {wall_ms, cpu_ms}} per step (or epoch), largest first; `rest` = total − parts."""
        wall, cpu = dict(self.wall), dict(self.cpu)
        if total_wall is not None:
            wall[rest], cpu[rest] = (
                total_wall - sum(self.wall.values()),
                total_cpu - sum(self.cpu.values()),
            )
        return {
            part: {
                "wall_ms": round(1000 * wall[part] / units, 2),
                "cpu_ms": round(1000 * cpu[part] / units, 2),
            }
            for part in sorted(wall, key=lambda p: -wall[p])
        }


class _ClockedLoader:
    """A loader whose batches are fetched under the clock "data loading" (profiling only)."""

    def __init__(self, loader, parts: Parts):
        self.loader, self.parts = loader, parts

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            with self.parts.clock("data loading"):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


EVENTS = (
    "on_epoch_start",
    "on_loader_start",
    "on_batch_start",
    "on_batch_end",
    "on_loader_end",
    "on_epoch_end",
)


def timed_runner_class(base):
    """`base` (the config's runner) with a clock around each train loader; on request batch
    fingerprints (the check run) and a clock around every callback event and the forward (profiling:
    `parts` for the train loaders, `outside` for the rest of each epoch)."""

    class Timed(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.train_seconds, self.train_cpu_seconds, self.train_faults, self.train_loss = (
                [],
                [],
                [],
                [],
            )
            self.fingerprints, self.parts, self.outside, self._in_train = None, None, None, False

        def _part(self, name: str):
            parts = self.parts if self._in_train else self.outside
            return contextlib.nullcontext() if parts is None else parts.clock(name)

        def on_loader_start(self, runner):
            self._started = (
                time.perf_counter(),
                time.process_time(),
                _minor_faults(),
            )  # runner hooks run first ...
            self._in_train = self.loader_key.startswith("train")
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_loader_start(runner)
            if self.parts is not None and self._in_train:
                self.loader = _ClockedLoader(self.loader, self.parts)

        def on_batch_start(self, runner):
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_batch_start(runner)
            if self.fingerprints is not None and self._in_train:
                self.fingerprints.append(fingerprint(self.batch))

        def handle_batch(self, batch):
            with self._part("forward (runner.handle_batch)"):
                return super().handle_batch(batch)

        def on_batch_end(self, runner):
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_batch_end(runner)

        def on_loader_end(self, runner):
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_loader_end(runner)  # ... and last at an end
            if self._in_train:
                self.train_seconds.append(time.perf_counter() - self._started[0])
                self.train_cpu_seconds.append(time.process_time() - self._started[1])
                self.train_faults.append(_minor_faults() - self._started[2])
                self.train_loss.append(float(self.loader_metrics[self._loss_key]))
            self._in_train = False

        def on_epoch_start(self, runner):
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_epoch_start(runner)

        def on_epoch_end(self, runner):
            with self._part("runner hooks (Catalyst + podium)"):
                super().on_epoch_end(runner)

        def on_stage_start(self, runner):
            super().on_stage_start(runner)
            if self.parts is not None:
                for name, callback in self.callbacks.items():
                    for event in EVENTS:
                        setattr(
                            callback,
                            event,
                            self._clocked(f"callback {name}", getattr(callback, event)),
                        )

        def _clocked(self, part, method):
            def clocked(*args):
                with self._part(part):
                    return method(*args)

            return clocked

    return Timed


def build_podium(args, config):
    """The runner `catalyst-dl run` would build (`get_config_runner`), timed; not yet run."""
    set_global_seed(args.seed)
    prepare_cudnn(args.deterministic, args.benchmark)
    params = copy.deepcopy(config["runner"])
    runner_class = REGISTRY.get(params.pop("_target_"))
    return timed_runner_class(runner_class)(config=copy.deepcopy(config), **params)


def run_podium(runner, record: bool = False, parts: bool = False) -> dict:
    """`runner.run()`; the timed train loaders, the whole run, and what was asked for."""
    runner.fingerprints = [] if record else None
    if parts:
        runner.parts, runner.outside = Parts(), Parts()
    # the previous runs' garbage (an earlier runner: model, optimizer) is not this run's cost
    gc.collect()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the console logger: keep stdout parseable
        runner.run()
    total = time.perf_counter() - start
    if runner.exception is not None:
        raise runner.exception
    shutil.rmtree(
        runner.logdir, ignore_errors=True
    )  # ~0.7 GB of checkpoints per epoch: the disk fills up
    return {
        "train_s": sum(runner.train_seconds),
        "train_cpu_s": sum(runner.train_cpu_seconds),
        "run_s": total,
        "train_minor_faults": sum(runner.train_faults),
        "epoch_loss": runner.train_loss,
        "fingerprints": runner.fingerprints,
        "parts": runner.parts,
        "outside": runner.outside,
        "dataset": runner.get_datasets(runner.stage_key)["train"],
    }


# ------------------------------------------------------------------------------------- hand
def hand_loop(
    config: dict,
    stage: str,
    dataset,
    seed: int,
    epochs: int,
    record: bool = False,
    parts: "Parts" = None,
    zero_early: bool = False,
) -> dict:
    """A plain PyTorch training loop: the same model, data, loss, optimizer and schedule.

    Gradients are set to None after the step (PyTorch's tutorial loop, and Catalyst's
    OptimizerCallback); `zero_early`: just before backward instead (they then live through
    the next forward).
    """
    stage_config = config["stages"][stage]
    check_hand_matches(stage_config)
    set_global_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = call_target(config["model"], "model").to(device).train()
    opt = stage_config["optimizer"]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opt["lr"], weight_decay=opt.get("weight_decay", 0.01)
    )
    sched = stage_config.get("scheduler")
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=sched["T_max"])
        if sched
        else None
    )
    bce = torch.nn.BCEWithLogitsLoss()
    dice = DiceLoss(mode="binary", from_logits=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=int(stage_config["loaders"]["batch_size"]), shuffle=True, num_workers=0
    )
    part = parts.clock if parts is not None else lambda name: contextlib.nullcontext()
    gc.collect()  # as before a podium run
    seconds, cpu_seconds, faults, fingerprints, losses = 0.0, 0.0, 0, [] if record else None, []
    for epoch in range(1, epochs + 1):
        # what the runner does before iterating a train loader (batch order, augmentations)
        set_global_seed(seed + epoch)
        seed_transforms(
            dataset, int(np.random.SeedSequence([seed, 0, epoch, 0]).generate_state(1)[0])
        )
        start, cpu_start, faults_start = time.perf_counter(), time.process_time(), _minor_faults()
        total, count = torch.zeros((), device=device), 0
        batches = iter(loader)
        while True:
            with part("data loading"):
                batch = next(batches, None)
            if batch is None:
                break
            if record:
                fingerprints.append(fingerprint(batch))
            with part("forward"):
                images = batch["image"].to(device, non_blocking=True)
                masks = batch["mask"].to(device, non_blocking=True)
                logits = model(images)
            with part("loss"):
                loss = bce(logits, masks) + dice(logits, masks)
            with part("backward + step + zero_grad"):
                if zero_early:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if not zero_early:
                    optimizer.zero_grad(set_to_none=True)
            total += loss.detach() * len(images)
            count += len(images)
        losses.append(float(total) / count)
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu_start
        faults += _minor_faults() - faults_start
        if scheduler is not None:
            scheduler.step()
    return {
        "train_s": seconds,
        "train_cpu_s": cpu_seconds,
        "train_minor_faults": faults,
        "fingerprints": fingerprints,
        "epoch_loss": losses,
    }


def check_hand_matches(stage_config: dict) -> None:
    """The hand loop is written for the demo config's loss and optimizer: refuse others."""
    criterion = {k: v.get("_target_") for k, v in stage_config["criterion"].items()}
    expected = {"bce": "torch.nn.BCEWithLogitsLoss", "dice": "pytorch_toolbelt.losses.DiceLoss"}
    optimizer = stage_config["optimizer"]["_target_"]
    scheduler = (stage_config.get("scheduler") or {}).get(
        "_target_", "torch.optim.lr_scheduler.CosineAnnealingLR"
    )
    if (
        criterion != expected
        or optimizer != "torch.optim.AdamW"
        or not scheduler.endswith("CosineAnnealingLR")
    ):
        raise SystemExit(
            f"the hand loop implements {expected} + AdamW + CosineAnnealingLR; the stage has "
            f"{criterion} + {optimizer} + {scheduler}"
        )


def _minor_faults() -> int:
    """Page faults so far: fresh memory the allocator had to map (a cost a loop can add)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fingerprint(batch) -> tuple:
    return tuple(batch["name"]), round(float(batch["image"].double().sum()), 3)


# ------------------------------------------------------------------------------------- data
def write_data(root: str, train_images: int) -> None:
    """The nuclei sample (`podium samples nuclei`), its first `train_images` train tiles kept."""
    write_sample("nuclei", root)
    path = os.path.join(root, "split.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = 0
    for row in rows:
        if row["split"] == "train":
            kept += 1
            if kept > train_images:
                row["split"] = "unused"
    if kept < train_images:
        raise SystemExit(f"the sample has {kept} train tiles, {train_images} asked")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "split"])
        writer.writeheader()
        writer.writerows(rows)


def profile(podium_once, hand_once, steps: int, epochs: int, top: int) -> dict:
    """Where the time goes: a podium run and a hand run with a clock around each part (podium:
    every callback event, the forward, the runner's hooks, data loading; hand: data, forward,
    loss, backward + step), in ms per train step (podium outside its train loaders: ms per
    epoch); then a podium run under cProfile (its top podium / Catalyst / tensorboardX /
    toolbelt-loss functions by cumulative seconds)."""
    result = podium_once("profile", parts=True)
    podium_parts = result["parts"].per_unit_ms(
        steps, result["train_s"], result["train_cpu_s"], "rest (Catalyst's loop)"
    )
    outside = result["outside"].per_unit_ms(epochs)
    hand_parts = Parts()
    result = hand_once(hand_parts)
    hand_parts = hand_parts.per_unit_ms(steps, result["train_s"], result["train_cpu_s"], "rest")

    profiler = cProfile.Profile()
    profiler.enable()
    podium_once("cprofile")
    profiler.disable()
    rows = []
    for (path, line, name), (_, calls, _, cumulative, _) in pstats.Stats(profiler).stats.items():
        if any(
            part in path
            for part in ("/catalyst/", "/podium/", "tensorboardX", "/pytorch_toolbelt/losses")
        ):
            short = path.split("site-packages/")[-1].replace(REPO + os.sep, "")
            rows.append(
                {
                    "function": f"{short}:{line}:{name}",
                    "calls": calls,
                    "cumulative_s": round(cumulative, 4),
                }
            )
    rows.sort(key=lambda row: -row["cumulative_s"])
    return {
        "podium_train_ms_per_step": podium_parts,
        "hand_train_ms_per_step": hand_parts,
        "podium_outside_train_ms_per_epoch": outside,
        "cprofile_podium_run": rows[:top],
    }


def probe_argv(kind: str, options, tmp: str) -> list:
    """The arguments of a `--probe` run of `kind` (podium | hand) with these options."""
    argv = [
        "--probe",
        kind,
        "--probe-dir",
        tmp,
        "--config",
        options.config,
        "--stage",
        options.stage,
        "--epochs",
        str(options.epochs),
        "--batches",
        str(options.batches),
        "--threads",
        str(options.threads),
    ]
    argv += ["--fast", options.fast] if options.fast else []
    argv += ["--size", str(options.size)] if options.size else []
    return argv + (["--batch-size", str(options.batch_size)] if options.batch_size else [])


def fresh_process(kind: str, options, tmp: str) -> dict:
    """One timed run of `kind` in a new process, after a warm-up run there."""
    command = [sys.executable, os.path.abspath(__file__), *probe_argv(kind, options, tmp)]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # stderr: through
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe(kind: str, options, overrides) -> None:
    """The `--probe` process: a warm-up run, then the timed run; prints its timings as JSON."""
    data_root = os.path.join(options.probe_dir, "nuclei")
    logdir = os.path.join(options.probe_dir, f"{kind}_{os.getpid()}")
    if kind == "podium":
        runs = [
            run_podium(
                build_podium(
                    *podium_config(
                        options.config, options.stage, data_root, f"{logdir}_{i}", overrides
                    )
                )
            )
            for i in range(2)
        ]
    else:
        args, config = podium_config(options.config, options.stage, data_root, logdir, overrides)
        dataset = build_podium(args, config).get_datasets(options.stage)[
            "train"
        ]  # the runner's own dataset
        runs = [
            hand_loop(
                config,
                options.stage,
                dataset,
                int(args.seed),
                options.epochs,
                zero_early=kind == HAND_ZERO_EARLY,
            )
            for _ in range(2)
        ]
    keys = ("train_s", "train_cpu_s", "train_minor_faults", "run_s", "epoch_loss")
    print(json.dumps({key: runs[-1][key] for key in keys if key in runs[-1]}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument(
        "--stage", default="train", help="the config's stage to run (its callbacks, optimizer ...)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10, help="train batches per epoch")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="train on SIZE² inputs (the tiles resized, then D4) instead of the config's crops",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--profile", action="store_true", help="also: ms per step of each part, cProfile top"
    )
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results", "overhead.json")
    )
    parser.add_argument(
        "--probe", choices=("podium", "hand", HAND_ZERO_EARLY), help=argparse.SUPPRESS
    )
    parser.add_argument("--probe-dir", help=argparse.SUPPRESS)
    parser.add_argument(
        "--fast",
        nargs="?",
        const="plain",
        choices=("plain", "compile"),
        help="train_fast: podium with engine precision auto + memory_format auto (+ compile) "
        "against the same fp32 hand loop; prints `train_fast RATIOx` (hand time / podium time)",
    )
    options = parser.parse_args(argv)
    if min(options.repeats, options.epochs, options.batches) < 1:
        parser.error("--repeats, --epochs and --batches must be at least 1")
    torch.set_num_threads(options.threads)
    stage = options.stage
    overrides = [f"--stages/{stage}/num_epochs={options.epochs}:int", "--args/verbose=False:bool"]
    if options.batch_size:
        overrides.append(f"--stages/{stage}/loaders/batch_size={options.batch_size}:int")
    if options.size:  # the same transforms reach both loops: the hand loop uses podium's dataset
        transforms = [{"Resize": {"height": options.size, "width": options.size}}, {"D4": {}}]
        overrides.append(f"--data/train_transforms={transforms!r}:list")
    if options.fast:  # the hand loop stays fp32: only podium's runs read these
        overrides += [
            "--engine/_target_=podium.runners.engines.DeviceEngine:str",
            "--engine/precision=auto:str",
            "--engine/memory_format=auto:str",
            f"--engine/compile={options.fast == 'compile'}:bool",
        ]
    if options.probe:
        probe(options.probe, options, overrides)
        return 0

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data_root = os.path.join(tmp, "nuclei")
        base_args, base_config = podium_config(options.config, stage, data_root, tmp, overrides)
        batch_size = int(base_config["stages"][stage]["loaders"]["batch_size"])
        write_data(data_root, options.batches * batch_size)

        def podium_once(index, record: bool = False, parts: bool = False) -> dict:
            args, config = podium_config(
                options.config, stage, data_root, os.path.join(tmp, f"run{index}"), overrides
            )
            return run_podium(build_podium(args, config), record, parts)

        def hand_once(dataset, record: bool = False, parts: Parts = None) -> dict:
            return hand_loop(
                base_config, stage, dataset, int(base_args.seed), options.epochs, record, parts
            )

        # in this process: do both loops see the same batches and compute the same loss?
        check_podium = podium_once("check", record=True)
        dataset = check_podium["dataset"]
        check_hand = hand_once(dataset, record=True)
        same_batches = check_podium["fingerprints"] == check_hand["fingerprints"]
        steps = len(check_hand["fingerprints"])
        input_shape = list(dataset[0]["image"].shape)

        podium_runs, hand_runs, early_runs = [], [], []
        for repeat in range(options.repeats):
            podium_runs.append(fresh_process("podium", options, tmp))
            hand_runs.append(fresh_process("hand", options, tmp))
            early_runs.append(fresh_process(HAND_ZERO_EARLY, options, tmp))
            print(
                f"  repeat {repeat + 1}/{options.repeats}: "
                f"podium {podium_runs[-1]['train_s']:.2f}s "
                f"(cpu {podium_runs[-1]['train_cpu_s']:.2f}s, "
                f"whole run {podium_runs[-1]['run_s']:.2f}s)  "
                f"hand {hand_runs[-1]['train_s']:.2f}s (cpu {hand_runs[-1]['train_cpu_s']:.2f}s)  "
                f"hand, zero_grad before backward {early_runs[-1]['train_s']:.2f}s",
                file=sys.stderr,
            )
        profiled = None
        if options.profile:
            profiled = profile(
                podium_once,
                lambda parts: hand_once(dataset, parts=parts),
                steps,
                options.epochs,
                top=30,
            )
    load_after = os.getloadavg()

    podium_s = [run["train_s"] for run in podium_runs]
    hand_s = [run["train_s"] for run in hand_runs]
    early_s = [run["train_s"] for run in early_runs]
    fixed_s = [run["run_s"] - run["train_s"] for run in podium_runs]
    podium_cpu = [run["train_cpu_s"] for run in podium_runs]
    hand_cpu = [run["train_cpu_s"] for run in hand_runs]
    ratio = statistics.median(podium_s) / statistics.median(hand_s)
    result = {
        "config": os.path.relpath(options.config, REPO),
        "stage": options.stage,
        "epochs": options.epochs,
        "train_steps": steps,
        "batch_size": batch_size,
        "input_size": options.size or "the config's crops",
        "input_shape": input_shape,
        "repeats": options.repeats,
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "same_batches": same_batches,
        "podium_train_s": {
            "median": statistics.median(podium_s),
            "min": min(podium_s),
            "all": podium_s,
        },
        "hand_train_s": {"median": statistics.median(hand_s), "min": min(hand_s), "all": hand_s},
        "podium_outside_train_s_per_epoch": {
            "median": statistics.median(fixed_s) / options.epochs,
            "all": [s / options.epochs for s in fixed_s],
            "what": "runner.run() minus the train loaders: stage set-up, validation, "
            "checkpoints, logs; not in the ratio",
        },
        "overhead_ms_per_step": 1000
        * (statistics.median(podium_s) - statistics.median(hand_s))
        / steps,
        "ratio": ratio,
        "ratio_of_min": min(podium_s) / min(hand_s),
        "ratio_of_pairs": statistics.median(p / h for p, h in zip(podium_s, hand_s)),
        "podium_train_cpu_s": {"median": statistics.median(podium_cpu), "all": podium_cpu},
        "hand_train_cpu_s": {"median": statistics.median(hand_cpu), "all": hand_cpu},
        "ratio_cpu_time": statistics.median(podium_cpu) / statistics.median(hand_cpu),
        "minor_page_faults_per_step": {
            name: statistics.median(run["train_minor_faults"] for run in runs) / steps
            for name, runs in (
                ("podium", podium_runs),
                ("hand", hand_runs),
                (HAND_ZERO_EARLY, early_runs),
            )
        },
        HAND_ZERO_EARLY: {
            "train_s": {"median": statistics.median(early_s), "all": early_s},
            "podium_ratio": statistics.median(podium_s) / statistics.median(early_s),
            "hand_ratio": statistics.median(hand_s) / statistics.median(early_s),
            "what": "the hand loop with zero_grad(set_to_none=True) just before backward instead "
            "of after the step: gradients live through the forward (more peak memory), "
            "glibc reuses their blocks",
        },
        "goal": GOAL,
        "ok": ratio <= GOAL and same_batches,
        "check_run_epoch_loss": {
            "podium": check_podium["epoch_loss"],
            "hand": check_hand["epoch_loss"],
            "note": "same model, batches, loss: equal up to Catalyst's no weight decay on biases",
        },
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
        "note": "with a load average above the core count the machine was shared: "
        "re-run on an idle machine",
    }
    if profiled is not None:
        result["profile"] = profiled
    pairs = [h / p for p, h in zip(podium_s, hand_s)]  # runs interleaved in pairs
    result["speedup_of_pairs"] = {
        "median": statistics.median(pairs),
        "min": min(pairs),
        "max": max(pairs),
        "what": "hand-loop time / podium time of each interleaved pair",
    }
    if options.fast:
        result["fast"] = {"settings": overrides[2:], "goal": FAST_GOAL}
        result["ratio"] = result["speedup_of_pairs"]["median"]
        result["goal"], result["ok"] = FAST_GOAL, result["ratio"] >= FAST_GOAL and same_batches
    os.makedirs(os.path.dirname(options.out), exist_ok=True)
    with open(options.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    if not same_batches:
        print(
            "  warning: podium and the hand loop saw different batches (see same_batches)",
            file=sys.stderr,
        )
    if options.fast:
        spread = result["speedup_of_pairs"]
        print(f"train_fast {spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})")
    else:
        print(f"overhead {ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
