"""Resume after SIGKILL, atomic checkpoints, warm start (`init_from`).

The reference for a resumed run is the same config run without interruption: same epochs per
stage, and — Catalyst re-seeds every epoch from (seed, global epoch) and podium restores the
weights, optimizer, scheduler, callbacks and RNG — the same logged metrics.
"""

import errno
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from catalyst import dl
from catalyst.callbacks import EarlyStoppingCallback
from catalyst.callbacks import CheckpointCallback as CatalystCheckpointCallback
from catalyst.utils.config import load_config

from conftest import BIN, REPO
from podium.callbacks.checkpoint import RESUME_KEY, CheckpointCallback, rng_state, set_rng_state
from podium.compat.callback_state import catalyst_callback_state, load_catalyst_callback_state
from podium.errors import PodiumError
from podium.runners import SegmentationRunner

STAGE_LENGTHS = {"warmup": 1, "train": 3}  # train stops early after its 2nd epoch (see below)


def _config(data: Path, split: Path) -> dict:
    """A small 2-stage nuclei config: 16 training crops of 64², a frozen-encoder epoch, then
    a warm-up cosine stage whose early stopping (patience 1, min_delta 1: no later epoch
    counts as better) ends it after epoch 2 of 3 — only if its counters survive a resume."""
    callbacks = {
        "loss": {
            "_target_": "catalyst.callbacks.CriterionCallback",
            "input_key": "logits",
            "target_key": "mask",
            "metric_key": "loss",
        },
        "optimizer": {"_target_": "catalyst.callbacks.OptimizerCallback", "metric_key": "loss"},
        "metrics": {
            "_target_": "podium.callbacks.SegmentationMetricsCallback",
            "input_key": "logits",
            "target_key": "mask",
            "activation": "sigmoid",
        },
        "checkpoint": {
            "_target_": "catalyst.callbacks.CheckpointCallback",
            "use_runner_logdir": True,
            "use_logdir_postfix": True,
            "loader_key": "valid",
            "metric_key": "dice",
            "minimize": False,
            "save_n_best": 2,
        },
    }
    train_callbacks = dict(
        callbacks,
        **{
            "scheduler": {"_target_": "podium.callbacks.WarmupCosineCallback", "warmup_epochs": 1},
            "early_stopping": {
                "_target_": "catalyst.callbacks.EarlyStoppingCallback",
                "loader_key": "valid",
                "metric_key": "dice",
                "minimize": False,
                "patience": 1,
                "min_delta": 1.0,
            },
        },
    )
    stage = {
        "loaders": {"batch_size": 8, "num_workers": 0},
        "criterion": {"_target_": "torch.nn.BCEWithLogitsLoss"},
    }
    return {
        "args": {"logdir": "unused", "seed": 7},
        "runner": {"_target_": "podium.runners.SegmentationRunner"},
        "engine": {"_target_": "catalyst.engines.DeviceEngine"},
        # 0.3 M parameters: every epoch writes six checkpoints (1.4 MB each, not resnet18's
        # 57/172 MB), so the test measures resuming, not the disk
        "model": {
            "_target_": "podium.models.build_segmentation_model",
            "architecture": "unet",
            "encoder": "mobilenetv3_small_050",
            "decoder_channels": 16,
            "in_channels": 1,
            "num_classes": 1,
            "pretrained": False,
        },
        "loggers": {"csv": {"_target_": "catalyst.loggers.CSVLogger"}},
        "data": {
            "root": str(data),
            "split_file": str(split),
            "num_classes": 1,
            "normalize": {"mode": "fixed", "max_value": 255, "mean": [0.16], "std": [0.16]},
            "train_transforms": [{"RandomCrop": {"height": 64, "width": 64}}, {"D4": {}}],
            "valid_transforms": [{"CenterCrop": {"height": 64, "width": 64}}],
        },
        "stages": {
            "warmup": dict(
                stage,
                num_epochs=STAGE_LENGTHS["warmup"],
                freeze_encoder=True,
                optimizer={"_target_": "torch.optim.AdamW", "lr": 0.001},
                callbacks=callbacks,
            ),
            "train": dict(
                stage,
                num_epochs=STAGE_LENGTHS["train"],
                optimizer={"_target_": "torch.optim.AdamW", "lr": 0.0005},
                callbacks=train_callbacks,
            ),
        },
    }


