"""Resume a run where it stopped; warm-start a run from another run's checkpoint.

Resume (`catalyst-dl run --config x.yml --resume RUN_DIR | CHECKPOINT`, or `--autoresume last`):
Catalyst 21.12 restores weights, optimizer, scheduler and the global counters into the *first*
stage and then runs every stage from its first epoch (it loads stage 2's optimizer into stage 1).
`PodiumRunner` instead reads the full checkpoint (`last_full.pth`) itself, through `Resumption`:
- stages before the checkpoint's stage are skipped; when that stage had ended (its last epoch,
  or early stopping), the run goes on with the next stage from epoch 1, with the weights the
  stage ended with (its CheckpointCallback's `load_on_stage_end`, e.g. `best`, is replayed);
- otherwise the stage is built as usual and, at its first epoch, gets back model, criterion,
  optimizer, scheduler, counters (stage epoch included), callback state, frozen parameters
  and RNG state (`podium.callbacks.checkpoint`), then goes on with the next epoch.
Catalyst re-seeds torch/numpy/random at every epoch and loader start from (seed, rank, global
epoch) and podium seeds augmentations the same way, so with the global epoch restored the
resumed epochs draw the same random numbers as an uninterrupted run.

Warm start (`init_from:` at the top level for the first stage, or in a stage for that stage):
the model weights of a checkpoint, with `optimizer: true` also the optimizer's state (moments,
step counts) under the stage's own hyper-parameters (lr, weight decay: the config's).

Every checkpoint is read with `weights_only=True`; a missing, truncated or foreign file is a
`PodiumError` naming it.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from catalyst.callbacks.checkpoint import CheckpointCallback as _CatalystCheckpointCallback

from podium.callbacks.checkpoint import (
    RESUME_KEY,
    CheckpointCallback,
    load_callback_state,
    set_frozen_parameters,
    set_rng_state,
)
from podium.checkpoints import load_model_weights, read_checkpoint
from podium.checkpoints import mismatch as _mismatch, shapes as _shapes, unwrap as _bare
from podium.errors import PodiumError, check_keys

__all__ = [
    "Resumption",
    "ResumePoint",
    "InitFrom",
    "find_resume_checkpoint",
    "read_checkpoint",
    "plan_resume",
    "load_model_weights",
    "parse_init_from",
    "check_init_from",
    "warm_start",
    "resumable_checkpoints",
]

RESUME_FILE = "last_full.pth"
# param-group settings that tell torch optimizers apart (Adam/AdamW share theirs: compatible)
_ALGORITHM_SETTINGS = {
    "betas",
    "momentum",
    "dampening",
    "rho",
    "alpha",
    "lr_decay",
    "lambd",
    "etas",
    "step_sizes",
    "momentum_decay",
    "initial_accumulator_value",
}


@dataclass
class ResumePoint:
    """Where a resumed run goes on: `stages` still to run, epochs done in the first of them."""

    path: str
    stages: Sequence[str]
    stage_epoch: int  # > 0: restore the first stage at this epoch; 0: the stage starts afresh
    counters: Dict[str, int]  # global epoch / batch / sample steps when that stage started
    run_key: Optional[str]
    saved_stage: str
    saved_epoch: int
    shapes: Dict[str, tuple]  # of the saved model weights, checked before training starts


@dataclass
class InitFrom:
    path: str
    optimizer: bool = False
    strict: bool = True


def find_resume_checkpoint(value) -> Path:
    """A run directory (→ checkpoints/last_full.pth), its checkpoints folder, or a file."""
    path = Path(value)
    for candidate in (path / "checkpoints" / RESUME_FILE, path / RESUME_FILE):
        if path.is_dir() and candidate.is_file():
            return candidate
    if path.is_dir():
        raise PodiumError(
            f"--resume {value}: no checkpoints/{RESUME_FILE} in this folder (a run that has "
            f"not finished an epoch yet has nothing to resume; --autoresume last starts it anew)"
        )
    if not path.is_file():
        raise PodiumError(f"--resume {value}: no such run directory or checkpoint file")
    return path


def plan_resume(
    checkpoint: Mapping[str, Any], path, stages: Sequence[str], stage_lengths: Mapping[str, int]
) -> ResumePoint:
    """Which stages still run, and from which epoch, after `checkpoint`."""
    where = f"--resume {path}"
    if "optimizer_state_dict" not in checkpoint and not any(
        key.startswith("optimizer_") for key in checkpoint
    ):
        raise PodiumError(
            f"{where}: a model-only checkpoint; resuming needs a full one (last_full.pth, "
            f"best_full.pth). To start a new run from these weights use `init_from:`"
        )
    stage = checkpoint.get("stage_key")
    if stage not in stages:
        raise PodiumError(
            f"{where}: the checkpoint is from stage {stage!r}, which this config does not "
            f"have (stages: {', '.join(stages)})"
        )
    epoch = int(checkpoint["stage_epoch_step"])
    state = checkpoint.get(RESUME_KEY) or {}
    finished = bool(state.get("early_stop")) or epoch >= int(stage_lengths[stage])
    index = list(stages).index(stage)
    globals_ = {
        k: int(checkpoint[k])
        for k in ("global_epoch_step", "global_batch_step", "global_sample_step")
    }
    shapes = _shapes(checkpoint["model_state_dict"])
    if finished:
        return ResumePoint(
            str(path),
            list(stages)[index + 1 :],
            0,
            globals_,
            checkpoint.get("run_key"),
            stage,
            epoch,
            shapes,
        )
    stage_steps = {
        "global_epoch_step": epoch,
        "global_batch_step": int(checkpoint.get("stage_batch_step", 0)),
        "global_sample_step": int(checkpoint.get("stage_sample_step", 0)),
    }
    at_stage_start = {k: v - stage_steps[k] for k, v in globals_.items()}
    return ResumePoint(
        str(path),
        list(stages)[index:],
        epoch,
        at_stage_start,
        checkpoint.get("run_key"),
        stage,
        epoch,
        shapes,
    )


def _stage_end_source(mapping, folder: Path) -> Optional[Path]:
    """The file Catalyst's `load_on_stage_end` took the model from (None: the last weights)."""
    if isinstance(mapping, Mapping):
        mapping = mapping.get("model")
    if not mapping or mapping in ("last", "last_full"):
        return None
    if mapping in ("best", "best_full"):
        return folder / f"{mapping}.pth"
    return Path(mapping)


