"""SegmentationRunner: Catalyst's SupervisedConfigRunner with podium's data and freezing.

What it adds to a Catalyst config:
- `data:` (top level, overridable per stage as `stages/<s>/data`): the keyword arguments of
  `podium.datasets.build_segmentation_datasets` — the train/valid datasets of a stage; with a
  `_target_:` key, of that builder instead (any function returning {loader name: dataset}).
- loggers without a `logdir:` (CSV, TensorBoard, ...) write into the run's `args/logdir`, so
  `--args/logdir=...` on the command line moves every output of the run at once.
- `stages/<s>/freeze_encoder: true|false` (default false): trains the decoder alone while the
  encoder's weights stay fixed (the usual warm-up before unfreezing with a lower LR).
- reproducible augmentation: albumentations keeps its own random generators and ignores the
  global seeds Catalyst sets, so the runner seeds every pipeline per epoch (worker processes
  via `worker_init_fn`, in-process loaders at loader start): the same `args/seed` gives the same
  augmented batches.
- checks of podium's blocks (top-level keys, stage keys, `data`, `model`) with one clear
  error naming the culprit, instead of a traceback from deep inside object creation; at run
  time, the same for a callback reading a metric nobody logs and a logger that cannot write.
- DDP (`engine: {_target_: podium.runners.engines.DDPEngine}`; Catalyst's
  DistributedDataParallelEngine runs as one, with the same settings): under `catalyst-dl run`
  the workers are spawned once and each runs every stage, as under torchrun, so weights,
  counters and open logs carry over from stage to stage. Validation/inference loaders shard
  the data without padding (`ShardSampler`), training loaders use a DistributedSampler seeded
  with `args/seed`; every batch is counted for the engine's sample-weighted metric reduction.
  Only rank 0 has loggers and writes into the run directory.
- resume and warm start (`podium.runners.resume`): `--resume RUN_DIR` / `--autoresume last`
  go on at the stage and epoch where the run stopped; `init_from:` starts from another run's
  checkpoint; checkpoints come from podium's resumable `CheckpointCallback`.
Everything else — loaders, criterion dict, callbacks, loggers, engine — is Catalyst's own.
"""
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch.distributed as dist
from catalyst.engines.torch import DistributedDataParallelEngine
from catalyst.registry import REGISTRY
from catalyst.runners.config import SupervisedConfigRunner
from torch import nn
from torch.utils.data import DistributedSampler

from podium.datasets import (
    build_segmentation_datasets,
    check_data_keys,
    seed_transforms,
    transforms_to_dict,
    worker_init_fn,
)
from podium import interrupts
from podium.errors import PodiumError
from podium.files import write_json
from podium.runners.config_checks import check_config
from podium.runners.cross_checks import check_metric_keys, check_references, explain_missing_batch_metric
from podium.runners import interruption
from podium.runners.engines import DDPEngine, torchrun_world_size
from podium.runners.log_guard import guard_loggers
from podium.runners.resume import ResumeMixin
from podium.runners.samplers import ShardSampler
from podium.targets import accepted_keys, call_target, check_call_params, resolve_target

__all__ = ["SegmentationRunner", "set_encoder_trainable", "check_ddp_batch_sizes"]


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Switch gradients of `model.encoder` on or off (BatchNorm statistics keep updating)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise PodiumError(
            f"freeze_encoder needs a model with an `.encoder` attribute; "
            f"{type(model).__name__} has none"
        )
    for parameter in encoder.parameters():
        parameter.requires_grad_(trainable)


