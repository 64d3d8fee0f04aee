"""`podium cv`: k-fold cross-validation of a training config, with out-of-fold (OOF) predictions.

    podium folds data/nuclei --k 5 --out data/nuclei/folds.csv
    podium cv --config configs/nuclei/unet_resnet18.yml --folds data/nuclei/folds.csv \\
        --out logs/nuclei_cv
    podium cv --config a.yml b.yml --folds folds.csv --only 0,2 --tta d4 \\
        --stages/train/num_epochs=20:int

For each fold k of --folds (or of --only), in order:
1. `catalyst-dl run` in a child process, so all its memory (GPU included) is freed when it
   exits: the configs, then RUN_DIR/configs/cv_fold_<k>.yml (`data: {split_file:
   RUN_DIR/folds.csv, fold: k}`: validation = fold k, training = the other folds),
   --logdir RUN_DIR/fold_<k>, and the Catalyst overrides given here (`--a/b=value:type`);
2. the fold's best checkpoint predicts its validation images (podium predict, in this process;
   TTA from --tta or --predict-config, default none) into RUN_DIR/oof/probabilities (uint8);
3. fold_<k>/cv_done.json (best epoch, metrics) is written, last and atomically, and
   cv_summary.csv is rewritten: one row per finished fold, then mean and std.

Interrupted (Ctrl-C, kill)? Run the same command again: finished folds are kept, the first
unfinished one is deleted and trained again from scratch. A RUN_DIR started with other configs,
overrides, seed, folds or prediction settings is refused: cv.yml holds them. The layout is
described in podium/inference/cv_runs.py; `podium submit --cv RUN_DIR` uses it.
"""

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from podium import interrupts
from podium.cli.lr_find import load_run_config as load_training_config
from podium.cli.overrides import OverridesParser
from podium.datasets import read_split
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference import cv_runs

__all__ = ["register", "run", "read_folds", "parse_only", "run_child"]

# Overrides podium cv sets itself: a user value would silently undo the fold split or the layout.
RESERVED = (
    "args/logdir",
    "args/baselogdir",
    "args/resume",
    "args/autoresume",
    "data/split_file",
    "data/fold",
)
FOLD_KEYS = ("split_file", "fold")
LOCK = ".cv.lock"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
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
        help="training YAML(s), merged in order as catalyst-dl run merges them",
    )
    parser.add_argument(
        "--folds",
        type=Path,
        required=True,
        metavar="CSV",
        help="name,fold CSV (podium folds); rows with fold -1 always train",
    )
    parser.add_argument(
        "--only", metavar="K[,K...]", help="train only these folds, e.g. 0,2 (default: every fold)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="RUN_DIR", help="run directory (default: <args/logdir>_cv)"
    )
    parser.add_argument(
        "--tta", help="TTA of the out-of-fold predictions: none | flip | d2 | d4 | multiscale"
    )
    parser.add_argument(
        "--predict-config",
        type=Path,
        metavar="YAML",
        help="inference YAML whose tta, tiles, batch_size, postprocess, "
        "outputs/submission … the OOF predictions and `podium submit` use (its models, "
        "data and out are set by podium cv)",
    )
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the OOF predictions (and podium submit) use the folds' EMA weights (--ema) or "
        "their trained weights (--no-ema); default: the EMA weights where a checkpoint has them",
    )
    parser.add_argument("--seed", type=int, help="catalyst-dl run --seed (default: Catalyst's, 42)")
    parser.set_defaults(func=run, overrides=[])


def run(args) -> int:
    _check_overrides(args.overrides)
    folds_table = read_folds(args.folds)
    fold_ids = sorted(int(f) for f in folds_table["fold"].unique() if f >= 0)
    selected = parse_only(args.only, fold_ids, args.folds)
    config = _training_config(args.configs, args.overrides)
    stages_with_fold_keys = _check_data_block(config, args.configs)
    run_dir = args.out if args.out is not None else _default_run_dir(config, args.configs)
    ema = getattr(args, "ema", None)  # callers that build args without --ema
    predict = _predict_settings(args.predict_config, args.tta, run_dir, ema)
    settings = {
        "configs": _config_names(args.configs),
        "sources": [str(c) for c in args.configs],
        "overrides": list(args.overrides),
        "seed": args.seed,
        "folds": cv_runs.FOLDS,
        "fold_ids": fold_ids,
        "predict": predict,
    }
    texts = [Path(c).read_text() for c in args.configs]
    _refuse_foreign_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fold = None
    with _exclusive(run_dir):
        try:
            _prepare(run_dir, settings, texts, Path(args.folds).read_bytes())
            for position, fold in enumerate(selected, start=1):
                path = cv_runs.fold_dir(run_dir, fold)
                if (path / cv_runs.DONE).is_file():
                    print(
                        f"podium cv: fold {fold} is finished ({path / cv_runs.DONE}); skipped",
                        flush=True,
                    )
                    continue
                _run_fold(run_dir, fold, position, len(selected), settings, stages_with_fold_keys)
                cv_runs.write_summary(run_dir)
        except interrupts.Interrupted as stop:
            finished = [path.name for path in cv_runs.finished_folds(run_dir)]
            kept = (
                f"finished folds are kept ({', '.join(finished)})"
                if finished
                else "no fold had finished"
            )
            return interrupts.report(
                "podium cv",
                stop,
                f"in fold {fold}" if fold is not None else "before the first fold",
                f"{kept} in {run_dir}; continue with the same command, "
                f"which trains the unfinished folds: {interrupts.command_line()}",
            )
    summary = cv_runs.write_summary(run_dir)
    print(_report(run_dir, summary))
    return 0