def parse_init_from(value, where: str) -> InitFrom:
    """`init_from: PATH` or `{path: PATH, optimizer: bool, strict: bool}`; a run directory
    stands for its checkpoints/best.pth."""
    if isinstance(value, (str, Path)):
        spec = InitFrom(str(value))
    elif isinstance(value, Mapping):
        check_keys(list(value), ["path", "optimizer", "strict"], where)
        if "path" not in value:
            raise PodiumError(f"{where} needs `path:` (a checkpoint file or a run directory)")
        for key in ("optimizer", "strict"):
            if key in value and not isinstance(value[key], bool):
                raise PodiumError(f"{where}/{key} must be true or false, got {value[key]!r}")
        spec = InitFrom(
            str(value["path"]), bool(value.get("optimizer", False)), bool(value.get("strict", True))
        )
        if spec.optimizer and not spec.strict:
            raise PodiumError(
                f"{where}: optimizer: true needs strict: true (the optimizer "
                f"state only fits the model it was saved with)"
            )
    else:
        raise PodiumError(
            f"{where} must be a checkpoint path or {{path: ..., optimizer: true|false}}, "
            f"got {type(value).__name__}"
        )
    path = Path(spec.path)
    if path.is_dir():
        path = path / "checkpoints" / "best.pth"
    if not path.is_file():
        raise PodiumError(f"{where}: checkpoint {path} does not exist")
    spec.path = str(path)
    return spec


def _with_optimizer(spec: InitFrom, where: str):
    """(path, checkpoint) holding the optimizer state: the file itself, or its `_full` twin
    (CheckpointCallback writes best.pth without it and best_full.pth with it)."""
    checkpoint = read_checkpoint(spec.path, f"{where}:", bare_ok=True)
    if not spec.optimizer or "optimizer_state_dict" in checkpoint:
        return spec.path, checkpoint
    path = Path(spec.path)
    twin = path.with_name(f"{path.stem}_full{path.suffix}")
    if not path.stem.endswith("_full") and twin.is_file():
        return str(twin), read_checkpoint(twin, f"{where}:")
    raise PodiumError(
        f"{where}: {path} holds no optimizer state (optimizer: true needs a full checkpoint, "
        f"e.g. best_full.pth or last_full.pth)"
    )