def _bare(model: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _run_rank(local_rank: int, world_size: int, runner: "SegmentationRunner") -> None:
    """A spawned DDP worker: the whole run, with an engine that joins the launcher's group."""
    runner._engine = None
    runner.run()


def check_ddp_batch_sizes(loaders: Mapping[str, Any], stage: str, world_size: int) -> None:
    """A stage's `loaders` block under DDP: Catalyst splits `batch_size` over the processes
    (unless `per_gpu_scaling: true`), so it must divide by the world size."""
    if loaders.get("per_gpu_scaling", False):
        return
    sizes = {"batch_size": loaders.get("batch_size", 1)}
    for name, params in (loaders.get("loaders_params") or {}).items():
        if isinstance(params, Mapping) and "batch_size" in params:
            sizes[f"loaders_params/{name}/batch_size"] = params["batch_size"]
    for key, size in sizes.items():
        if int(size) % world_size:
            raise PodiumError(
                f"stages/{stage}/loaders/{key} is {size}: under DDP it is the global batch, "
                f"split over {world_size} processes, so it must divide by {world_size} "
                f"(or set per_gpu_scaling: true to give the batch of each process)"
            )


def _seed_dataset_transforms(dataset, seed: int) -> None:
    seen = set()
    while dataset is not None and id(dataset) not in seen:  # Subset / wrappers: follow .dataset
        seen.add(id(dataset))
        seed_transforms(getattr(dataset, "transforms", None), seed)
        dataset = getattr(dataset, "dataset", None)


class SegmentationRunner(ResumeMixin, SupervisedConfigRunner):
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
        # Build what podium's blocks describe now, before Catalyst writes anything into the
        # logdir: a wrong encoder, data folder or key fails in seconds, not at stage start.
        self._datasets = {stage: self._build_datasets(stage) for stage in self.stages}
        self.model = call_target(self._config.get("model"), "model")
        self.check_checkpoints()  # --resume, init_from: a wrong checkpoint fails now
        for stage in self.stages:  # model ↔ data, callbacks ↔ loaders / criteria / schedulers
            check_references(self._config, stage, self._datasets[stage])
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
                keys = {k: v for k, v in params.items() if k != "_target_"}
                check_call_params(factory, keys, "engine")
            engine = super().get_engine()
            if type(engine) is DistributedDataParallelEngine:
                engine = DDPEngine.from_catalyst(engine)
            self._engine = engine
        return self._engine

    def run(self) -> "SegmentationRunner":
        """With a DDPEngine outside torchrun: spawn the workers, each runs the whole experiment."""
        engine = self.get_engine()
        if isinstance(engine, DDPEngine) and not engine.joined:
            try:
                engine.spawn(_run_rank, self)
            except KeyboardInterrupt as stop:  # rank 0 could not say where: the checkpoints can
                found = interrupts.interrupted(stop)
                if found.then:
                    raise
                raise interruption.explain(self, found, where="in a DDP run") from None
            return self
        return super().run()

    def _data_params(self, stage: str) -> Dict[str, Any]:
        params = deepcopy(self._config.get("data") or {})
        params.update(deepcopy(self._stage_config[stage].get("data") or {}))
        if not params:
            raise PodiumError(
                f"no `data:` block for stage {stage}: add `data: {{root: DIR}}` at the top "
                f"level or under stages/{stage}"
            )
        return params

    def _build_datasets(self, stage: str) -> "Optional[OrderedDict[str, Any]]":
        if "datasets" in self._stage_config[stage].get("loaders", {}):
            return None  # Catalyst's own `loaders/datasets` form
        params = self._data_params(stage)
        where = f"data (stage {stage})"
        builder = build_segmentation_datasets
        if "_target_" in params:  # another task's dataset builder, e.g. podium.datasets.geopose
            builder = resolve_target(params.pop("_target_"), where)
        check_data_keys(params, builder=builder, where=where)
        datasets = builder(**params)
        if not isinstance(datasets, Mapping) or not datasets:
            raise PodiumError(
                f"{where}: {builder.__name__} must return {{loader name: dataset}}, "
                f"got {type(datasets).__name__}"
            )
        return OrderedDict(datasets)

    def get_datasets(self, stage: str) -> "OrderedDict[str, Any]":
        """Train/valid datasets from the `data:` block (Catalyst's loaders/datasets still work)."""
        datasets = self._datasets.get(stage)
        return datasets if datasets is not None else super().get_datasets(stage)

    def get_samplers(self, stage: str) -> "OrderedDict[str, Any]":
        """Under DDP: valid/infer loaders shard without padding, train shuffles by args/seed."""
        samplers = super().get_samplers(stage)
        world_size = _world_size()
        if world_size == 1:
            return samplers
        for name, dataset in self.get_datasets(stage).items():
            if name in samplers:
                continue  # the config's own sampler (Catalyst wraps it for DDP)
            if name.startswith("train"):
                samplers[name] = DistributedSampler(dataset, shuffle=True, seed=self.seed)
            elif len(dataset) < world_size:
                raise PodiumError(
                    f"loader {name} of stage {stage} has {len(dataset)} samples for {world_size} "
                    f"processes: every process needs at least one"
                )
            else:
                samplers[name] = ShardSampler(dataset)
        return samplers

    def get_loaders(self, stage: str) -> "OrderedDict[str, Any]":
        """Catalyst's loaders; an empty one is an error that says why, before training starts."""
        if _world_size() > 1:
            loaders_params = self._stage_config[stage].get("loaders") or {}
            check_ddp_batch_sizes(loaders_params, stage, _world_size())
        loaders = super().get_loaders(stage)
        for name, loader in loaders.items():
            if len(loader) == 0:
                raise PodiumError(
                    f"loader {name} of stage {stage} yields no batch: {len(loader.dataset)} "
                    f"samples, batch_size {loader.batch_size}, drop_last {loader.drop_last}; "
                    f"expected at least one batch (more samples, a smaller batch_size or drop_last: false)"
                )
            if loader.num_workers > 0:
                # Catalyst's own worker_init_fn seeds numpy/random with seed + worker id, the
                # same every epoch, and never the albumentations pipeline.
                loader.worker_init_fn = worker_init_fn
        return loaders

    def on_stage_start(self, runner) -> None:
        """Also saves the stage's resolved augmentation pipelines into the run directory."""
        super().on_stage_start(runner)
        datasets = self._datasets.get(self.stage_key)
        if datasets and self._logdir and self.engine.is_master_process:
            pipelines = {
                name: transforms_to_dict(getattr(dataset, "transforms", None))
                for name, dataset in datasets.items()
            }
            path = Path(self._logdir) / "configs" / f"transforms_{self.stage_key}.json"
            write_json(path, pipelines)

    def on_loader_start(self, runner) -> None:
        """Seeds an in-process loader's augmentations (workers seed themselves)."""
        super().on_loader_start(runner)
        if self.loader.num_workers == 0:
            offset = list(self.loaders).index(self.loader_key)
            entropy = [self.seed, max(0, self.engine.rank), self.global_epoch_step, offset]
            seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
            _seed_dataset_transforms(self.loader.dataset, seed)
        sampler = self.loader.sampler
        if isinstance(sampler, DistributedSampler) and not isinstance(sampler, ShardSampler):
            sampler.set_epoch(self.global_epoch_step)  # Catalyst's stage epoch repeats per stage
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
        with interrupts.deferred(f"the end of epoch {self.stage_epoch_step} (checkpoints and logs)"):
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
        params = deepcopy(self._config.get("loggers") or {})
        for name, logger_params in params.items():
            factory = REGISTRY.get(logger_params.get("_target_"))  # short Catalyst names too
            if "logdir" not in logger_params and "logdir" in (accepted_keys(factory) or []):
                if self._logdir is None:
                    raise PodiumError(f"loggers/{name} needs a logdir: set args/logdir")
                logger_params.update(logdir=self._logdir, use_logdir_postfix=True)
        self._config["loggers"] = params
        loggers = super().get_loggers()
        guard_loggers(loggers)  # a failed log write: one line, not a traceback from the loop
        return loggers

    def get_model(self, stage: str) -> nn.Module:
        """The model (built in __init__, kept across stages), frozen or not as the stage says.

        Returned without the previous stage's (D)DP wrapper: the engine wraps it again, after
        freezing, so DDP's gradient sync covers exactly the parameters this stage trains.
        """
        model = _bare(self.model)
        # A stage without the key trains every layer, whatever the previous stage did.
        freeze = bool(self._stage_config[stage].get("freeze_encoder", False))
        if freeze or hasattr(model, "encoder"):
            set_encoder_trainable(model, not freeze)
        return model
