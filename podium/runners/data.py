"""The datasets and loaders of a run, from podium's `data:` blocks: the keyword arguments of
`podium.datasets.build_segmentation_datasets` (with `layout: scenes`, those of
`podium.datasets.scenes.dataset.build_scene_datasets`), or with `_target_:` of another builder (any
function returning {loader name: dataset}); top level, overridden per stage. A stage with
Catalyst's own `loaders/datasets` keeps it. Under DDP: ShardSampler / seeded DistributedSampler.
"""

from collections import OrderedDict
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch.distributed as dist
from torch.utils.data import DistributedSampler

from podium.datasets import build_segmentation_datasets, check_data_keys, transforms_to_dict
from podium.datasets.scenes.dataset import build_scene_datasets
from podium.errors import PodiumError
from podium.files import write_json
from podium.runners.samplers import ShardSampler
from podium.targets import resolve_target

__all__ = ["StageData", "check_ddp_batch_sizes", "world_size"]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


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


class StageData:
    """The datasets of every stage, built once (a wrong folder or key fails in seconds)."""

    def __init__(self, config: Mapping[str, Any], stages):
        self.config = config
        self.datasets = {stage: self._build(stage) for stage in stages}

    def _params(self, stage: str) -> Dict[str, Any]:
        params = deepcopy(self.config.get("data") or {})
        params.update(deepcopy(self.config["stages"][stage].get("data") or {}))
        if not params:
            raise PodiumError(
                f"no `data:` block for stage {stage}: add `data: {{root: DIR}}` at the top "
                f"level or under stages/{stage}"
            )
        return params

    def _build(self, stage: str) -> "Optional[OrderedDict[str, Any]]":
        if "datasets" in self.config["stages"][stage].get("loaders", {}):
            return None  # Catalyst's own `loaders/datasets` form
        params = self._params(stage)
        where = f"data (stage {stage})"
        builder = build_segmentation_datasets
        if "_target_" in params:  # another task's dataset builder, e.g. podium.tasks.geopose
            builder = resolve_target(params.pop("_target_"), where)
        elif params.get("layout") == "scenes":  # georeferenced rasters + vector labels
            builder = build_scene_datasets
        check_data_keys(params, builder=builder, where=where)
        datasets = builder(**params)
        if not isinstance(datasets, Mapping) or not datasets:
            raise PodiumError(
                f"{where}: {builder.__name__} must return {{loader name: dataset}}, "
                f"got {type(datasets).__name__}"
            )
        return OrderedDict(datasets)

    def get(self, stage: str) -> "Optional[OrderedDict[str, Any]]":
        """The stage's datasets; None for Catalyst's `loaders/datasets` form."""
        return self.datasets.get(stage)

    @staticmethod
    def ddp_samplers(samplers, datasets, stage: str, seed: int):
        """Under DDP: valid/infer loaders shard without padding, train shuffles by `seed`."""
        size = world_size()
        if size == 1:
            return samplers
        for name, dataset in datasets.items():
            if name in samplers:
                continue  # the config's own sampler (Catalyst wraps it for DDP)
            if name.startswith("train"):
                samplers[name] = DistributedSampler(dataset, shuffle=True, seed=seed)
            elif len(dataset) < size:
                raise PodiumError(
                    f"loader {name} of stage {stage} has {len(dataset)} samples for {size} "
                    f"processes: every process needs at least one"
                )
            else:
                samplers[name] = ShardSampler(dataset)
        return samplers

    def check_loaders_params(self, stage: str) -> None:
        if world_size() > 1:
            check_ddp_batch_sizes(
                self.config["stages"][stage].get("loaders") or {}, stage, world_size()
            )

    @staticmethod
    def check_loaders(loaders, stage: str) -> None:
        """An empty loader is an error that says why, before training starts."""
        for name, loader in loaders.items():
            if len(loader) == 0:
                raise PodiumError(
                    f"loader {name} of stage {stage} yields no batch: {len(loader.dataset)} "
                    f"samples, batch_size {loader.batch_size}, drop_last {loader.drop_last}; "
                    "expected at least one batch (more samples, "
                    "a smaller batch_size or drop_last: false)"
                )

    def save_pipelines(self, stage: str, logdir) -> None:
        """The stage's resolved augmentation pipelines, into configs/transforms_<stage>.json."""
        datasets = self.get(stage)
        if datasets and logdir:
            pipelines = {
                name: transforms_to_dict(getattr(dataset, "transforms", None))
                for name, dataset in datasets.items()
            }
            write_json(Path(logdir) / "configs" / f"transforms_{stage}.json", pipelines)

    @staticmethod
    def on_loader_start(loader, global_epoch: int) -> None:
        sampler = loader.sampler
        if isinstance(sampler, DistributedSampler) and not isinstance(sampler, ShardSampler):
            sampler.set_epoch(global_epoch)  # Catalyst's stage epoch repeats per stage