def check_init_from(spec: InitFrom, model, where: str) -> None:
    """Fail now, before anything is written, if the warm start cannot work."""
    path, checkpoint = _with_optimizer(spec, where)
    own = _bare(model).state_dict()
    problem = _mismatch(_shapes(own), _shapes(checkpoint["model_state_dict"]))
    if problem and spec.strict:
        raise PodiumError(
            f"{where}: checkpoint {path} does not fit the model {type(_bare(model)).__name__}: "
            f"{problem} (strict: false loads the keys that fit)"
        )


def warm_start(runner, spec: InitFrom, where: str) -> None:
    """Weights (and, with `optimizer: true`, optimizer state) into the stage just built."""
    path, checkpoint = _with_optimizer(spec, where)
    skipped = load_model_weights(
        runner.model, checkpoint["model_state_dict"], path, strict=spec.strict
    )
    message = f"=> {where}: model weights from {path}"
    if skipped:
        message += f" (not loaded: {skipped})"
    if spec.optimizer:
        _load_optimizer_state(runner.optimizer, checkpoint["optimizer_state_dict"], path, where)
        message += ", optimizer state too"
    if runner.engine.is_master_process:
        print(message)


def _load_optimizer_state(optimizer, state: Mapping[str, Any], path, where: str) -> None:
    """The saved moments and step counts; lr, weight decay etc. stay the config's."""
    if optimizer is None or isinstance(optimizer, Mapping):
        raise PodiumError(f"{where}: optimizer: true needs the stage to have one optimizer")
    own = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    saved_groups = state.get("param_groups") or [{}]
    differ = (set(saved_groups[0]) ^ set(own[0])) & _ALGORITHM_SETTINGS
    if differ:
        raise PodiumError(
            f"{where}: the optimizer state in {path} is from another kind of optimizer "
            f"(settings {', '.join(sorted(differ))} are in only one of them)"
        )
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as error:
        raise PodiumError(
            f"{where}: the optimizer state in {path} does not fit the stage's optimizer: "
            f"{str(error).splitlines()[0]}"
        ) from None
    for group, settings in zip(optimizer.param_groups, own):
        group.update(settings)


def resumable_checkpoints(callbacks, params: Mapping[str, Any]):
    """A stage's callbacks with podium's CheckpointCallback (resumable) in place of Catalyst's;
    `params`: the stage's `callbacks:` block."""
    for name, callback in callbacks.items():
        if type(callback) is _CatalystCheckpointCallback:
            kwargs = {"logdir": callback.logdir}
            if name in (params or {}):
                kwargs = {k: v for k, v in params[name].items() if k != "_target_"}
            callbacks[name] = CheckpointCallback(**kwargs)
    return callbacks