def write_config(nuclei_data: Path, folder: Path, config=_config) -> Path:
    """folder/config.yml of `config(data, split)` with a split.csv of 16 train tiles."""
    split = pd.read_csv(nuclei_data / "split.csv")
    small = pd.concat([split[split.split == "train"].iloc[::7][:16], split[split.split == "valid"]])
    small.to_csv(folder / "split.csv", index=False)
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config(nuclei_data, folder / "split.csv"), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def config_file(nuclei_data, tmp_path_factory) -> Path:
    return write_config(nuclei_data, tmp_path_factory.mktemp("resume"))


def run_in_process(config: Path, logdir: Path, *flags: str) -> None:
    """`catalyst-dl run` in this process (the subprocess start-up costs ~10 s)."""
    from catalyst.dl.scripts.run import main, parse_args

    argv = ["catalyst-dl", "--config", str(config), f"--args/logdir={logdir}:str", *flags]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        main(*parse_args())


def csv_rows(logdir: Path, loader: str = "valid") -> list:
    """Data rows of Catalyst's CSV log (a resumed run appends a second header: skipped)."""
    lines = (logdir / "logs" / f"{loader}.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [
        dict(zip(header, map(float, line.split(","))))
        for line in lines[1:]
        if not line.startswith("step,")
    ]


def logged_epochs(logdir: Path) -> int:
    """Complete rows in valid.csv so far (read while the run writes it)."""
    path = logdir / "logs" / "valid.csv"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return sum(1 for line in lines if line and not line.startswith("step,"))


def epochs_per_stage(rows: list) -> list:
    """Catalyst logs `step` = epoch within the stage: a step of 1 starts the next stage."""
    counts = []
    for row in rows:
        if row["step"] == 1:
            counts.append(0)
        counts[-1] += 1
    return counts


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    logdir = tmp_path_factory.mktemp("reference") / "run"
    run_in_process(config_file, logdir)
    return logdir


def _runner_config(config_file: Path, tmp_path: Path, **args) -> dict:
    """The test config as a dict, for SegmentationRunner(config) in this process."""
    config = load_config(str(config_file), ordered=False)
    config["args"].update(logdir=str(tmp_path / "new"), **args)
    return config


def _start_first_stage(config: dict) -> SegmentationRunner:
    """A runner through experiment and stage start (components built, nothing trained)."""
    runner = SegmentationRunner(config)
    runner.on_experiment_start(runner)
    runner.stage_key = runner.stages[0]
    runner.on_stage_start(runner)
    return runner


