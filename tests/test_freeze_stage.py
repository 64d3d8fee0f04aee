"""One freezing mechanism: the stage key `freeze_encoder` is FreezeCallback(module="encoder")."""

import pytest
import torch
from torch import nn

from podium.callbacks.freeze import FreezeCallback, UnfreezeCallback, stage_freezing
from podium.errors import PodiumError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3))
        self.encoder.scale = nn.Parameter(torch.ones(1))  # a parameter outside its children
        self.decoder = nn.Conv2d(4, 1, 1)


def trainable(module):
    return {name for name, p in module.named_parameters() if p.requires_grad}


def test_the_stage_key_freezes_what_freeze_callback_freezes():
    by_key, by_callback = Net(), Net()
    stage_freezing(by_key, True)
    FreezeCallback(module="encoder").freeze(by_callback)
    assert trainable(by_key) == trainable(by_callback) == {"decoder.weight", "decoder.bias"}
    callback_runner = type("R", (), {"model": Net()})()
    FreezeCallback().on_stage_start(callback_runner)  # default module: the encoder, all of it
    assert trainable(callback_runner.model) == {"decoder.weight", "decoder.bias"}


def test_a_stage_without_the_key_trains_the_encoder_again():
    model = Net()
    FreezeCallback(module="encoder").freeze(model)
    assert stage_freezing(nn.DataParallel(model), False) is model  # unwrapped
    assert trainable(model) == {name for name, _ in model.named_parameters()}


def test_unfreeze_without_selector_unfreezes_the_whole_encoder():
    runner = type("R", (), {"model": Net(), "stage_epoch_step": 2, "optimizer": None})()
    stage_freezing(runner.model, True)
    UnfreezeCallback(epoch=2).on_epoch_start(runner)
    assert trainable(runner.model) == {name for name, _ in runner.model.named_parameters()}


def test_the_stage_key_needs_an_encoder():
    with pytest.raises(PodiumError, match="freeze_encoder needs a model with an `.encoder` module"):
        stage_freezing(nn.Conv2d(1, 1, 1), True)
    stage_freezing(nn.Conv2d(1, 1, 1), False)  # nothing to do
