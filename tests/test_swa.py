"""SWACallback (issue 17 part 5): the average is the mean of the per-epoch weights, BatchNorm
statistics are update_bn's, SWALR's LR schedule, the checkpoint loads into predict from a real
SWA stage, and bad input is one error line."""

import copy
import os
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import SWALR, update_bn
from torch.utils.data import DataLoader, Dataset

import podium  # noqa: F401  (compat first)
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder

from conftest import REPO, run_command, run_two_ranks
from podium.callbacks import SWACallback
from podium.cli.main import main as podium_main
from podium.errors import PodiumError
from podium.models.averaging import AVERAGED_KEY
from podium.runners.engines import free_port

NUCLEI = REPO / "configs" / "nuclei" / "unet_resnet18.yml"
SWA = REPO / "configs" / "nuclei" / "swa.yml"


class Pairs(Dataset):
    """Dict samples, as podium's datasets give them."""

    def __init__(self, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 6, 6, generator=g) * 2 + 1
        self.y = (self.x.mean(dim=1, keepdim=True) > 1).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "targets": self.y[i]}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1)
    )


class Recorder(Callback):
    """The weights and the LR at the end of every train loader."""

    def __init__(self):
        super().__init__(order=CallbackOrder.External)
        self.weights, self.lrs = [], []

    def on_loader_end(self, runner):
        if runner.is_train_loader:
            self.weights.append(copy.deepcopy(runner.model.state_dict()))
            self.lrs.append(runner.optimizer.param_groups[0]["lr"])


def _train(tmp_path, epochs=5, **swa):
    model = _model()
    recorder = Recorder()
    loaders = {
        "train": DataLoader(Pairs(), batch_size=5),
        "valid": DataLoader(Pairs(8, seed=1), batch_size=4),
    }
    runner = dl.SupervisedRunner(input_key="features", output_key="logits", target_key="targets")
    runner.train(
        model=model,
        criterion=nn.BCEWithLogitsLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        loaders=loaders,
        num_epochs=epochs,
        callbacks=[SWACallback(**swa), recorder],
        logdir=str(tmp_path),
        verbose=False,
        check=False,
    )
    saved = torch.load(tmp_path / "checkpoints" / "swa.pth", weights_only=True)
    return model, recorder, saved, loaders


def test_average_is_the_mean_of_the_epochs_weights(tmp_path):
    _, recorder, saved, _ = _train(tmp_path, start_epoch=3, bn_update=False)
    averaged = saved["model_state_dict"]
    epochs = recorder.weights[2:]  # epochs 3, 4, 5
    assert [name.split(".")[-1] for name in saved[AVERAGED_KEY]] == ["3", "4", "5"]
    assert saved["bn_updated"] is False
    for key, value in averaged.items():
        if not value.is_floating_point():
            continue
        expected = torch.stack([w[key].float() for w in epochs]).mean(dim=0)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.allclose(averaged["0.weight"], recorder.weights[-1]["0.weight"])


def test_batchnorm_statistics_are_update_bn_s(tmp_path):
    _, recorder, saved, loaders = _train(tmp_path, start_epoch=2, bn_update=True)
    reference = _model()
    mean = {
        key: torch.stack([w[key].float() for w in recorder.weights[1:]]).mean(dim=0)
        for key, value in recorder.weights[0].items()
        if value.is_floating_point() and "running" not in key
    }
    reference.load_state_dict(mean, strict=False)
    update_bn((batch["features"] for batch in loaders["train"]), reference)
    averaged = saved["model_state_dict"]
    assert saved["bn_updated"] is True
    for key in ("1.running_mean", "1.running_var", "0.weight", "1.weight"):
        torch.testing.assert_close(averaged[key], reference.state_dict()[key], msg=key)
    # not the running statistics of the last epoch, nor their average
    assert not torch.allclose(averaged["1.running_var"], recorder.weights[-1]["1.running_var"])


def test_swalr_anneals_from_start_epoch(tmp_path):
    _, recorder, _, _ = _train(
        tmp_path, epochs=6, start_epoch=3, lr=0.02, anneal_epochs=2, anneal_strategy="linear"
    )
    reference = SWALR(
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
        swa_lr=0.02,
        anneal_epochs=2,
        anneal_strategy="linear",
    )
    expected = [0.1, 0.1, 0.1]  # epochs 1..3 at the optimizer's LR; SWALR steps after epoch 3
    for _ in range(3):
        reference.step()
        expected.append(reference.optimizer.param_groups[0]["lr"])
    assert recorder.lrs == pytest.approx(expected)
    assert expected[-1] == pytest.approx(0.02) and expected[3] == pytest.approx(0.06)


def test_bad_arguments_are_one_error():
    with pytest.raises(PodiumError, match="SWACallback: start_epoch must be"):
        SWACallback(start_epoch=0)
    with pytest.raises(PodiumError, match="anneal_strategy 'cosine' is not supported"):
        SWACallback(anneal_strategy="cosine")