# ---------------------------------------------------------------- SIGKILL, then resume
def _start(command: list, log: Path) -> subprocess.Popen:
    """A command in its own process group (so a kill takes its DDP workers too), output to `log`."""
    with open(log, "w") as output:
        return subprocess.Popen(
            list(map(str, command)),
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_in_epoch_2_of_train(
    process: subprocess.Popen, logdir: Path, log: Path, seconds: float
) -> None:
    """SIGKILL the process group once epoch 1 of stage 2 is logged (its checkpoint is written
    before): the run is then in epoch 2 of stage 2."""
    try:
        deadline = time.monotonic() + seconds
        while logged_epochs(logdir) < 2:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no epoch 1 of stage train within {seconds:.0f} s"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed = torch.load(logdir / "checkpoints" / "last_full.pth", weights_only=True)
    assert (killed["stage_key"], killed["stage_epoch_step"]) == ("train", 1)  # not finished


def _assert_ends_like(reference: Path, logdir: Path) -> None:
    """The resumed run logged what the uninterrupted one did and ended where it ended."""
    expected, got = csv_rows(reference), csv_rows(logdir)
    assert epochs_per_stage(expected) == [1, 2]  # early stopping ended `train` after epoch 2
    assert epochs_per_stage(got) == epochs_per_stage(expected)
    for want, have in zip(expected, got):
        assert have == pytest.approx(want, rel=1e-5, abs=1e-7)  # same weights, batches, LR
    final = torch.load(logdir / "checkpoints" / "last_full.pth", weights_only=True)
    assert (final["stage_key"], final["stage_epoch_step"], final["global_epoch_step"]) == (
        "train",
        2,
        3,
    )
    assert final[RESUME_KEY]["early_stop"] is True


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(
    config_file, reference, tmp_path
):
    logdir, log = tmp_path / "run", tmp_path / "killed.log"
    process = _start(
        [BIN / "catalyst-dl", "run", "--config", config_file, f"--args/logdir={logdir}:str"], log
    )
    _kill_in_epoch_2_of_train(process, logdir, log, seconds=300)

    run_in_process(config_file, logdir, "--resume", str(logdir))  # --resume RUN_DIR
    _assert_ends_like(reference, logdir)

    # every checkpoint in the run directory is whole: none was left truncated by the kill
    files = sorted(os.listdir(logdir / "checkpoints"))
    assert not [name for name in files if name.endswith(".tmp")]
    for name in files:
        if name.endswith(".pth"):
            torch.load(logdir / "checkpoints" / name, weights_only=True)
    assert json.loads((logdir / "checkpoints" / "_metrics.json").read_text())["best"]


def _fp16_config(data: Path, split: Path) -> dict:
    """The test config in fp16 with a loss scale so large that the first step overflows: each
    skipped step halves it, so the scale at a kill depends on the steps before it."""
    config = _config(data, split)
    for stage in config["stages"].values():  # podium's: logs `skipped_steps`
        stage["callbacks"]["optimizer"]["_target_"] = "podium.callbacks.OptimizerCallback"
    config["engine"] = {
        "_target_": "podium.runners.engines.DeviceEngine",
        "precision": "fp16",
        "scaler": {"init_scale": 2.0**21},
    }
    return config


def test_fp16_run_killed_then_resumed_carries_its_loss_scale(nuclei_data, tmp_path):
    """SIGKILL in epoch 2 of stage train, then `--autoresume last`: the GradScaler state comes
    back from last_full.pth, so the run logs and ends with what the uninterrupted fp16 run does
    (a fresh scaler would overflow again from 2**14 and skip other steps)."""
    folder = tmp_path / "config"
    folder.mkdir()
    config = write_config(nuclei_data, folder, config=_fp16_config)
    reference, logdir = tmp_path / "reference", tmp_path / "run"
    run_in_process(config, reference)
    skipped = [row["skipped_steps"] for row in csv_rows(reference, "train")]
    assert skipped[0] >= 1, "no step overflowed: the test would not see a lost scaler"
    assert skipped[-1] < 2, "every step overflowed: the weights never changed"

    log = tmp_path / "killed.log"
    command = [BIN / "catalyst-dl", "run", "--config", config, f"--args/logdir={logdir}:str"]
    _kill_in_epoch_2_of_train(_start(command, log), logdir, log, seconds=300)
    killed = torch.load(logdir / "checkpoints" / "last_full.pth", weights_only=True)
    assert killed["scaler"]["scale"] < 2.0**21

    run_in_process(config, logdir, "--autoresume", "last")
    _assert_ends_like(reference, logdir)
    resumed_train, reference_train = (
        [[row[key] for key in sorted(row)] for row in csv_rows(run, "train")]
        for run in (logdir, reference)
    )  # grad_norm is inf / nan in an epoch whose steps all overflowed
    np.testing.assert_allclose(resumed_train, reference_train, rtol=1e-5, equal_nan=True)
    final, expected = (
        torch.load(run / "checkpoints" / "last_full.pth", weights_only=True)["scaler"]
        for run in (logdir, reference)
    )
    assert final == expected


def test_autoresume_of_a_finished_run_trains_nothing(config_file, reference, tmp_path, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(reference, logdir)
    before = (logdir / "logs" / "valid.csv").read_text()
    run_in_process(config_file, logdir, "--autoresume", "last")
    assert "nothing: the run had finished" in capsys.readouterr().out
    assert (logdir / "logs" / "valid.csv").read_text() == before


def test_resume_at_a_stage_boundary_starts_the_next_stage(config_file, reference, tmp_path):
    """Killed after stage 1's last epoch: stage 2 starts at its first epoch, with the weights
    stage 1 ended with — after replaying its `load_on_stage_end: best`."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    stage_end = torch.load(reference / "checkpoints" / "warmup.1_full.pth", weights_only=True)
    stage_end[RESUME_KEY]["load_on_stage_end"] = "best"
    torch.save(stage_end, folder / "last_full.pth")
    best = {
        k: v + 1 if v.is_floating_point() else v for k, v in stage_end["model_state_dict"].items()
    }
    torch.save({"model_state_dict": best}, folder / "best.pth")

    config = _runner_config(config_file, tmp_path, resume=str(tmp_path / "run"))
    runner = _start_first_stage(config)
    assert runner.stages == ["train"] and runner.stage_key == "train"
    assert runner.global_epoch_step == STAGE_LENGTHS["warmup"]
    assert runner.resume_pending is False  # nothing of stage 1's optimizer goes into stage 2
    assert runner.optimizer.state_dict()["state"] == {}
    for name, tensor in runner.model.state_dict().items():
        assert torch.equal(tensor, best[name]), name
    assert all(p.requires_grad for p in runner.model.encoder.parameters())  # train: unfrozen


def test_ddp_run_killed_mid_stage_then_resumed_ends_like_an_uninterrupted_ddp_run(
    config_file, tmp_path
):
    """2 gloo processes (Catalyst spawns them): the whole process group is SIGKILLed in
    epoch 2 of stage `train`, as a preempted node would be; `--autoresume last`, still under
    DDP, logs what the uninterrupted DDP run logs (rank 0 wrote the checkpoint; every rank
    restores from it)."""
    engine = tmp_path / "ddp.yml"
    engine.write_text(
        "engine: {_target_: podium.runners.engines.DDPEngine, backend: gloo, num_processes: 2}\n"
    )
    command = [BIN / "catalyst-dl", "run", "--config", config_file, engine]
    reference, logdir = tmp_path / "reference", tmp_path / "run"
    uninterrupted = _start(command + [f"--args/logdir={reference}:str"], tmp_path / "reference.log")
    try:
        killed = _start(command + [f"--args/logdir={logdir}:str"], tmp_path / "killed.log")
        _kill_in_epoch_2_of_train(killed, logdir, tmp_path / "killed.log", seconds=600)
        assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "reference.log").read_text()[
            -3000:
        ]
    finally:
        if uninterrupted.poll() is None:
            os.killpg(uninterrupted.pid, signal.SIGKILL)
            uninterrupted.wait()

    resumed = _start(
        command + [f"--args/logdir={logdir}:str", "--autoresume", "last"], tmp_path / "resumed.log"
    )
    try:
        assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    assert (
        "(stage train, epoch 1): running stage train from epoch 2"
        in (tmp_path / "resumed.log").read_text()
    )

    _assert_ends_like(reference, logdir)


# ---------------------------------------------------------------- Ctrl-C / SIGTERM, then resume
def _with_signal(config_file: Path, folder: Path, **sender) -> Path:
    """The test config with tests/signal_sender.py's SendSignal in stage `train` (fires once)."""
    config = yaml.safe_load(config_file.read_text())
    sender = {"_target_": "signal_sender.SendSignal", "stage": "train", "epoch": 2, **sender}
    config["stages"]["train"]["callbacks"]["send_signal"] = sender
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _interrupted_run(config: Path, logdir: Path, log: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        str(BIN / "catalyst-dl"),
        "run",
        "--config",
        str(config),
        f"--args/logdir={logdir}:str",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(result.stdout + result.stderr)
    return result


STOPS = {  # what SendSignal does in epoch 2 of stage train → what the one line must say
    "mid-batch": (
        dict(signum=int(signal.SIGINT), loader="train", batch=1),
        130,
        "interrupted by Ctrl-C (SIGINT) in stage train, epoch 2 of 3 (loader train, batch 1 of 2); "
        "the last complete checkpoint is {ckpt}/train.1_full.pth (stage train, epoch 1)",
    ),
    "validation": (
        dict(signum=int(signal.SIGTERM), loader="valid", batch=1),
        143,
        "interrupted by SIGTERM in stage train, epoch 2 of 3 (loader valid, batch 1 of 1); "
        "the last complete checkpoint is {ckpt}/train.1_full.pth (stage train, epoch 1)",
    ),
    "checkpoint write": (
        dict(signum=int(signal.SIGINT), during_save=True),
        130,
        "while writing the end of epoch 2 (checkpoints and logs) (completed first); "
        "the last complete checkpoint is {ckpt}/train.2_full.pth (stage train, epoch 2)",
    ),
    "second signal in the write": (
        dict(signum=int(signal.SIGINT), during_save=True, count=2),
        130,
        "while writing the end of epoch 2 (checkpoints and logs) (stopped; what was "
        "written before is unchanged); the last complete checkpoint is "
        "{ckpt}/train.1_full.pth (stage train, epoch 1)",
    ),
}


@pytest.mark.parametrize("moment", list(STOPS))
def test_signal_stops_with_one_line_and_the_printed_command_resumes(
    moment, config_file, reference, tmp_path
):
    """A real SIGINT / SIGTERM at a chosen moment of epoch 2 of stage `train`: one line (where,
    the last complete checkpoint, the command that continues), exit status 128 + signal, no
    traceback, never "disk full"; every checkpoint left is whole; the printed command then
    ends the run exactly like the uninterrupted one."""
    sender, status, expected = STOPS[moment]
    logdir = tmp_path / "run"
    config = _with_signal(config_file, tmp_path, once_file=str(tmp_path / "sent"), **sender)
    result = _interrupted_run(config, logdir, tmp_path / "interrupted.log")

    assert result.returncode == status, result.stderr[-3000:]
    lines = [
        line for line in result.stderr.splitlines() if "interrupted" in line or "Error" in line
    ]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "disk full" not in result.stderr
    assert lines[0].startswith("catalyst-dl run: interrupted by ")
    assert expected.format(ckpt=logdir / "checkpoints") in lines[0]
    command = lines[0].split("; continue with: ")[1]
    assert shlex.split(command) == [
        "catalyst-dl",
        "run",
        "--config",
        str(config),
        f"--args/logdir={logdir}:str",
        "--autoresume",
        "last",
    ]
    files = sorted(os.listdir(logdir / "checkpoints"))
    assert not [name for name in files if name.endswith(".tmp")]
    for name in files:
        if name.endswith(".pth"):
            torch.load(logdir / "checkpoints" / name, weights_only=True)

    run_in_process(
        config, logdir, *shlex.split(command)[4:]
    )  # the printed command, in this process
    _assert_ends_like(reference, logdir)


def _children(pid: int) -> list:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_sigterm_to_a_ddp_run_stops_every_rank_with_rank_0s_line(config_file, tmp_path):
    """`kill <catalyst-dl>` of a 2-process gloo run (the workers get no signal themselves): the
    parent passes it on, every worker ends, and the one line is rank 0's (stage, epoch, the
    last checkpoint, the command); exit status 143."""
    engine = tmp_path / "ddp.yml"
    engine.write_text(
        "engine: {_target_: podium.runners.engines.DDPEngine, backend: gloo, num_processes: 2}\n"
    )
    config = yaml.safe_load(
        config_file.read_text()
    )  # epoch 2 of train lasts > 8 s: signalled inside it
    config["stages"]["train"]["callbacks"]["slow"] = {
        "_target_": "signal_sender.Slow",
        "stage": "train",
        "epoch": 2,
        "seconds": 4,
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    logdir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [
            str(BIN / "catalyst-dl"),
            "run",
            "--config",
            str(tmp_path / "config.yml"),
            str(engine),
            f"--args/logdir={logdir}:str",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while logged_epochs(logdir) < 2:  # epoch 1 of stage train is logged: epoch 2 runs
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][
                -3000:
            ]
            time.sleep(0.05)
        workers = [
            pid
            for pid in _children(process.pid)
            if b"spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 143, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "interrupted" in line or "Error" in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(
        "catalyst-dl run: interrupted by SIGTERM in stage train, epoch 2 of 3 (loader train"
    )
    assert (
        "the last complete checkpoint "
        f"is {logdir / 'checkpoints' / 'train.1_full.pth'} (stage train, epoch 1)" in lines[0]
    )
    assert lines[0].endswith(f"--args/logdir={logdir}:str --autoresume last")
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # every rank ended


# ---------------------------------------------------------------- resume: bad input
def test_resume_errors_name_the_file(config_file, reference, tmp_path):
    checkpoints = reference / "checkpoints"
    cases = {
        str(tmp_path / "nowhere"): "no such run directory or checkpoint file",
        str(tmp_path): "no checkpoints/last_full.pth",
        str(checkpoints / "best.pth"): "a model-only checkpoint",
    }
    broken = tmp_path / "broken.pth"
    broken.write_bytes((checkpoints / "last_full.pth").read_bytes()[:50_000])
    cases[str(broken)] = "cannot be read (truncated or not a torch file)"
    for resume, message in cases.items():
        with pytest.raises(PodiumError, match=re.escape(message)) as error:
            SegmentationRunner(_runner_config(config_file, tmp_path, resume=resume))
        assert Path(resume).name in str(error.value)

    config = _runner_config(config_file, tmp_path, resume=str(reference))
    config["stages"]["finetune"] = config["stages"].pop("train")
    with pytest.raises(PodiumError, match="from stage 'train', which this config does not have"):
        SegmentationRunner(config)

    config = _runner_config(
        config_file, tmp_path, resume=str(reference / "checkpoints" / "warmup.1_full.pth")
    )
    config["model"]["decoder_channels"] = 8
    with pytest.raises(PodiumError, match=r"does not fit the config's model .* shape mismatches"):
        SegmentationRunner(config)


# ---------------------------------------------------------------- atomic checkpoint writes
def _fake_runner(model, epoch: int, dice: float):
    """What CheckpointCallback reads from a runner at epoch end."""
    optimizer = torch.optim.AdamW(model.parameters())
    return SimpleNamespace(
        engine=dl.DeviceEngine("cpu"),
        model=model,
        criterion=None,
        optimizer=optimizer,
        scheduler=None,
        callbacks={},
        need_early_stop=False,
        is_infer_stage=False,
        run_key="run",
        stage_key="train",
        loader_key="valid",
        loader_batch_step=1,
        loader_sample_step=4,
        global_epoch_step=epoch,
        global_batch_step=epoch,
        global_sample_step=4 * epoch,
        stage_epoch_step=epoch,
        stage_batch_step=epoch,
        stage_sample_step=4 * epoch,
        epoch_metrics={"valid": {"dice": dice}},
    )


def _save_half_then_fail(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):  # Catalyst's own save passes a path
        f = open(f, "wb")
    f.write(b"half a checkpoint")
    f.flush()
    raise OSError("killed mid-write")


def _copy_half_then_fail(source, target, *args, **kwargs):
    if isinstance(source, (str, os.PathLike)):  # shutil.copyfile (Catalyst's best/last copies)
        source, target = open(source, "rb"), open(target, "wb")
    target.write(source.read(100))
    target.flush()
    raise OSError("killed mid-write")


def _no_hard_links(source, target):
    raise OSError(errno.EPERM, "Operation not permitted")


_replace = os.replace


def _replace_dies_for_best_and_last(source, target, *args, **kwargs):
    if os.path.basename(target).startswith(("best", "last")):
        raise OSError("killed mid-write")
    return _replace(source, target, *args, **kwargs)


@pytest.mark.parametrize(
    "dies_in", ["torch.save", "the link to best/last", "the copy to best/last (no hard links)"]
)
def test_a_write_dying_half_way_leaves_the_previous_checkpoints_whole(
    tmp_path, monkeypatch, dies_in
):
    callback = CheckpointCallback(
        logdir=str(tmp_path), loader_key="valid", metric_key="dice", minimize=False
    )
    model = torch.nn.Linear(3, 1)
    callback.on_epoch_end(_fake_runner(model, 1, dice=0.5))
    saved = {
        name: (tmp_path / name).read_bytes()
        for name in ("best.pth", "best_full.pth", "last.pth", "last_full.pth", "_metrics.json")
    }

    if dies_in == "torch.save":
        monkeypatch.setattr(torch, "save", _save_half_then_fail)
    elif dies_in == "the link to best/last":
        monkeypatch.setattr(os, "replace", _replace_dies_for_best_and_last)
    else:
        monkeypatch.setattr(os, "link", _no_hard_links)
        monkeypatch.setattr(shutil, "copyfileobj", _copy_half_then_fail)
        monkeypatch.setattr(shutil, "copyfile", _copy_half_then_fail)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError, match="killed mid-write"):
        callback.on_epoch_end(_fake_runner(model, 2, dice=0.9))  # a new best, never written
    monkeypatch.undo()

    for name, content in saved.items():
        assert (tmp_path / name).read_bytes() == content, name
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    for name in os.listdir(tmp_path):  # no half-written file left behind either
        if name.endswith(".pth"):
            torch.load(tmp_path / name, weights_only=True)
    last = torch.load(tmp_path / "last_full.pth", weights_only=True)
    assert last["stage_epoch_step"] == 1 and "optimizer_state_dict" in last


def test_checkpoint_carries_the_resume_state(tmp_path):
    callback = CheckpointCallback(
        logdir=str(tmp_path),
        loader_key="valid",
        metric_key="dice",
        minimize=False,
        save_n_best=1,
        load_on_stage_end="best",
    )
    stopper = EarlyStoppingCallback(
        patience=3, loader_key="valid", metric_key="dice", minimize=False
    )
    stopper.best_score, stopper.num_no_improvement_epochs = 0.75, 2
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    runner = _fake_runner(model, 1, dice=0.5)
    runner.callbacks = {"early_stopping": stopper, "checkpoint": callback}
    callback.on_epoch_end(runner)
    runner.epoch_metrics = {"valid": {"dice": 0.25}}
    runner.stage_epoch_step = runner.global_epoch_step = 2
    callback.on_epoch_end(runner)

    state = torch.load(tmp_path / "last_full.pth", weights_only=True)[RESUME_KEY]
    assert state["callbacks"]["early_stopping"] == {
        "best_score": 0.75,
        "num_no_improvement_epochs": 2,
    }
    (best,) = state["callbacks"]["checkpoint"]["top_best_metrics"]  # save_n_best: 1
    assert best[:4] == (0.5, f"{tmp_path}/train.1.pth", "train", 1)
    assert state["callbacks"]["checkpoint"]["best_score"] == 0.5
    assert state["frozen"] == ["0.weight"]
    assert state["load_on_stage_end"] == "best" and state["early_stop"] is False


def test_catalyst_callback_counters_round_trip():
    """compat.callback_state: without it a resumed stage forgets early-stopping counts and
    the best score (Catalyst's callbacks have no state_dict)."""
    stopper = EarlyStoppingCallback(
        patience=3, loader_key="valid", metric_key="dice", minimize=False
    )
    stopper.best_score, stopper.num_no_improvement_epochs = 0.8, 2
    checkpointer = CatalystCheckpointCallback(logdir="x", loader_key="valid", metric_key="dice")
    checkpointer.best_score = 0.8
    checkpointer.top_best_metrics = [(0.8, "x/train.3.pth", "train", 3, {"valid": {"dice": 0.8}})]
    fresh_stopper = EarlyStoppingCallback(
        patience=3, loader_key="valid", metric_key="dice", minimize=False
    )
    fresh_checkpointer = CatalystCheckpointCallback(
        logdir="x", loader_key="valid", metric_key="dice"
    )
    for old, new in ((stopper, fresh_stopper), (checkpointer, fresh_checkpointer)):
        buffer = io.BytesIO()
        torch.save(catalyst_callback_state(old), buffer)
        buffer.seek(0)
        assert load_catalyst_callback_state(new, torch.load(buffer, weights_only=True))
    assert (fresh_stopper.best_score, fresh_stopper.num_no_improvement_epochs) == (0.8, 2)
    assert fresh_checkpointer.best_score == 0.8
    assert fresh_checkpointer.top_best_metrics == checkpointer.top_best_metrics
    assert catalyst_callback_state(dl.CriterionCallback("a", "b", "c")) is None


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    torch.save(rng_state(), tmp_path / "rng.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


# ---------------------------------------------------------------- warm start
def test_init_from_loads_weights_and_optimizer_state(config_file, reference, tmp_path):
    best = reference / "checkpoints" / "best.pth"
    saved = torch.load(reference / "checkpoints" / "best_full.pth", weights_only=True)
    config = _runner_config(config_file, tmp_path)
    config["stages"]["train"]["init_from"] = {"path": str(best), "optimizer": True}
    del config["stages"]["warmup"]
    runner = _start_first_stage(config)
    for name, tensor in runner.model.state_dict().items():
        assert torch.equal(tensor, saved["model_state_dict"][name]), name
    state = runner.optimizer.state_dict()
    assert state["state"][0]["step"] == saved["optimizer_state_dict"]["state"][0]["step"] > 0
    assert torch.equal(
        state["state"][0]["exp_avg"], saved["optimizer_state_dict"]["state"][0]["exp_avg"]
    )
    assert runner.optimizer.param_groups[0]["lr"] == 0.0005  # the config's, not the saved one


def test_top_level_init_from_is_for_the_first_stage_weights_only(config_file, reference, tmp_path):
    config = _runner_config(config_file, tmp_path)
    config["init_from"] = str(reference)  # a run directory: its checkpoints/best.pth
    runner = _start_first_stage(config)
    saved = torch.load(reference / "checkpoints" / "best.pth", weights_only=True)
    for name, tensor in runner.model.state_dict().items():
        assert torch.equal(tensor, saved["model_state_dict"][name]), name
    assert runner.optimizer.state_dict()["state"] == {}  # a fresh optimizer


class _RunsCode:
    def __reduce__(self):
        return print, ("this checkpoint ran code",)


def test_init_from_errors(config_file, reference, tmp_path):
    from podium.models import build_segmentation_model

    best = reference / "checkpoints" / "best.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(best.read_bytes()[:40_000])
    other = tmp_path / "fpn.pth"
    fpn = build_segmentation_model("fpn", "resnet18", in_channels=1, num_classes=1)
    torch.save({"model_state_dict": fpn.state_dict()}, other)
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "extra": _RunsCode()}, evil)
    cases = [
        (
            str(tmp_path / "missing.pth"),
            r"stages/train/init_from: checkpoint .*missing.pth does not exist",
        ),
        (str(truncated), r"truncated.pth cannot be read \(truncated or not a torch file\)"),
        (str(other), r"fpn.pth does not fit the model .*missing keys \(e.g. .*unexpected keys"),
        ({"path": str(tmp_path / "x.pth"), "optimizr": True}, 'did you mean "optimizer"'),
        ({"path": str(other), "optimizer": True}, "holds no optimizer state"),
        (str(evil), "was refused: it holds more than tensors"),
    ]
    for value, message in cases:
        config = _runner_config(config_file, tmp_path)
        config["stages"]["train"]["init_from"] = value
        with pytest.raises(PodiumError, match=message):
            SegmentationRunner(config)
    config = _runner_config(config_file, tmp_path)
    config["init_from"] = str(best)
    config["stages"]["warmup"]["init_from"] = str(best)
    with pytest.raises(PodiumError, match="at the top level and in stages/warmup"):
        SegmentationRunner(config)


def test_init_from_strict_false_loads_what_fits(config_file, tmp_path):
    """A checkpoint with another number of classes: strict (default) refuses it naming the
    shape mismatch; `strict: false` loads every tensor that fits and leaves the head."""
    from podium.models import build_segmentation_model

    two_classes = build_segmentation_model(
        "unet", "mobilenetv3_small_050", in_channels=1, num_classes=2, decoder_channels=16
    )
    path = tmp_path / "two_classes.pth"
    torch.save(two_classes.state_dict(), path)  # a bare state dict works too
    config = _runner_config(config_file, tmp_path)
    config["init_from"] = str(path)
    with pytest.raises(PodiumError, match=r"shape mismatches \(e.g. .*checkpoint \(2, 16"):
        SegmentationRunner(config)

    config["init_from"] = {"path": str(path), "strict": False}
    runner = _start_first_stage(config)
    saved = two_classes.state_dict()
    loaded = skipped = 0
    for name, tensor in runner.model.state_dict().items():
        if tensor.shape == saved[name].shape:
            assert torch.equal(tensor, saved[name]), name
            loaded += 1
        else:
            skipped += 1
    assert loaded > 100 and skipped >= 1