class Resumption:
    """Resume and warm start of one run: where it goes on (`point`, None for a fresh run), the
    warm starts of the stages that start afresh (`warm_starts`) and whether the stage resumed
    mid-way still waits for its state (`pending`: from its start to its first epoch).

    Built from the config and `args/resume` (set by `--resume`, or by `--autoresume` when the
    file exists); the runner calls `check` once its model is built, and the `on_*` methods from
    its hooks of the same name."""

    def __init__(self, config: Mapping[str, Any], resume, stage_lengths: Mapping[str, int]):
        self.point: Optional[ResumePoint] = None
        self.pending = False
        stages = list(config["stages"])
        if resume is not None:
            path = find_resume_checkpoint(resume)
            checkpoint = read_checkpoint(path, "--resume checkpoint")
            self.point = plan_resume(checkpoint, path, stages, stage_lengths)
        self.warm_starts = self._warm_starts(config, self.stages(stages))

    def stages(self, stages: Sequence[str]) -> list:
        """The stages this run trains: when resuming, those not finished yet."""
        return list(self.point.stages) if self.point is not None else list(stages)

    def _warm_starts(self, config, stages) -> Dict[str, tuple]:
        """{stage: (InitFrom, where)} for the stages that start afresh in this run."""
        stage_config = config["stages"]
        first = next(iter(stage_config))
        specs = {}
        if config.get("init_from") is not None:
            if stage_config[first].get("init_from") is not None:
                raise PodiumError(
                    f"init_from is given at the top level and in stages/{first}: the top-level "
                    f"one is for the first stage; keep one of them"
                )
            specs[first] = (config["init_from"], "init_from")
        for stage, params in stage_config.items():
            if params.get("init_from") is not None:
                specs[stage] = (params["init_from"], f"stages/{stage}/init_from")
        point = self.point
        resumed = point.stages[0] if point is not None and point.stage_epoch > 0 else None
        return {
            stage: (parse_init_from(value, where), where)
            for stage, (value, where) in specs.items()
            if stage in stages and stage != resumed
        }

    def check(self, model) -> None:
        """The resume checkpoint and every `init_from` of this run against the built model:
        a wrong file fails now, before anything is written or trained."""
        point = self.point
        if point is not None and point.stages:
            problem = _mismatch(_shapes(_bare(model).state_dict()), point.shapes)
            if problem:
                raise PodiumError(
                    f"--resume {point.path} does not fit the config's model "
                    f"{type(_bare(model)).__name__}: {problem}"
                )
        for spec, where in self.warm_starts.values():
            check_init_from(spec, model, where)

    def on_experiment_start(self, runner) -> None:
        """The run's key and global counters as they were when the first stage to run began."""
        point = self.point
        if point is None:
            return
        runner.run_key = point.run_key or runner.run_key  # the same run: history goes on
        for key, value in point.counters.items():
            setattr(runner, key, value)
        if runner.engine.is_master_process:
            if point.stage_epoch:
                where = f"stage {point.stages[0]} from epoch {point.stage_epoch + 1}"
            elif point.stages:
                where = f"stage {point.stages[0]} (stage {point.saved_stage} had ended)"
            else:
                where = "nothing: the run had finished"
            print(
                f"=> resuming {point.path} (stage {point.saved_stage}, epoch "
                f"{point.saved_epoch}): running {where}"
            )

    def on_stage_start(self, runner) -> None:
        """The stage just built: resumed mid-way (restored at its first epoch start), after an
        ended stage (its end replayed), or warm-started."""
        point = self.point
        if point is not None and point.stages and runner.stage_key == point.stages[0]:
            if point.stage_epoch > 0:
                self.pending = True
            else:
                self.replay_stage_end(runner.model, self._checkpoint())
        if not self.pending and runner.stage_key in self.warm_starts:
            warm_start(runner, *self.warm_starts[runner.stage_key])

    def on_epoch_start(self, runner) -> None:
        """A stage resumed mid-way gets its state back: after the callbacks' own
        on_stage_start (which reset their counters, build schedulers), before the epoch."""
        if self.pending:
            self.restore_stage(runner, self._checkpoint())
            self.pending = False

    def _checkpoint(self) -> Dict[str, Any]:
        return read_checkpoint(self.point.path, "--resume checkpoint")

    def restore_stage(self, runner, checkpoint: Mapping[str, Any]) -> None:
        """Everything a mid-stage checkpoint holds, back into the runner's freshly built stage."""
        try:
            runner.engine.unpack_checkpoint(
                checkpoint,
                model=runner.model,
                criterion=runner.criterion,
                optimizer=runner.optimizer,
                scheduler=runner.scheduler,
            )
        except (KeyError, RuntimeError, ValueError) as error:
            raise PodiumError(
                f"--resume {self.point.path}: the checkpoint does not fit stage "
                f"{runner.stage_key} of this config (was the model, optimizer or scheduler "
                f"changed?): {str(error).splitlines()[0]}"
            ) from None
        for key in (
            "global_epoch_step",
            "global_batch_step",
            "global_sample_step",
            "stage_epoch_step",
            "stage_batch_step",
            "stage_sample_step",
        ):
            setattr(runner, key, int(checkpoint[key]))
        state = checkpoint.get(RESUME_KEY) or {}
        for name, callback_state in (state.get("callbacks") or {}).items():
            callback = (runner.callbacks or {}).get(name)
            if callback is not None:
                load_callback_state(callback, callback_state)
        if "frozen" in state:
            set_frozen_parameters(runner.model, state["frozen"])
        if "rng" in state:
            set_rng_state(state["rng"])

    def replay_stage_end(self, model, checkpoint: Mapping[str, Any]) -> None:
        """The weights the checkpoint's stage ended with, into the model of the next stage."""
        point = self.point
        state = checkpoint.get(RESUME_KEY) or {}
        source = _stage_end_source(state.get("load_on_stage_end"), Path(point.path).parent)
        weights = checkpoint["model_state_dict"]
        if source is not None:
            weights = read_checkpoint(source, f"load_on_stage_end of stage {point.saved_stage}")
            weights = weights["model_state_dict"]
        load_model_weights(model, weights, source or point.path)
