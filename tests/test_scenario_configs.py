"""The scenario configs under configs/ train end to end with `catalyst-dl run` (1 epoch per stage)
and log what their comments promise."""

import pandas as pd
import pytest

from conftest import REPO, catalyst_run


@pytest.fixture(scope="module")
def voc_data(tmp_path_factory):
    from podium.datasets.samples import write_sample

    out = tmp_path_factory.mktemp("data") / "voc"
    write_sample("voc", out)
    return out


def test_nuclei_focal_dice(tmp_path, nuclei_data):
    logdir = tmp_path / "run"
    result = catalyst_run(
        logdir,
        nuclei_data,
        "--stages/warmup/num_epochs=1:int",
        "--stages/train/num_epochs=1:int",
        config=REPO / "configs" / "nuclei" / "unet_resnet18_focal_dice.yml",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    train = pd.read_csv(logdir / "logs" / "train.csv")
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert len(train) == len(valid) == 2  # one row per epoch, both stages
    for column in ("loss", "loss_focal", "loss_dice", "dice", "iou", "images_per_s"):
        assert column in valid.columns, column
    # the stack's total is the weighted sum of its logged terms (weights 1 and 1)
    assert valid["loss"].to_numpy() == pytest.approx(
        (valid["loss_focal"] + valid["loss_dice"]).to_numpy(), rel=1e-5
    )
    assert {"grad_norm", "lr", "time/data_fraction"} <= set(train.columns)
    assert (logdir / "progress.png").stat().st_size > 10_000
    overlays = sorted((logdir / "overlays" / "train" / "epoch_1").glob("*.png"))
    assert [p.name.split("_")[0] for p in overlays] == ["best", "best", "worst", "worst"]
    assert (logdir / "checkpoints" / "best.pth").exists()
    # the resolved augmentation pipelines are saved beside the config and read back unchanged
    import json

    from podium.datasets import build_transforms, transforms_to_dict

    saved = json.loads((logdir / "configs" / "transforms_train.json").read_text())
    assert saved["valid"] is None
    names = [t["__class_fullname__"] for t in saved["train"]["transform"]["transforms"]]
    assert names == ["RandomCrop", "D4", "RandomBrightnessContrast"]
    rebuilt = transforms_to_dict(build_transforms(saved["train"]))
    assert json.loads(json.dumps(rebuilt)) == saved["train"]


def test_voc_multiclass_ce_lovasz(tmp_path, voc_data):
    logdir = tmp_path / "run"
    result = catalyst_run(
        logdir,
        voc_data,
        "--stages/train/num_epochs=2:int",
        config=REPO / "configs" / "voc" / "unet_resnet18_ce_lovasz.yml",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    classes = ["background", "bottle", "chair", "diningtable", "person"]
    for name in classes:
        assert f"dice/{name}" in valid.columns and f"iou/{name}" in valid.columns
    assert "dice/cat" not in valid.columns  # only the classes the config lists
    macro = valid[[f"dice/{name}" for name in classes]].mean(axis=1)
    assert valid["dice"].to_numpy() == pytest.approx(macro.to_numpy(), rel=1e-6)
    assert valid["loss"].to_numpy() == pytest.approx(
        (valid["loss_ce"] + 0.5 * valid["loss_lovasz"]).to_numpy(), rel=1e-5
    )


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yml")), ids=lambda p: p.name)
def test_every_target_in_the_shipped_configs_resolves(path, monkeypatch):
    """Also with PODIUM_SAFE_TARGETS=1: the shipped configs use only allow-listed packages."""
    import yaml

    from podium.targets import check_targets

    monkeypatch.setenv("PODIUM_SAFE_TARGETS", "1")
    check_targets(yaml.safe_load(path.read_text()))
