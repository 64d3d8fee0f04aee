"""The resume collaborator alone (`Resumption`): plan, checks, hooks, on a tiny model and a
hand-made checkpoint (the real runs: test_resume.py)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from podium.callbacks.checkpoint import RESUME_KEY
from podium.errors import PodiumError
from podium.runners.resume import Resumption

STAGES = {"warmup": {"num_epochs": 2}, "train": {"num_epochs": 3}}
LENGTHS = {"warmup": 2, "train": 3}


def _checkpoint(path, model, stage, epoch, **state):
    torch.save(
        {
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": {},
            "stage_key": stage,
            "stage_epoch_step": epoch,
            "stage_batch_step": 4 * epoch,
            "stage_sample_step": 16 * epoch,
            "global_epoch_step": 2 + epoch,
            "global_batch_step": 8 + 4 * epoch,
            "global_sample_step": 32 + 16 * epoch,
            "run_key": "run-1",
            RESUME_KEY: state,
        },
        path,
    )
    return path


class Engine:
    is_master_process = True

    def __init__(self):
        self.unpacked = None

    def unpack_checkpoint(self, checkpoint, model, **_):
        self.unpacked = checkpoint
        model.load_state_dict(checkpoint["model_state_dict"])


def _runner(model, stage):
    return SimpleNamespace(
        model=model,
        stage_key=stage,
        engine=Engine(),
        run_key="new",
        criterion=None,
        optimizer=None,
        scheduler=None,
        callbacks={},
    )


def test_a_fresh_run_runs_every_stage_and_warm_starts(tmp_path):
    model = nn.Linear(2, 2)
    torch.save({"model_state_dict": model.state_dict()}, tmp_path / "w.pth")
    config = {"stages": {"warmup": {}, "train": {"init_from": str(tmp_path / "w.pth")}}}
    resumption = Resumption(config, None, LENGTHS)
    assert resumption.point is None and resumption.stages(["warmup", "train"]) == [
        "warmup",
        "train",
    ]
    assert list(resumption.warm_starts) == ["train"]
    resumption.check(model)
    with pytest.raises(PodiumError, match="does not fit the model Linear"):
        resumption.check(nn.Linear(3, 2))
    runner = _runner(nn.Linear(2, 2), "train")
    resumption.on_stage_start(runner)
    assert torch.equal(runner.model.weight, model.weight) and not resumption.pending


def test_mid_stage_resume_waits_for_the_first_epoch(tmp_path):
    saved = nn.Linear(2, 2)
    path = _checkpoint(tmp_path / "last_full.pth", saved, "train", 1, frozen=["bias"])
    resumption = Resumption({"stages": STAGES}, str(path), LENGTHS)
    assert resumption.stages(list(STAGES)) == ["train"]
    runner = _runner(nn.Linear(2, 2), "train")
    resumption.on_experiment_start(runner)
    assert runner.run_key == "run-1" and runner.global_epoch_step == 2  # when `train` began
    resumption.on_stage_start(runner)
    assert resumption.pending and runner.engine.unpacked is None
    resumption.on_epoch_start(runner)
    assert (
        not resumption.pending and runner.stage_epoch_step == 1 and runner.global_batch_step == 12
    )
    assert torch.equal(runner.model.weight, saved.weight)
    assert not runner.model.bias.requires_grad and runner.model.weight.requires_grad


def test_resume_after_an_ended_stage_replays_its_end(tmp_path):
    saved = nn.Linear(2, 2)
    path = _checkpoint(tmp_path / "last_full.pth", saved, "warmup", 2)
    resumption = Resumption({"stages": STAGES}, str(tmp_path), LENGTHS)  # a run directory
    assert resumption.point.stage_epoch == 0 and resumption.stages(list(STAGES)) == ["train"]
    runner = _runner(nn.Linear(2, 2), "train")
    resumption.on_stage_start(runner)
    assert not resumption.pending and torch.equal(runner.model.weight, saved.weight)
    with pytest.raises(PodiumError, match="does not fit the config's model"):
        resumption.check(nn.Linear(2, 3))
    assert path.is_file()
