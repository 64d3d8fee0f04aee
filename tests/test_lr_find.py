"""`podium lr-find`: a real sweep of the nuclei config on the real sample, and its parts."""

import csv
import math
import re

import cv2
import pytest
import torch

from conftest import NUCLEI_CONFIG
from podium.callbacks.lr_sweep import LRSweepCallback
from podium.cli.lr_find import lr_schedule, smooth, suggest_lr
from podium.cli.main import main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, nuclei_data):
    """20 steps of the first stage (frozen-encoder warm-up: the cheapest) with batches of 4,
    as a user would type it (the data root and logdir moved to tmp by overrides)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("lrfind")
    logdir = root / "run"
    stdout = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # twice as fast on the shared 2-core CPU (no oversubscription)
    try:
        with contextlib.redirect_stdout(stdout):
            status = main(
                [
                    "lr-find",
                    "--config",
                    str(NUCLEI_CONFIG),
                    "--steps",
                    "20",
                    f"--data/root={nuclei_data}:str",
                    f"--args/logdir={logdir}:str",
                    "--stages/warmup/loaders/batch_size=4:int",
                ]
            )
    finally:
        torch.set_num_threads(threads)
    return status, stdout.getvalue(), logdir


def test_lr_find_exits_0_and_writes_csv_and_png(sweep):
    status, output, logdir = sweep
    assert status == 0, output
    assert output.startswith("lr-find: stage warmup, ")  # the default: the first stage
    out = logdir / "lr_find"  # the default --out
    assert cv2.imread(str(out / "lr_find.png")) is not None
    with open(out / "lr_find.csv") as file:
        rows = list(csv.DictReader(file))
    assert 2 <= len(rows) <= 20
    assert [int(row["step"]) for row in rows] == list(range(len(rows)))
    assert all(math.isfinite(float(row["loss"])) for row in rows[:-1])


def test_lr_rises_exponentially_over_the_sweep_range(sweep):
    _, _, logdir = sweep
    with open(logdir / "lr_find" / "lr_find.csv") as file:
        lrs = [float(row["lr"]) for row in csv.DictReader(file)]
    assert lrs[0] == pytest.approx(1e-7)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert all(r > 1 for r in ratios)
    assert ratios == pytest.approx([(1 / 1e-7) ** (1 / 19)] * len(ratios), rel=1e-9)


def test_printed_lr_is_within_the_sweep(sweep):
    _, output, _ = sweep
    match = re.search(r"suggested LR: ([0-9.e+-]+) \((.+)\)", output)
    assert match, output
    assert 1e-7 <= float(match.group(1)) <= 1.0


def test_lr_find_leaves_the_run_alone(sweep):
    """Only lr_find/ appears in the run directory: no checkpoints, logs or configs."""
    _, _, logdir = sweep
    assert sorted(p.name for p in logdir.iterdir()) == ["lr_find"]


def test_unknown_stage_is_one_line_error(capsys):
    status = main(["lr-find", "--config", str(NUCLEI_CONFIG), "--stage", "trian"])
    assert status == 1  # podium: error: ... exits 1, like catalyst-dl run
    assert "no stage 'trian'" in capsys.readouterr().err


def test_schedule_smoothing_and_suggestion():
    lrs = lr_schedule(1e-4, 1e-0, 5)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert smooth([2.0, 2.0, 2.0], beta=0.9) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected
    # loss flat, then falls fastest between 1e-2 and 1e-1, minimum at 1e-1, then explodes
    lrs = lr_schedule(1e-5, 1e1, 7)
    losses = [1.0, 1.0, 0.95, 0.9, 0.3, 0.5, 5.0]
    suggestion = suggest_lr(lrs, losses)
    assert suggestion["steepest"] == pytest.approx(math.sqrt(1e-2 * 1e-1))
    assert suggestion["min_over_10"] == pytest.approx(1e-2)


def test_sweep_stops_when_the_loss_diverges():
    class Optimizer:
        param_groups = [{"lr": 0.0}, {"lr": 0.0}]

    class Runner:
        is_train_loader = True
        optimizer = Optimizer()
        callbacks = {}
        need_early_stop = False
        batch_metrics = {}

    runner = Runner()
    callback = LRSweepCallback(lr_schedule(1e-3, 1.0, 10), beta=0.0, divergence=4.0)
    callback.on_stage_start(runner)
    for loss in [1.0, 0.5, 0.4, 1.0, 2.5, 9.0, 9.0]:
        callback.on_batch_start(runner)
        expected = callback.lrs[len(callback.records)]
        assert {group["lr"] for group in runner.optimizer.param_groups} == {expected}
        runner.batch_metrics = {"loss": loss}
        callback.on_batch_end(runner)
        if runner.need_early_stop:
            break
    assert len(callback.records) == 5  # 2.5 > 4 × 0.4
    assert "4× its best" in callback.stop_reason


def test_configs_merge_and_overrides_apply_like_catalyst_dl_run(tmp_path):
    from podium.cli.lr_find import load_run_config

    extra = tmp_path / "extra.yml"
    extra.write_text("stages:\n  train:\n    optimizer: {lr: 0.01}\n")
    config = load_run_config(
        [str(NUCLEI_CONFIG), str(extra)], ["--stages/train/loaders/batch_size=2:int"]
    )
    assert config["stages"]["train"]["optimizer"]["lr"] == 0.01
    assert config["stages"]["train"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert config["stages"]["train"]["loaders"]["batch_size"] == 2
    assert list(config["stages"]) == ["warmup", "train"]
