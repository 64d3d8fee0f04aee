"""EMA and checkpoint averaging in real runs: checkpoints hold both weight sets, --resume
continues the average, every DDP rank has the same one; `podium average` against a hand
average of the state dicts and torch's update_bn; what predict / init_from accept."""

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from conftest import run_two_ranks
from podium.callbacks import EMACallback
from podium.checkpoints import EMA_KEY, unwrap
from podium.cli.average import train_loader
from podium.cli.main import main as podium_main
from podium.inference import averaging
from podium.inference.checkpoint import load_model, load_run_config
from podium.runners.engines import free_port
from podium.runners.resume import check_init_from, parse_init_from
from podium.targets import call_target
from test_resume import _config, run_in_process, write_config

EPOCHS = 3


def _ema_config(data: Path, split: Path) -> dict:
    """test_resume's small nuclei config, one stage of constant LR, with an EMACallback, the
    3 best epochs kept and podium's OptimizerCallback."""
    config = _config(data, split)
    stage = config["stages"]["train"]
    config["stages"] = {"train": stage}
    stage["num_epochs"] = EPOCHS
    callbacks = stage["callbacks"]
    for name in ("scheduler", "early_stopping"):
        callbacks.pop(name)
    callbacks["optimizer"] = {
        "_target_": "podium.callbacks.OptimizerCallback",
        "metric_key": "loss",
        "accumulation_steps": 2,
    }
    callbacks["ema"] = {"_target_": "podium.callbacks.EMACallback", "decay": 0.9}
    callbacks["checkpoint"]["save_n_best"] = EPOCHS
    return config


@pytest.fixture(scope="module")
def config_file(nuclei_data, tmp_path_factory) -> Path:
    return write_config(nuclei_data, tmp_path_factory.mktemp("ema"), _ema_config)


@pytest.fixture(scope="module")
def run(config_file, tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("ema_run") / "run"
    run_in_process(config_file, logdir)
    return logdir


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _conv(state) -> str:
    """The name of the first convolution weight of a state dict."""
    return next(key for key, value in state.items() if value.ndim == 4)


def _close(a, b, **tolerance):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), **tolerance), key


# -- EMA in checkpoints -----------------------------------------------------------------------
def test_every_checkpoint_holds_both_sets_and_predict_takes_the_ema(run):
    folder = run / "checkpoints"
    # one optimizer step per epoch; timm's first update copies the weights (decay 0)
    for name, differ in (("train.1.pth", False), ("best.pth", True), ("last_full.pth", True)):
        checkpoint = _load(folder / name)
        trained, averaged = checkpoint["model_state_dict"], checkpoint[EMA_KEY]
        assert trained.keys() == averaged.keys()
        conv = _conv(trained)
        assert torch.equal(trained[conv], averaged[conv]) != differ, name
    last = _load(folder / "last.pth")
    model, _ = load_model(run, "last")  # auto: the EMA weights
    _close(model.state_dict(), last[EMA_KEY], atol=0, rtol=0)
    model, _ = load_model(run, "last", ema=False)
    _close(model.state_dict(), last["model_state_dict"], atol=0, rtol=0)


def test_resume_continues_the_average(config_file, run, tmp_path):
    """2 epochs, then --resume with 3: the EMA weights of the uninterrupted run."""
    logdir = tmp_path / "run"
    run_in_process(config_file, logdir, f"--stages/train/num_epochs={EPOCHS - 1}:int")
    run_in_process(config_file, logdir, "--resume", str(logdir))
    resumed, reference = (
        _load(logdir / "checkpoints" / "last_full.pth"),
        _load(run / "checkpoints" / "last_full.pth"),
    )
    assert resumed["stage_epoch_step"] == reference["stage_epoch_step"] == EPOCHS
    _close(resumed["model_state_dict"], reference["model_state_dict"], rtol=1e-5, atol=1e-6)
    _close(resumed[EMA_KEY], reference[EMA_KEY], rtol=1e-5, atol=1e-6)
    # a run that restarted the average at the resume would differ
    restarted = _load(logdir / "checkpoints" / "train.2.pth")
    conv = _conv(restarted[EMA_KEY])
    assert not torch.allclose(restarted[EMA_KEY][conv], resumed[EMA_KEY][conv])


