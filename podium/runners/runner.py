"""PodiumRunner: Catalyst's SupervisedConfigRunner with podium's blocks, for every task
(`SegmentationRunner` is the same class under its first name). Its hooks delegate to:
- `data:` (top level, overridable per stage) → the stage's datasets: `runners.data.StageData`;
- `stages/<s>/freeze_encoder: true|false` → `callbacks.freeze.stage_freezing` (FreezeCallback);
- reproducible augmentation (same `args/seed`, same batches) → `runners.seeding`;
- loggers without `logdir:` write into `args/logdir` → `runners.log_guard.fill_logdirs`;
- `--resume` / `--autoresume` / `init_from:` → `runners.resume.Resumption`;
- checks before anything is written → `runners.config_checks`, `runners.cross_checks`.
DDP (`engine: {_target_: podium.runners.engines.DDPEngine}`; Catalyst's DDP engine runs as one):
under `catalyst-dl run` the workers are spawned once and each runs every stage, as under
torchrun, so weights, counters and open logs carry over; only rank 0 has loggers.
Everything else — loaders, criterion dict, callbacks, loggers, engine — is Catalyst's own.
"""

from collections import OrderedDict
from typing import Any, Dict

from catalyst.engines.torch import DistributedDataParallelEngine
from catalyst.registry import REGISTRY
from catalyst.runners.config import SupervisedConfigRunner
from torch import nn

from podium import interrupts
from podium.callbacks.freeze import stage_freezing
from podium.errors import PodiumError
from podium.runners import interruption
from podium.runners.config_checks import check_config
from podium.runners.cross_checks import (
    check_metric_keys,
    check_references,
    explain_missing_batch_metric,
)
from podium.runners.data import StageData, check_ddp_batch_sizes, world_size
from podium.runners.engines import DDPEngine, torchrun_world_size
from podium.runners.precision import PrecisionForward
from podium.runners.log_guard import fill_logdirs, guard_loggers
from podium.runners.resume import Resumption, resumable_checkpoints
from podium.runners.seeding import AugmentationSeeds
from podium.targets import call_target, check_call_params

__all__ = ["PodiumRunner", "SegmentationRunner", "check_ddp_batch_sizes"]


def _run_rank(local_rank: int, world_size: int, runner: "PodiumRunner") -> None:
    """A spawned DDP worker: the whole run, with an engine that joins the launcher's group."""
    runner._engine = None
    runner.run()


