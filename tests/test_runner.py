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
