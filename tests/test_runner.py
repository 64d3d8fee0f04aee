"""SegmentationRunner: datasets from `data:`, per-stage encoder freezing, logdir for loggers."""

import copy

import pytest
import torch
from catalyst.utils.config import load_config

from conftest import NUCLEI_CONFIG
from podium.errors import PodiumError
from podium.runners import SegmentationRunner


@pytest.fixture
def config(tmp_path, nuclei_data):
    config = load_config(str(NUCLEI_CONFIG), ordered=False)
    config["args"]["logdir"] = str(tmp_path / "run")
    config["data"]["root"] = str(nuclei_data)
    return config


def trainable(module):
    return {parameter.requires_grad for parameter in module.parameters()}


def test_freeze_encoder_follows_each_stage(config):
    runner = SegmentationRunner(config)
    model = runner.get_model("warmup")
    assert trainable(model.encoder) == {False}
    assert trainable(model.decoder) == {True} and trainable(model.head) == {True}
    assert runner.get_model("train") is model  # one model across stages
    assert trainable(model.encoder) == {True}


def test_a_stage_without_the_key_trains_every_layer(config):
    del config["stages"]["train"]["freeze_encoder"]
    runner = SegmentationRunner(config)
    runner.get_model("warmup")
    assert trainable(runner.get_model("train").encoder) == {True}


def test_frozen_stage_leaves_encoder_weights_untouched(config):
    """A real warm-up epoch: decoder weights move, encoder weights do not."""
    config["stages"] = {"warmup": copy.deepcopy(config["stages"]["warmup"])}
    config["stages"]["warmup"]["num_epochs"] = 1
    runner = SegmentationRunner(config)
    before = copy.deepcopy(runner.model.state_dict())
    runner.run()
    after = runner.model.state_dict()
    for name, tensor in before.items():
        if not tensor.is_floating_point() or "running_" in name:
            continue  # BatchNorm statistics keep updating by design
        moved = not torch.equal(tensor, after[name])
        assert moved == (not name.startswith("encoder.")), name


def test_datasets_come_from_the_data_block(config, nuclei_data):
    runner = SegmentationRunner(config)
    datasets = runner.get_datasets("warmup")
    assert list(datasets) == ["train", "valid"]
    assert (len(datasets["train"]), len(datasets["valid"])) == (117, 4)
    sample = datasets["train"][0]
    assert sample["image"].shape == (1, 96, 96)  # the config's RandomCrop
    assert datasets["valid"][0]["image"].shape == (1, 128, 128)


def test_stage_data_overrides_the_top_level_block(config):
    config["stages"]["train"]["data"] = {"train_transforms": None}
    runner = SegmentationRunner(config)
    assert runner.get_datasets("train")["train"][0]["image"].shape == (1, 128, 128)
    assert runner.get_datasets("warmup")["train"][0]["image"].shape == (1, 96, 96)


def test_loggers_write_into_the_run_logdir(config, tmp_path):
    runner = SegmentationRunner(config)
    loggers = runner.get_loggers()
    assert loggers["csv"].logdir == str(tmp_path / "run" / "logs")


def test_missing_data_block(config):
    del config["data"]
    with pytest.raises(PodiumError, match="no `data:` block"):
        SegmentationRunner(config)


def _first_train_batches(config, num_workers):
    """The first augmented train batch of each of 2 epochs of a real (frozen, short) run."""
    from catalyst.core import Callback, CallbackOrder

    config = copy.deepcopy(config)
    stage = copy.deepcopy(config["stages"]["warmup"])
    stage["num_epochs"] = 2
    stage["loaders"]["num_workers"] = num_workers
    stage["callbacks"] = {}  # only the recorder (no checkpoints, metrics, early stopping)
    config["stages"] = {"warmup": stage}
    batches = []

    class Recorder(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.Internal)

        def on_batch_start(self, runner):
            if runner.is_train_loader and runner.loader_batch_step == 1:
                batches.append(runner.batch["image"].clone())

    class RecordingRunner(SegmentationRunner):
        def get_callbacks(self, stage):
            return {"recorder": Recorder()}

        def handle_batch(self, batch):  # the batches are all this test needs
            self.batch = batch

    RecordingRunner(config).run()
    return batches


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentations_follow_the_seed(config, num_workers):
    """albumentations ignores the global seeds Catalyst sets: the runner seeds its pipelines, so
    one seed gives the same augmented batches, and each epoch gets new ones."""
    first = _first_train_batches(config, num_workers)
    again = _first_train_batches(config, num_workers)
    assert len(first) == 2
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])
    config["args"]["seed"] = 7
    assert not torch.equal(_first_train_batches(config, num_workers)[0], first[0])


def tiny_datasets(root, size: int = 3):
    """A data builder of another task, for the `data: {_target_: ...}` form."""
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.zeros(size, 1, 32, 32), torch.zeros(size, 1, 32, 32))
    return {"train": data, "valid": data}


def test_data_block_with_its_own_builder(config):
    config["data"] = {"_target_": "test_runner.tiny_datasets", "root": "anything", "size": 5}
    datasets = SegmentationRunner(config).get_datasets("train")
    assert list(datasets) == ["train", "valid"] and len(datasets["valid"]) == 5

    config["data"] = {"_target_": "test_runner.tiny_datasets", "root": "x", "sise": 5}
    with pytest.raises(PodiumError, match='"sise".*did you mean "size"'):
        SegmentationRunner(config)
    config["data"] = {"_target_": "test_runner.no_such_builder", "root": "x"}
    with pytest.raises(PodiumError, match="no_such_builder"):
        SegmentationRunner(config)