def _ddp_ema_worker(rank, port, out_dir):
    """Different initial weights and data per rank: DDP broadcasts rank 0's weights and
    averages the gradients; the EMA (built after the wrap) must be the same on both ranks."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(rank)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    wrapped = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    runner = type("R", (), {})()
    runner.model, runner.is_train_loader, runner.callbacks = wrapped, True, {}
    runner.loader_batch_len, runner.global_batch_step = 4, 0
    ema = EMACallback(decay=0.8)
    ema.on_loader_start(runner)
    for _ in range(4):
        runner.global_batch_step += 1
        optimizer.zero_grad()
        wrapped(torch.randn(2, 1, 6, 6)).pow(2).mean().backward()
        optimizer.step()
        runner.optimizer_stepped = True
        ema.on_batch_end(runner)
    ema.on_loader_end(runner)
    torch.save(
        {"ema": ema.ema.module.state_dict(), "model": unwrap(wrapped).state_dict()},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def test_ema_is_identical_on_every_ddp_rank(tmp_path):
    run_two_ranks(_ddp_ema_worker, free_port(), str(tmp_path))
    ranks = [_load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    _close(ranks[0]["ema"], ranks[1]["ema"], atol=0, rtol=0)
    # the trained parameters are DDP's (equal); BatchNorm statistics are each rank's own
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]) == ("running" not in key), key
    assert not torch.equal(ranks[0]["ema"]["0.weight"], ranks[0]["model"]["0.weight"])


# -- podium average ---------------------------------------------------------------------------
def test_top_k_ranks_the_kept_epochs_by_their_score(run):
    kept = averaging.kept_epochs(run)
    scores = {p["path"].name: p["score"] for p in kept}
    assert set(scores) == {f"train.{e}.pth" for e in range(1, EPOCHS + 1)}
    assert [p["score"] for p in kept] == sorted(scores.values(), reverse=True)  # dice: maximise
    assert averaging.top_k(run, 2) == [p["path"] for p in kept[:2]]


def test_average_equals_the_hand_average_and_is_read_by_predict_and_init_from(
    run, tmp_path, capsys
):
    out = tmp_path / "average.pth"
    assert podium_main(["average", "--run", str(run), "--top-k", "3", "--out", str(out)]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    written = _load(out)
    files = averaging.top_k(run, 3)
    states = [_load(path)["model_state_dict"] for path in files]
    for key, value in written["model_state_dict"].items():
        if value.is_floating_point():
            expected = sum(s[key].double() for s in states) / 3
            assert torch.allclose(value.double(), expected, atol=1e-6), key
    assert written[averaging.AVERAGED_KEY] == [str(p) for p in files]
    # read like any checkpoint: predict (a path, or NAME in the run), init_from
    model, _ = load_model(run, str(out))
    _close(model.state_dict(), written["model_state_dict"], atol=0, rtol=0)
    config = load_run_config(run)
    check_init_from(
        parse_init_from(str(out), "init_from"), call_target(config["model"], "model"), "init_from"
    )
    assert podium_main(["average", "--run", str(run), "--top-k", "2"]) == 0
    model, _ = load_model(run, "average")
    _close(
        model.state_dict(),
        _load(run / "checkpoints" / "average.pth")["model_state_dict"],
        atol=0,
        rtol=0,
    )


def test_bn_update_is_torchs_update_bn_on_the_train_loader(run, tmp_path):
    config = load_run_config(run)
    model = call_target(config["model"], "model")
    files = averaging.top_k(run, 2)
    weights = averaging.average_weights(model, files)
    batches = list(train_loader(config))  # the same augmented batches for both
    ours, theirs = call_target(config["model"], "model"), call_target(config["model"], "model")
    ours.load_state_dict(weights)
    theirs.load_state_dict(weights)
    averaging.update_batchnorm(ours, batches, "image", torch.device("cpu"))
    update_bn([b["image"] for b in batches], theirs)
    _close(ours.state_dict(), theirs.state_dict(), atol=1e-6, rtol=1e-5)
    bn = next(k for k in weights if k.endswith("running_var"))
    assert not torch.allclose(ours.state_dict()[bn], weights[bn], atol=1e-3)  # stats recomputed
    out = tmp_path / "bn.pth"
    assert (
        podium_main(
            ["average", "--checkpoints", *map(str, files), "--bn-update", "--out", str(out)]
        )
        == 0
    )
    written = _load(out)
    assert written["bn_updated"] is True
    assert not torch.allclose(written["model_state_dict"][bn], weights[bn], atol=1e-3)


def test_average_refuses_more_than_kept_and_other_models(run, tmp_path, capsys):
    assert podium_main(["average", "--run", str(run), "--top-k", "5"]) == 1
    message = capsys.readouterr().err.strip()
    assert message == (
        f"podium: error: --top-k 5: {run / 'checkpoints'} keeps 3 epoch checkpoints of its last "
        "stage (train.1.pth, train.2.pth, train.3.pth); lower --top-k, or train with "
        "save_n_best >= 5 in its CheckpointCallback"
    )
    other = _load(run / "checkpoints" / "train.1.pth")
    other["model_state_dict"] = {
        k: v[:1] if v.ndim else v for k, v in other["model_state_dict"].items()
    }
    foreign = tmp_path / "other.pth"
    torch.save(other, foreign)
    first = run / "checkpoints" / "train.2.pth"
    assert (
        podium_main(
            ["average", "--checkpoints", str(first), str(foreign), "--out", str(tmp_path / "x.pth")]
        )
        == 1
    )
    message = capsys.readouterr().err.strip()
    assert message.startswith(
        f"podium: error: checkpoints of different models: {foreign} does not fit {first} ("
    )
    assert len(message.splitlines()) == 1
    # nothing written before is lost: never over a checkpoint of training
    best = run / "checkpoints" / "best.pth"
    before = best.stat().st_mtime_ns
    assert podium_main(["average", "--run", str(run), "--top-k", "2", "--out", str(best)]) == 1
    assert "exists and is not an averaged checkpoint" in capsys.readouterr().err
    assert best.stat().st_mtime_ns == before
    assert not (tmp_path / "x.pth").exists()