def test_resumed_state_continues_the_same_average(tmp_path):
    """One training loop; `whole` sees every epoch, `resumed` takes over at epoch 3 from the
    state `first` saved after epoch 2 (through torch.save / weights_only load)."""
    model, batches = _model(), [Pairs()[i : i + 6] for i in range(0, 24, 6)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    runner = SimpleNamespace(
        model=model,
        optimizer=optimizer,
        scheduler=None,
        stage_key="train",
        stage_epoch_len=5,
        logdir=str(tmp_path),
        is_train_loader=True,
    )
    whole, first, resumed = (SWACallback(start_epoch=2, bn_update=False) for _ in range(3))
    for callback in (whole, first):
        callback.on_stage_start(runner)
    for epoch in range(1, 6):
        runner.stage_epoch_step = epoch
        for batch in batches:
            optimizer.zero_grad()
            model(batch["features"]).pow(2).mean().backward()
            optimizer.step()
        active = [whole, first] if epoch <= 2 else [whole, resumed]
        for callback in active:
            callback.on_loader_end(runner)
        if epoch == 2:
            torch.save(first.state_dict(), tmp_path / "state.pt")
            resumed.on_stage_start(runner)
            resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed.epochs == whole.epochs == ["train.2", "train.3", "train.4", "train.5"]
    for key, value in whole.weights().items():
        torch.testing.assert_close(resumed.weights()[key], value, msg=key)


# ------------------------------------------------------------------------------ a real stage
def test_swa_stage_from_yaml_writes_a_checkpoint_predict_reads(nuclei_data, tmp_path):
    logdir = tmp_path / "run"
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        str(NUCLEI),
        str(SWA),
        f"--args/logdir={logdir}:str",
        f"--data/root={nuclei_data}:str",
        "--stages/warmup/num_epochs=1:int",
        "--stages/train/num_epochs=1:int",
        "--stages/swa/num_epochs=2:int",
        "--stages/swa/callbacks/swa/start_epoch=1:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(logdir / "checkpoints" / "swa.pth", weights_only=True)
    assert saved[AVERAGED_KEY] == ["swa.1", "swa.2"] and saved["bn_updated"] is True
    out = tmp_path / "pred"
    args = ["predict", "--run", str(logdir), "--checkpoint", "swa", "--data", str(nuclei_data)]
    assert podium_main(args + ["--split", "valid", "--out", str(out), "--no-progress"]) == 0
    assert (out / "metrics.json").is_file() and len(list((out / "masks").glob("*.png"))) == 4


def _run_in_process(logdir, data, *overrides):
    """`catalyst-dl run` of the nuclei config + swa.yml in this process: the PodiumError."""
    from catalyst.dl.scripts.run import main, parse_args

    argv = ["catalyst-dl", "--config", str(NUCLEI), str(SWA), f"--args/logdir={logdir}:str"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*argv, f"--data/root={data}:str", *overrides])
        args, unknown = parse_args()
        with pytest.raises(PodiumError) as error:
            main(args, unknown)
    return str(error.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["--stages/swa/num_epochs=3:int", "--stages/swa/callbacks/swa/start_epoch=5:int"],
            "stages/swa/callbacks/swa/start_epoch 5 is beyond stage swa, which has 3 epoch(s); "
            "expected 1..3",
        ),
        (
            [
                "--stages/swa/scheduler/_target_=torch.optim.lr_scheduler.StepLR:str",
                "--stages/swa/scheduler/step_size=1:int",
            ],
            "stages/swa/callbacks/swa/lr sets the LR through SWALR, but stage swa has a scheduler",
        ),
    ],
)
def test_bad_swa_stage_is_one_error_before_anything_is_written(
    nuclei_data, tmp_path, overrides, message
):
    logdir = tmp_path / "run"
    assert message in _run_in_process(logdir, nuclei_data, *overrides)
    assert not logdir.exists()


# ------------------------------------------------------------------------------ DDP
def _ddp_swa_worker(rank, port, out_dir):
    """Different data per rank: DDP keeps the weights equal, update_bn sees each rank's batches;
    the average (BatchNorm statistics included) must be the same on both ranks."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(rank)
    model = nn.parallel.DistributedDataParallel(_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [{"features": torch.randn(4, 3, 6, 6) + rank} for _ in range(3)]
    runner = SimpleNamespace(
        model=model,
        optimizer=optimizer,
        scheduler=None,
        stage_key="swa",
        stage_epoch_len=3,
        loaders={"train": batches},
        _input_key="features",
        engine=SimpleNamespace(is_master_process=rank == 0),
        logdir=out_dir,
        is_train_loader=True,
    )
    swa = SWACallback(start_epoch=2, bn_update=True)
    swa.on_stage_start(runner)
    for epoch in range(1, 4):
        runner.stage_epoch_step = epoch
        for batch in batches:
            optimizer.zero_grad()
            model(batch["features"]).pow(2).mean().backward()
            optimizer.step()
        swa.on_loader_end(runner)
        swa.on_epoch_end(runner)
    swa.on_stage_end(runner)
    torch.save(swa.weights(), os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_swa_is_identical_on_every_ddp_rank(tmp_path):
    run_two_ranks(_ddp_swa_worker, free_port(), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    written = torch.load(tmp_path / "checkpoints" / "swa.pth", weights_only=True)
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
        assert torch.equal(value, written["model_state_dict"][key]), key
    assert written[AVERAGED_KEY] == ["swa.2", "swa.3"]
