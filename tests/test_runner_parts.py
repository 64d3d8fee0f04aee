"""The runner's collaborators alone: augmentation seeds, stage data, logger dirs (no training)."""

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from podium.datasets import worker_init_fn
from podium.errors import PodiumError
from podium.runners import PodiumRunner, SegmentationRunner
from podium.runners.data import StageData
from podium.runners.log_guard import fill_logdirs
from podium.runners.seeding import AugmentationSeeds


class Flips(Dataset):
    """8 random numbers per sample from its albumentations pipeline."""

    def __init__(self):
        self.transforms = A.Compose([A.HorizontalFlip(p=0.5)])

    def __len__(self):
        return 4

    def __getitem__(self, index):
        image = np.arange(8, dtype=np.float32).reshape(1, 8, 1)
        return torch.from_numpy(self.transforms(image=image)["image"].copy())


def test_the_runner_has_one_class_under_two_names():
    from catalyst.registry import REGISTRY

    assert SegmentationRunner is PodiumRunner
    assert REGISTRY.get("podium.runners.SegmentationRunner") is PodiumRunner
    assert REGISTRY.get("podium.runners.PodiumRunner") is PodiumRunner


@pytest.mark.parametrize("seed, rank, epoch, loader", [(42, -1, 1, 0), (42, 0, 1, 0), (7, 1, 3, 1)])
def test_augmentation_seeds_are_those_of_before(seed, rank, epoch, loader):
    """The seed of (args/seed, rank, global epoch, loader index): the formula the runner used."""
    before = int(np.random.SeedSequence([seed, max(0, rank), epoch, loader]).generate_state(1)[0])
    assert AugmentationSeeds(seed).seed_for(rank, epoch, loader) == before


def test_augmentation_seeds_differ_by_epoch_loader_and_rank():
    seeds = AugmentationSeeds(42)
    drawn = {seeds.seed_for(r, e, i) for r in (0, 1) for e in (1, 2) for i in (0, 1)}
    assert len(drawn) == 8


def _draws(loader):
    return torch.stack([loader.dataset[i] for i in range(len(loader.dataset))])


def test_in_process_loaders_are_seeded_through_wrappers():
    seeds = AugmentationSeeds(3)
    loader = DataLoader(Subset(Flips(), [0, 1, 2, 3]), num_workers=0)
    seeds.prepare(loader)
    assert loader.worker_init_fn is None
    seeds.on_loader_start(loader, rank=0, epoch=1, loader_index=0)
    first = _draws(loader)
    seeds.on_loader_start(loader, rank=0, epoch=1, loader_index=0)
    assert torch.equal(_draws(loader), first)
    draws = []
    for epoch in range(2, 7):  # 4 coin flips each: 5 epochs all alike has odds 2**-20
        seeds.on_loader_start(loader, rank=0, epoch=epoch, loader_index=0)
        draws.append(_draws(loader))
    assert any(not torch.equal(d, first) for d in draws)


def test_loaders_with_workers_seed_themselves():
    loader = DataLoader(Flips(), num_workers=2)
    AugmentationSeeds(3).prepare(loader)
    assert loader.worker_init_fn is worker_init_fn


def _config(**stage):
    return {
        "data": {"_target_": "test_runner.tiny_datasets", "root": "x"},
        "stages": {"a": {"loaders": {"batch_size": 2}, **stage}},
    }


def test_stage_data_builds_once_and_keeps_catalysts_form():
    data = StageData(_config(), ["a"])
    assert list(data.get("a")) == ["train", "valid"] and data.get("a") is data.get("a")
    config = _config(loaders={"datasets": {}})
    assert StageData(config, ["a"]).get("a") is None
    samplers = {}
    assert StageData.ddp_samplers(samplers, data.get("a"), "a", seed=0) is samplers == {}


def test_stage_data_rejects_an_empty_loader():
    loader = DataLoader(list(range(3)), batch_size=4, drop_last=True)
    with pytest.raises(PodiumError, match="loader train of stage a yields no batch: 3 samples"):
        StageData.check_loaders({"train": loader}, "a")


def test_stage_data_saves_the_pipelines(tmp_path):
    data = StageData(_config(), ["a"])
    data.save_pipelines("a", tmp_path)
    assert (tmp_path / "configs" / "transforms_a.json").is_file()
    data.save_pipelines("a", None)  # no logdir: nothing to do


def test_loggers_get_the_run_logdir():
    params = {
        "csv": {"_target_": "CSVLogger"},
        "own": {"_target_": "CSVLogger", "logdir": "elsewhere"},
        "console": {"_target_": "ConsoleLogger"},
    }
    filled = fill_logdirs(params, "run")
    assert filled["csv"] == {"_target_": "CSVLogger", "logdir": "run", "use_logdir_postfix": True}
    assert filled["own"]["logdir"] == "elsewhere" and "logdir" not in filled["console"]
    assert "logdir" not in params["csv"]  # the config itself is left as it was
    with pytest.raises(PodiumError, match="loggers/csv needs a logdir"):
        fill_logdirs(params, None)
