"""`catalyst-dl run` of the nuclei config as a user runs it, then `podium predict` on its run.

One short run (1 frozen-encoder epoch + 3 full epochs on the real nuclei tiles) serves every
test here: outputs on disk and readable, the model learns, prediction reproduces the metric
the validation loader logged.
"""

import json

import pandas as pd
import pytest
import torch

from conftest import run_command
from tb_events import scalars


@pytest.fixture(scope="module")
def run(trained_run):
    return trained_run


def test_run_writes_checkpoints_that_load_weights_only(run):
    logdir, _ = run
    for name in ("best.pth", "last.pth", "best_full.pth", "last_full.pth"):
        checkpoint = torch.load(logdir / "checkpoints" / name, weights_only=True)
        assert "model_state_dict" in checkpoint
        assert any(key.startswith("encoder.") for key in checkpoint["model_state_dict"])
    full = torch.load(logdir / "checkpoints" / "last_full.pth", weights_only=True)
    assert "optimizer_state_dict" in full and "scheduler_state_dict" in full


def test_csv_logs_hold_every_loss_term_and_metric(run):
    logdir, _ = run
    for loader in ("train", "valid"):
        frame = pd.read_csv(logdir / "logs" / f"{loader}.csv")
        assert len(frame) == 4  # 1 warm-up epoch + 3 epochs
        for column in ("loss", "loss_bce", "loss_dice", "dice", "iou"):
            assert frame[column].notna().all(), column
        # the total is the weighted sum the config declares: 1.0 * bce + 1.0 * dice
        assert (frame["loss"] - frame["loss_bce"] - frame["loss_dice"]).abs().max() < 1e-4


def test_tensorboard_events_match_the_csv(run):
    logdir, _ = run
    values = scalars(str(logdir / "tensorboard"))
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    logged = sorted(
        (step, value)
        for (folder, tag, step), value in values.items()
        if folder == "valid" and tag == "dice/epoch"
    )
    assert [value for _, value in logged] == pytest.approx(valid["dice"].tolist(), abs=1e-5)


def test_console_output_is_clean(run):
    _, result = run
    assert "NeptuneDeprecationWarning" not in result.stderr
    assert "requires_grad=True to a scalar" not in result.stderr
    assert "Traceback" not in result.stderr


def test_model_learns_on_real_nuclei(run):
    """Valid Dice rises well above its first-epoch value within 4 short epochs (~60 steps)."""
    logdir, _ = run
    train = pd.read_csv(logdir / "logs" / "train.csv")
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert train["loss"].iloc[-1] < 0.8 * train["loss"].iloc[0]
    assert valid["dice"].max() >= 0.85
    best = json.loads((logdir / "checkpoints" / "_metrics.json").read_text())
    assert best["best"]["valid"]["dice"] == pytest.approx(valid["dice"].iloc[1:].max(), abs=1e-6)


def test_predict_reproduces_the_logged_validation_dice(run, nuclei_data, tmp_path):
    logdir, _ = run
    out = tmp_path / "predictions"
    result = run_command(
        "podium",
        "predict",
        "--run",
        logdir,
        "--data",
        nuclei_data,
        "--split",
        "valid",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted(p.name for p in (out / "masks").glob("*.png"))
    valid_names = pd.read_csv(nuclei_data / "split.csv").query("split == 'valid'")["name"]
    assert masks == sorted(f"{name}.png" for name in valid_names)
    assert len(list((out / "overlays").glob("*.png"))) == len(masks)
    metrics = json.loads((out / "metrics.json").read_text())
    best = json.loads((logdir / "checkpoints" / "_metrics.json").read_text())
    # best.pth is the epoch with the highest valid Dice: prediction must score the same
    assert metrics["dice"][0] == pytest.approx(best["best"]["valid"]["dice"], abs=2e-3)
    assert "Dice" in result.stdout


def test_predict_a_plain_folder_of_images(run, nuclei_data, tmp_path):
    """No images/, masks/ or split.csv: every image in the folder is predicted, no metrics."""
    import shutil

    from podium.cli.main import main as podium_main

    logdir, _ = run
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    names = sorted(p.name for p in (nuclei_data / "images").glob("valid_*.png"))[:2]
    for name in names:
        shutil.copy(nuclei_data / "images" / name, folder / name)
    out = tmp_path / "out"
    assert (
        podium_main(["predict", "--run", str(logdir), "--data", str(folder), "--out", str(out)])
        == 0
    )
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == names
    assert "dice" not in json.loads((out / "metrics.json").read_text())