# ---------------------------------------------------------------------------- inputs
def read_folds(path):
    """The folds table (podium.datasets.split.read_split checks it); it must have a fold column."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(
            f"folds file {path} does not exist; expected a CSV with columns "
            "name,fold (podium folds writes one)"
        )
    table = read_split(str(path.parent), path.name)
    if "fold" not in table.columns:
        raise PodiumError(
            f"folds file {path} has no fold column "
            f"(columns: {', '.join(map(str, table.columns))}); "
            "expected name,fold as `podium folds` writes it"
        )
    if not (table["fold"] >= 0).any():
        raise PodiumError(
            f"folds file {path} has no fold >= 0; "
            "expected folds 0..k-1 (-1 marks rows that always train)"
        )
    return table


def parse_only(text: Optional[str], fold_ids: Sequence[int], folds_path) -> List[int]:
    """--only "0,2" → [0, 2]: each must be a fold of the file; None → every fold."""
    if text is None:
        return list(fold_ids)
    selected = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            fold = int(part)
        except ValueError:
            raise PodiumError(
                f'--only "{text}" is not a list of fold numbers; expected e.g. --only 0,2'
            ) from None
        if fold not in fold_ids:
            raise PodiumError(
                f"--only names fold {fold}, which is not in {folds_path}; its folds are "
                f"{', '.join(map(str, fold_ids))}"
            )
        if fold not in selected:
            selected.append(fold)
    return sorted(selected)


def _check_overrides(overrides: Sequence[str]) -> None:
    for override in overrides:
        key = override.lstrip("-").split("=", 1)[0].strip("/")
        parts = key.split("/")
        reserved = key in RESERVED or (
            len(parts) == 4
            and parts[0] == "stages"
            and parts[2] == "data"
            and parts[3] in FOLD_KEYS
        )
        if reserved:
            raise PodiumError(
                f"override {override} is set by podium cv itself (the fold split goes to "
                "data/split_file + data/fold, each fold's logdir to RUN_DIR/fold_<k>); "
                "use --folds, --only and --out"
            )


def _training_config(configs: Sequence[str], overrides: Sequence[str]) -> Dict[str, Any]:
    """The merged config, as catalyst-dl run will build it (checked before any fold starts)."""
    try:
        return load_training_config(configs, overrides)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = (
            f"{mark.name}, line {mark.line + 1}"
            if mark is not None
            else ", ".join(map(str, configs))
        )
        raise PodiumError(
            f"config {where}: invalid YAML: {getattr(error, 'problem', None) or error}"
        ) from None


def _check_data_block(config: Dict[str, Any], configs) -> List[str]:
    """Stages whose own data block sets split_file / fold (the fold override must reach them
    too)."""
    stages = config.get("stages") or {}
    blocks = {"data": config.get("data") or {}}
    blocks.update(
        {f"stages/{name}/data": (stage or {}).get("data") or {} for name, stage in stages.items()}
    )
    for where, block in blocks.items():
        if "_target_" in block:
            raise PodiumError(
                f"{where}/_target_ is {block['_target_']}: "
                "podium cv folds the segmentation data block (split_file + "
                "fold) and predicts it with podium predict; expected no _target_"
            )
    for name, stage in stages.items():
        if "datasets" in ((stage or {}).get("loaders") or {}):
            raise PodiumError(
                f"stages/{name}/loaders/datasets builds Catalyst's own datasets, "
                "which podium cv cannot fold; expected the data: block (root, split_file, fold)"
            )
    if not any(blocks.values()):
        raise PodiumError(
            f"{', '.join(map(str, configs))} has no data: "
            "block; podium cv needs one (data: {root: DIR})"
        )
    return [
        name
        for name, stage in stages.items()
        if set(FOLD_KEYS) & set(((stage or {}).get("data") or {}))
    ]


def _default_run_dir(config: Dict[str, Any], configs) -> Path:
    logdir = (config.get("args") or {}).get("logdir")
    if not logdir:
        raise PodiumError(
            f"{', '.join(map(str, configs))} sets no args/logdir; "
            "give the run directory with --out RUN_DIR"
        )
    return Path(f"{str(logdir).rstrip('/')}_cv")


def _predict_settings(
    path: Optional[Path], tta: Optional[str], run_dir: Path, ema=None
) -> Dict[str, Any]:
    """The inference settings of the OOF maps (and of podium submit): all but models, data and
    out."""
    from podium.inference.config import load_inference_config, resolve_inference_config

    settings = load_inference_config(path) if path is not None else {}
    for key in ("models", "data", "out"):
        settings.pop(key, None)
    if tta is not None:
        settings["tta"] = tta
    if ema is not None:
        settings["ema"] = ema
    settings.setdefault("tta", "none")
    # checked now, not after the first fold has trained (podium submit sets the submission path)
    trial = deepcopy(settings)
    submission = (
        (trial.get("outputs") or {}).get("submission")
        if isinstance(trial.get("outputs"), dict)
        else None
    )
    if isinstance(submission, dict):
        submission.setdefault("path", "submission.csv")
    trial.update(models=[{"run": str(cv_runs.fold_dir(run_dir, 0))}], out=str(run_dir / "oof"))
    resolve_inference_config(trial)
    return settings


def _config_names(configs: Sequence[str]) -> List[str]:
    """File names of the config copies in RUN_DIR/configs/ (index-prefixed if two share a name)."""
    names = [Path(c).name for c in configs]
    if len(set(names)) < len(names):
        names = [f"{i}_{name}" for i, name in enumerate(names)]
    return names


# ---------------------------------------------------------------------------- the run directory
def _refuse_foreign_dir(run_dir: Path) -> None:
    if run_dir.is_dir() and not (run_dir / cv_runs.SETTINGS).is_file():
        ours = {LOCK, "configs", cv_runs.FOLDS}  # what a start interrupted before cv.yml leaves
        if any(p.name not in ours for p in run_dir.iterdir()):
            raise PodiumError(
                f"{run_dir} exists and is not a podium cv run directory (no {cv_runs.SETTINGS}); "
                f"expected a new or empty folder, or one podium cv wrote"
            )


def _prepare(run_dir: Path, settings: Dict[str, Any], texts: List[str], folds: bytes) -> None:
    """A new run: copy configs + folds, write cv.yml. An existing one: the same settings, or an
    error."""
    path = run_dir / cv_runs.SETTINGS
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        problem = _difference(run_dir, saved, settings, texts, folds)
        if problem is not None:
            raise PodiumError(
                f"{run_dir} holds a cross-validation with other settings ({problem}); "
                "folds of different settings are not mixed: rerun with the same configs, "
                "overrides, --seed, --folds and prediction settings, or give another --out"
            )
        return
    (run_dir / "configs").mkdir(parents=True, exist_ok=True)
    for name, text in zip(settings["configs"], texts):
        (run_dir / "configs" / name).write_text(text)
    _write_bytes(run_dir / cv_runs.FOLDS, folds)
    header = "# podium cv settings: rerun the same command to resume at the first unfinished fold\n"
    _write_bytes(path, (header + yaml.safe_dump(settings, sort_keys=False)).encode())


def _difference(
    run_dir: Path, saved: Dict[str, Any], settings: Dict[str, Any], texts: List[str], folds: bytes
) -> Optional[str]:
    if saved.get("configs") != settings["configs"]:
        return f"configs {saved.get('configs')} before, {settings['configs']} now"
    for name, source, text in zip(settings["configs"], settings["sources"], texts):
        copy = run_dir / "configs" / name
        if not copy.is_file() or copy.read_text() != text:
            return f"{source} differs from its copy {copy}"
    for key in ("overrides", "seed", "predict"):
        if saved.get(key) != settings[key]:
            return f"{key} {saved.get(key)!r} before, {settings[key]!r} now"
    copy = run_dir / cv_runs.FOLDS
    if not copy.is_file() or copy.read_bytes() != folds:
        return f"the folds file differs from {copy}"
    return None


@contextlib.contextmanager
def _exclusive(run_dir: Path):
    """One podium cv per run directory (an advisory lock, released when this process ends)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(run_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PodiumError(
                f"another podium cv is running in {run_dir}; wait for it or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(data))


# ---------------------------------------------------------------------------- one fold
def _run_fold(
    run_dir: Path, fold: int, position: int, count: int, settings: Dict[str, Any], stages: List[str]
) -> None:
    path = cv_runs.fold_dir(run_dir, fold)
    if path.exists():
        print(
            f"podium cv: {path} has no {cv_runs.DONE} (an interrupted fold): deleted, "
            f"fold {fold} trains again",
            flush=True,
        )
        shutil.rmtree(path)
    overlay = _write_fold_config(run_dir, fold, stages)
    configs = [str(run_dir / "configs" / name) for name in settings["configs"]] + [str(overlay)]
    seed = ["--seed", str(settings["seed"])] if settings["seed"] is not None else []
    command = [
        *_catalyst_dl(),
        "run",
        "--config",
        *configs,
        "--logdir",
        str(path),
        *seed,
        *settings["overrides"],
    ]
    print(f"podium cv: fold {fold} ({position}/{count}): {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    status = run_child(command)
    if status != 0:
        raise PodiumError(
            f"fold {fold}: catalyst-dl run failed (exit status {status}, its output is above); "
            f"fix the cause and run the same command again to resume at fold {fold}"
        )
    from podium.inference.checkpoint import load_run_config, run_data_config
    from podium.inference.oof import predict_out_of_fold, validation_names

    trained = time.perf_counter()
    best = cv_runs.best_checkpoint_info(path)
    data = run_data_config(load_run_config(path))
    names = validation_names(data)
    cv_runs.write_fold_names(path, names)
    oof = predict_out_of_fold(run_dir, path, data, settings["predict"])
    metrics = dict(best.pop("metrics"))
    metrics.update(oof)
    done = {
        "fold": fold,
        **best,
        "metrics": metrics,
        "images": len(names),
        "tta": settings["predict"]["tta"],
        "seconds": {
            "train": round(trained - started, 1),
            "predict": round(time.perf_counter() - trained, 1),
        },
        "command": command,
    }
    cv_runs.write_cv_done(path, done)
    key = best["selected_by"]["metric"]
    score = f"{key} {metrics[key]:.4f}, " if key in metrics else ""
    print(
        f"podium cv: fold {fold} done: best epoch {best['best_epoch']} of stage {best['stage']}, "
        f"{score}OOF Dice {oof.get('oof_dice', float('nan')):.4f} on {len(names)} images",
        flush=True,
    )


def _write_fold_config(run_dir: Path, fold: int, stages: List[str]) -> Path:
    """RUN_DIR/configs/cv_fold_<k>.yml: validation = fold k of RUN_DIR/folds.csv (a path absolute to
    the data root)."""
    block = {"split_file": str((run_dir / cv_runs.FOLDS).resolve()), "fold": int(fold)}
    overlay: Dict[str, Any] = {"data": dict(block)}
    if stages:
        overlay["stages"] = {name: {"data": dict(block)} for name in stages}
    path = run_dir / "configs" / f"cv_fold_{fold}.yml"
    text = (
        f"# written by podium cv: fold {fold} validates, the other folds of {cv_runs.FOLDS} train\n"
    )
    _write_bytes(path, (text + yaml.safe_dump(overlay, sort_keys=False)).encode())
    return path


def _catalyst_dl() -> List[str]:
    """catalyst-dl of this interpreter's environment."""
    script = Path(sys.executable).parent / "catalyst-dl"
    if script.is_file():
        return [str(script)]
    found = shutil.which("catalyst-dl")
    return [found] if found else [sys.executable, "-m", "catalyst.dl"]


# ---------------------------------------------------------------------------- child processes
def run_child(command: Sequence[str], stop_timeout: float = 30.0) -> int:
    """Run `command` and return its exit status; if this process is interrupted meanwhile, stop it
    first.

    On Linux the child also gets SIGTERM if this process dies without a word (SIGKILL), so a
    killed `podium cv` never leaves a training process writing into a fold directory.
    """
    # podium cv reports an interruption itself: the child's own line would be a second one
    env = {**os.environ, interrupts.QUIET_ENV: "1"}
    process = subprocess.Popen(list(command), preexec_fn=_parent_death_signal(), env=env)
    try:
        return process.wait()
    except BaseException:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        raise


def _parent_death_signal():
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, int(signal.SIGTERM))


# ---------------------------------------------------------------------------- report
def _report(run_dir: Path, summary: Path) -> str:
    done = [cv_runs.read_cv_done(p) for p in cv_runs.finished_folds(run_dir)]
    if not done:
        return f"podium cv: no finished fold in {run_dir}"
    rows = cv_runs.summary_rows(done)
    mean, std = rows[-2], rows[-1]
    key = done[0].get("selected_by", {}).get("metric")
    parts = []
    for column in [key, "oof_dice", "oof_iou"]:
        if column and mean.get(column) is not None:
            parts.append(f"{column} {mean[column]:.4f} ± {std[column]:.4f}")
    folds = ", ".join(str(d["fold"]) for d in done)
    return (
        f"podium cv: {len(done)} finished fold(s) ({folds}) "
        f"in {run_dir}: {'; '.join(parts)}\nsummary: {summary}"
    )