class PodiumRunner(PrecisionForward, SupervisedConfigRunner):
    """Supervised runner for `image` → `logits` with `mask` targets (keys are configurable)."""

    def __init__(
        self,
        config: Dict,
        input_key: str = "image",
        output_key: str = "logits",
        target_key: str = "mask",
        loss_key: str = "loss",
    ):
        check_config(config)
        super().__init__(
            config=config,
            input_key=input_key,
            output_key=output_key,
            target_key=target_key,
            loss_key=loss_key,
        )
        lengths = {stage: self.get_stage_len(stage) for stage in self._stage_config}
        self.resumption = Resumption(self._config, self._resume, lengths)
        self._resume = None  # Catalyst's CheckpointCallback would load it into stage 1
        # Build what podium's blocks describe now, before Catalyst writes anything into the
        # logdir: a wrong encoder, data folder or key fails in seconds, not at stage start.
        self.data = StageData(self._config, self.stages)
        self.augmentation_seeds = AugmentationSeeds(self.seed)
        self.model = call_target(self._config.get("model"), "model")
        self.resumption.check(self.model)  # --resume, init_from: a wrong checkpoint fails now
        for stage in self.stages:  # model ↔ data, callbacks ↔ loaders / criteria / schedulers
            check_references(self._config, stage, self.data.get(stage))
        # Under torchrun the DDP engine joins the process group when built: from here on
        # Catalyst knows the rank, so only rank 0 dumps the config and code into the logdir.
        self._engine = None
        engine = self.get_engine()
        if torchrun_world_size() > 1 and not isinstance(engine, DDPEngine):
            raise PodiumError(
                f"started as one of {torchrun_world_size()} processes (torchrun) but engine is "
                f"{type(engine).__name__}: every process would train alone and write the same run "
                f"directory; use engine: {{_target_: podium.runners.engines.DDPEngine}}"
            )

    def get_engine(self):
        """The config's engine, built once per process (Catalyst's DDP engine: as a DDPEngine)."""
        if self._engine is None:
            params = self._config.get("engine")
            if params and "_target_" in params:  # a misspelled key: one line with "did you mean"
                factory = REGISTRY.get(params["_target_"])
                check_call_params(
                    factory, {k: v for k, v in params.items() if k != "_target_"}, "engine"
                )
            engine = super().get_engine()
            if type(engine) is DistributedDataParallelEngine:
                engine = DDPEngine.from_catalyst(engine)
            self._engine = engine
        return self._engine

    def run(self) -> "PodiumRunner":
        """With a DDPEngine outside torchrun: spawn the workers, each runs the whole experiment."""
        engine = self.get_engine()
        if isinstance(engine, DDPEngine) and not engine.joined:
            try:
                engine.spawn(_run_rank, self)
            except (
                interrupts.Interrupted
            ) as stop:  # rank 0 could not say where: the checkpoints can
                found = interrupts.interrupted(stop)
                if found.then:
                    raise
                raise interruption.explain(self, found, where="in a DDP run") from None
            return self
        return super().run()

    @property
    def stages(self):
        """The config's stages; when resuming, those not finished yet."""
        return (
            self.resumption.stages(super().stages)
            if hasattr(self, "resumption")
            else super().stages
        )

    @property
    def resume_pending(self) -> bool:
        """From the start of a stage resumed mid-way to its first epoch (its state comes back
        then)."""
        return hasattr(self, "resumption") and self.resumption.pending

    def get_datasets(self, stage: str) -> "OrderedDict[str, Any]":
        """Train/valid datasets from the `data:` block (Catalyst's loaders/datasets still work)."""
        datasets = self.data.get(stage)
        return datasets if datasets is not None else super().get_datasets(stage)

    def get_samplers(self, stage: str) -> "OrderedDict[str, Any]":
        """Under DDP: valid/infer loaders shard without padding, train shuffles by args/seed."""
        samplers = super().get_samplers(stage)
        if world_size() == 1:
            return samplers
        return self.data.ddp_samplers(samplers, self.get_datasets(stage), stage, self.seed)

    def get_loaders(self, stage: str) -> "OrderedDict[str, Any]":
        """Catalyst's loaders, checked; loaders with workers seed their augmentations."""
        self.data.check_loaders_params(stage)
        loaders = super().get_loaders(stage)
        self.data.check_loaders(loaders, stage)
        for loader in loaders.values():
            self.augmentation_seeds.prepare(loader)
        return loaders

    def get_callbacks(self, stage: str):
        """Catalyst's, with podium's CheckpointCallback (resumable) in place of Catalyst's."""
        return resumable_checkpoints(
            super().get_callbacks(stage), self._stage_config[stage].get("callbacks")
        )

    def on_experiment_start(self, runner) -> None:
        super().on_experiment_start(runner)
        self.resumption.on_experiment_start(self)
        precision = getattr(self.engine, "precision", None)
        if precision is not None and not precision.is_default and self.engine.is_master_process:
            print(f"=> {precision.describe()}")

    def on_stage_start(self, runner) -> None:
        """Resume / warm start; saves the stage's augmentation pipelines into the run directory."""
        super().on_stage_start(runner)
        self.resumption.on_stage_start(self)
        if self.engine.is_master_process:
            self.data.save_pipelines(self.stage_key, self._logdir)

    def on_epoch_start(self, runner) -> None:
        self.resumption.on_epoch_start(self)  # a stage resumed mid-way: before the epoch
        super().on_epoch_start(runner)

    def on_loader_start(self, runner) -> None:
        """Seeds an in-process loader's augmentations; DDP: sampler epoch, model rewrapped."""
        super().on_loader_start(runner)
        self.augmentation_seeds.on_loader_start(
            self.loader,
            self.engine.rank,
            self.global_epoch_step,
            list(self.loaders).index(self.loader_key),
        )
        self.data.on_loader_start(self.loader, self.global_epoch_step)
        if self.is_train_loader and isinstance(self.engine, DDPEngine):
            # freeze/unfreeze callbacks change what trains after the engine wrapped the model
            self.model = self.engine.rewrap(self.model)

    def on_loader_end(self, runner) -> None:
        """A checkpoint / early-stopping metric_key this loader did not log: one clear line."""
        check_metric_keys(self)
        super().on_loader_end(runner)

    def _run_event(self, event: str) -> None:
        """An epoch's end (checkpoints, then its log rows) is not cut by Ctrl-C / SIGTERM:
        the signal waits for it, so a checkpoint never lacks its epoch's logs."""
        if event != "on_epoch_end":
            super()._run_event(event)
            return
        with interrupts.deferred(
            f"the end of epoch {self.stage_epoch_step} (checkpoints and logs)"
        ):
            super()._run_event(event)

    def on_exception(self, runner) -> None:
        """A callback reading a metric nobody logged: one line naming it, not a KeyError.
        Ctrl-C / SIGTERM: where the run stopped, its last checkpoint and how to go on."""
        explain_missing_batch_metric(self, self.exception)
        stop = interrupts.interrupted(self.exception)
        if stop is not None:
            raise interruption.explain(self, stop) from None
        super().on_exception(runner)

    def on_batch_start(self, runner) -> None:
        """Counts this process's samples for the DDP engine's sample-weighted metric reduction."""
        super().on_batch_start(runner)
        if isinstance(self.engine, DDPEngine):
            self.engine.count_samples(self.batch_size)

    def on_stage_end(self, runner) -> None:
        """Under DDPEngine the workers live for the whole run: logs and process group stay open.

        (Catalyst's DDP path closes every logger and destroys the group at each stage end,
        because its workers exit there.)
        """
        if not isinstance(self.engine, DDPEngine):
            super().on_stage_end(runner)
            return
        self.engine.deinit_components(runner=self)
        self.close_log(scope="stage")
        self.flush_log()
        self.engine.cleanup_process()

    def on_experiment_end(self, runner) -> None:
        super().on_experiment_end(runner)
        if isinstance(self.engine, DDPEngine):
            self.engine.close()

    def get_loggers(self) -> Dict[str, Any]:
        """Catalyst's loggers, with the run's logdir filled in where a logger needs one.

        Under DDP only rank 0 has loggers (none are made, so none write, on the others).
        """
        if self.engine is not None and self.engine.rank > 0:
            return {}
        self._config["loggers"] = fill_logdirs(self._config.get("loggers"), self._logdir)
        loggers = super().get_loggers()
        guard_loggers(loggers)  # a failed log write: one line, not a traceback from the loop
        return loggers

    def get_model(self, stage: str) -> nn.Module:
        """The model (built in __init__, kept across stages), frozen as `freeze_encoder` says.

        Returned without the previous stage's (D)DP wrapper: the engine wraps it again, after
        freezing, so DDP's gradient sync covers exactly the parameters this stage trains.
        """
        return stage_freezing(
            self.model, bool(self._stage_config[stage].get("freeze_encoder", False))
        )


SegmentationRunner = PodiumRunner  # its first name: configs with it keep working
