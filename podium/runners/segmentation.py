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
  error naming the culprit, instead of a traceback from deep inside object creation.
Everything else — loaders, criterion dict, callbacks, loggers, engine — is Catalyst's own.
"""
import json
import os
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
from catalyst.registry import REGISTRY
from catalyst.runners.config import SupervisedConfigRunner
from torch import nn

from podium.datasets import (
    build_segmentation_datasets,
    check_data_keys,
    seed_transforms,
    transforms_to_dict,
    worker_init_fn,
)
from podium.errors import PodiumError
from podium.runners.config_checks import check_config
from podium.targets import accepted_keys, call_target, resolve_target

__all__ = ["SegmentationRunner", "set_encoder_trainable"]


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


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=2))
    os.replace(temporary, path)


def _seed_dataset_transforms(dataset, seed: int) -> None:
    seen = set()
    while dataset is not None and id(dataset) not in seen:  # Subset / wrappers: follow .dataset
        seen.add(id(dataset))
        seed_transforms(getattr(dataset, "transforms", None), seed)
        dataset = getattr(dataset, "dataset", None)


class SegmentationRunner(SupervisedConfigRunner):
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

    def get_loaders(self, stage: str) -> "OrderedDict[str, Any]":
        """Catalyst's loaders; an empty one is an error that says why, before training starts."""
        loaders = super().get_loaders(stage)
        for name, loader in loaders.items():
            if len(loader) == 0:
                raise PodiumError(
                    f"loader {name} of stage {stage} yields no batch: {len(loader.dataset)} "
                    f"samples, batch_size {loader.batch_size}, drop_last {loader.drop_last}"
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
            _write_json(path, pipelines)

    def on_loader_start(self, runner) -> None:
        """Seeds an in-process loader's augmentations (workers seed themselves)."""
        super().on_loader_start(runner)
        if self.loader.num_workers == 0:
            offset = list(self.loaders).index(self.loader_key)
            entropy = [self.seed, max(0, self.engine.rank), self.global_epoch_step, offset]
            seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
            _seed_dataset_transforms(self.loader.dataset, seed)

    def get_loggers(self) -> Dict[str, Any]:
        """Catalyst's loggers, with the run's logdir filled in where a logger needs one."""
        params = deepcopy(self._config.get("loggers") or {})
        for name, logger_params in params.items():
            factory = REGISTRY.get(logger_params.get("_target_"))  # short Catalyst names too
            if "logdir" not in logger_params and "logdir" in (accepted_keys(factory) or []):
                if self._logdir is None:
                    raise PodiumError(f"loggers/{name} needs a logdir: set args/logdir")
                logger_params.update(logdir=self._logdir, use_logdir_postfix=True)
        self._config["loggers"] = params
        return super().get_loggers()

    def get_model(self, stage: str) -> nn.Module:
        """The model (built in __init__, kept across stages), frozen or not as the stage says."""
        model = self.model
        # A stage without the key trains every layer, whatever the previous stage did.
        freeze = bool(self._stage_config[stage].get("freeze_encoder", False))
        if freeze or hasattr(model, "encoder"):
            set_encoder_trainable(model, not freeze)
        return model
