"""Self-training: `podium pseudo-label` (soft maps = the ensemble's p × 255, negative mining,
manifest), soft-labeled data (`data: {soft_labels: ...}`) and the loss stack's hard / soft terms.

The pseudo-label tests use the trained nuclei run (session fixture) as two folds of a cv run
directory; the data and loss tests use tiny hand-made folders and a one-layer model.
"""

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import podium as _podium_compat  # noqa: F401  (compat first)
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder
from torch import nn
from torch.utils.data import DataLoader

from conftest import REPO, catalyst_run
from podium.callbacks.loss_stack import LossStackCallback
from podium.cli.main import main as podium_main
from podium.datasets import build_segmentation_datasets
from podium.datasets.soft_labels import SoftLabelDataset
from podium.errors import PodiumError
from podium.inference.probability_maps import write_probability_map
from podium.inference.pseudo_label import choose_kinds

NEGATIVE_NAMES = ("empty_a", "empty_b", "empty_c")


def podium(*args) -> int:
    return podium_main([str(a) for a in args])


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------- pseudo-label
@pytest.fixture(scope="module")
def teacher(trained_run, nuclei_data, tmp_path_factory):
    """A podium cv layout over the trained run: fold_0 = its best checkpoint, fold_1 = its
    warm-up checkpoint (another model), fold_2 unfinished (no cv_done.json: left out); and an
    unlabeled folder: the 4 validation tiles + 3 near-empty images (negative candidates)."""
    run_dir, _ = trained_run
    root = tmp_path_factory.mktemp("pseudo")
    cv = root / "cv"
    for fold, checkpoint in enumerate(("best.pth", "warmup.1.pth", "best.pth")):
        fold_dir = cv / f"fold_{fold}"
        (fold_dir / "checkpoints").mkdir(parents=True)
        (fold_dir / "configs").symlink_to(run_dir / "configs")
        (fold_dir / "checkpoints" / "best.pth").symlink_to(run_dir / "checkpoints" / checkpoint)
        if fold < 2:
            (fold_dir / "cv_done.json").write_text("{}")
    unlabeled = root / "unlabeled"
    unlabeled.mkdir()
    split = pd.read_csv(nuclei_data / "split.csv")
    for name in split.loc[split["split"] == "valid", "name"]:
        shutil.copy(nuclei_data / "images" / f"{name}.png", unlabeled / f"{name}.png")
    for offset, name in enumerate(NEGATIVE_NAMES):
        cv2.imwrite(str(unlabeled / f"{name}.png"), np.full((128, 128), 1 + 2 * offset, np.uint16))
    # the reference: podium predict's probability maps of the same fold ensemble
    reference = root / "reference"
    assert (
        podium(
            "predict",
            "--no-progress",
            "--run",
            cv / "fold_0",
            "--run",
            cv / "fold_1",
            "--data",
            unlabeled,
            "--tta",
            "flip",
            "--probabilities",
            "--no-masks",
            "--no-overlays",
            "--out",
            reference,
        )
        == 0
    )
    maps = {p.stem: read_png(p) for p in (reference / "probabilities").glob("*.png")}
    return cv, unlabeled, maps


def negative_threshold(maps):
    """A threshold between the 3rd and 4th lowest distinct max p: 3 images without positives."""
    tops = sorted({int(m.max()) for m in maps.values()})
    assert len(tops) >= 4, tops
    return (tops[2] + tops[3]) / 2 / 255


def test_soft_maps_are_the_ensemble_probabilities_and_negatives_are_capped(
    teacher, tmp_path, capsys
):
    cv, unlabeled, reference = teacher
    threshold = negative_threshold(reference)
    out = tmp_path / "soft"
    assert (
        podium(
            "pseudo-label",
            "--cv",
            cv,
            "--data",
            unlabeled,
            "--out",
            out,
            "--tta",
            "flip",
            "--negatives",
            1,
            "--negative-threshold",
            threshold,
            "--no-progress",
        )
        == 0
    )
    assert "4 soft, 1 negative, 2 dropped" in capsys.readouterr().out
    manifest = pd.read_csv(out / "manifest.csv", dtype={"name": str})
    # by hand: max p per image; the lowest of the three below the threshold is the negative
    tops = {name: int(m.max()) / 255 for name, m in reference.items()}
    below = sorted((top, name) for name, top in tops.items() if top < threshold)
    assert len(below) == 3
    expected = {name: "soft" for name, top in tops.items() if top >= threshold}
    expected[below[0][1]] = "negative"
    assert dict(zip(manifest["name"], manifest["kind"])) == expected
    assert list(manifest["name"]) == sorted(expected)
    for row in manifest.itertuples():
        top = reference[row.name] / 255
        assert row.max_prob == pytest.approx(top.max(), abs=1e-6)
        assert row.positive_fraction == pytest.approx((top >= threshold).mean(), abs=1e-6)
        # the kept maps are byte for byte podium predict's maps of the same ensemble
        assert np.array_equal(
            read_png(out / "probabilities" / f"{row.name}.png"), reference[row.name]
        )
    for _, dropped in below[1:]:
        assert not (out / "probabilities" / f"{dropped}.png").exists()
    settings = json.loads((out / "pseudo_label.json").read_text())
    assert settings["images"] == os.path.abspath(unlabeled)
    assert [m["run"] for m in settings["models"]] == [
        str(cv / "fold_0"),
        str(cv / "fold_1"),
    ]  # fold_2 unfinished
    assert settings["counts"] == {"soft": 4, "negative": 1, "dropped": 2}
    # an existing output folder is not overwritten by accident
    assert (
        podium("pseudo-label", "--cv", cv, "--data", unlabeled, "--out", out, "--no-progress") == 1
    )
    assert "already holds pseudo-labels" in capsys.readouterr().err


def test_without_negative_mining_every_image_is_soft(teacher, tmp_path):
    cv, unlabeled, reference = teacher
    out = tmp_path / "soft"
    assert (
        podium(
            "pseudo-label",
            "--cv",
            cv / "fold_0",
            "--data",
            unlabeled,
            "--out",
            out,
            "--no-progress",
        )
        == 0
    )
    manifest = pd.read_csv(out / "manifest.csv", dtype={"name": str})
    assert set(manifest["kind"]) == {"soft"} and len(manifest) == len(reference)
    assert (
        json.loads((out / "pseudo_label.json").read_text())["tta"] == "none"
    )  # one run: no cv.yml


def test_choose_kinds_is_deterministic():
    stats = {"b": (0.2, 0.0), "a": (0.2, 0.0), "c": (0.1, 0.0), "d": (0.9, 0.3), "e": (0.4, 0.0)}
    assert choose_kinds(stats, 0.5, None) == dict.fromkeys(stats, "soft")
    assert choose_kinds(stats, 0.5, 2) == {
        "c": "negative",
        "a": "negative",
        "b": None,
        "e": None,
        "d": "soft",
    }
    assert choose_kinds(stats, 0.5, 0) == {"a": None, "b": None, "c": None, "e": None, "d": "soft"}


def test_bad_teacher_and_settings_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "cv" / "fold_0").mkdir(parents=True)  # a fold without cv_done.json
    (tmp_path / "images").mkdir()
    assert (
        podium(
            "pseudo-label",
            "--cv",
            tmp_path / "cv",
            "--data",
            tmp_path / "images",
            "--out",
            tmp_path / "o",
        )
        == 1
    )
    assert "none of its 1 fold(s) is finished" in capsys.readouterr().err
    assert (
        podium(
            "pseudo-label",
            "--cv",
            tmp_path / "cv",
            "--data",
            tmp_path / "images",
            "--out",
            tmp_path / "o",
            "--negatives",
            -1,
        )
        == 1
    )
    assert "--negatives must be an integer >= 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------- soft-labeled data
def labeled_folder(root: Path, names, size=16, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        image = rng.integers(0, 255, (size, size)).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), (image > 128).astype(np.uint8) * 255)
    return root


def soft_folder(root: Path, kinds, size=16, seed=1):
    """What podium pseudo-label writes: unlabeled images, probability maps, manifest, settings."""
    rng = np.random.default_rng(seed)
    images = root / "unlabeled"
    images.mkdir(parents=True)
    maps = {}
    for name in kinds:
        cv2.imwrite(
            str(images / f"{name}.png"), rng.integers(0, 255, (size, size)).astype(np.uint8)
        )
        maps[name] = rng.random((size, size)).astype(np.float32)
        write_probability_map(root / "soft" / "probabilities", name, maps[name])
    with open(root / "soft" / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "kind", "max_prob", "positive_fraction"])
        writer.writerows([name, kind, 1.0, 0.5] for name, kind in kinds.items())
    (root / "soft" / "pseudo_label.json").write_text(json.dumps({"images": str(images)}))
    return root / "soft", {name: np.rint(m * 255) / 255 for name, m in maps.items()}


@pytest.fixture()
def mixed(tmp_path):
    labeled = labeled_folder(tmp_path / "labeled", ["l0", "l1", "l2", "v0"])
    (labeled / "split.csv").write_text("name,split\nl0,train\nl1,train\nl2,train\nv0,valid\n")
    soft_dir, maps = soft_folder(tmp_path, {"s0": "soft", "s1": "soft", "n0": "negative"})
    return labeled, soft_dir, maps


def test_soft_samples_carry_flag_soft_and_hard_targets(mixed):
    labeled, soft_dir, maps = mixed
    normalize = {"mode": "fixed", "max_value": 255, "mean": [0.5], "std": [0.25]}
    datasets = build_segmentation_datasets(
        labeled,
        normalize=normalize,
        soft_labels=str(soft_dir),
        train_transforms=[{"HorizontalFlip": {"p": 1.0}}],
    )
    train, valid = datasets["train"], datasets["valid"]
    assert train.names == ["l0", "l1", "l2", "s0", "s1", "n0"] and valid.names == ["v0"]
    items = {item["name"]: item for item in (train[i] for i in range(len(train)))}
    for name in ("s0", "s1"):
        flipped = maps[name][:, ::-1]  # the soft map moves with its image
        assert items[name]["soft"].item() is True
        np.testing.assert_allclose(items[name]["soft_mask"][0].numpy(), flipped, atol=1e-6)
        assert torch.equal(items[name]["mask"], (items[name]["soft_mask"] > 0.5).float())
        image = cv2.imread(str(soft_dir.parent / "unlabeled" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(
            items[name]["image"][0].numpy(), (image[:, ::-1] / 255 - 0.5) / 0.25, atol=1e-5
        )
    negative = items["n0"]  # trained as a labeled empty image
    assert (
        negative["soft"].item() is False
        and negative["mask"].sum() == 0
        and negative["soft_mask"].sum() == 0
    )
    for name in ("l0", "l1", "l2"):
        assert items[name]["soft"].item() is False
        assert torch.equal(items[name]["soft_mask"], items[name]["mask"])
    assert valid[0]["soft"].item() is False and "soft_mask" in valid[0]
    # one pipeline for both kinds, so the runner's per-epoch seeding reaches every sample
    assert all(part.transforms is train.transforms for part in train.parts)


def test_multiclass_soft_targets_are_one_hot_and_argmax(tmp_path):
    labeled = tmp_path / "labeled"
    labeled_folder(labeled, ["l0", "v0"])
    for name in ("l0", "v0"):
        cv2.imwrite(
            str(labeled / "masks" / f"{name}.png"),
            np.arange(16 * 16).reshape(16, 16).astype(np.uint8) % 3,
        )
    (labeled / "split.csv").write_text("name,split\nl0,train\nv0,valid\n")
    (tmp_path / "unlabeled").mkdir()
    cv2.imwrite(str(tmp_path / "unlabeled" / "s0.png"), np.zeros((16, 16), np.uint8))
    p = (
        np.random.default_rng(0)
        .dirichlet(np.ones(3), size=(16, 16))
        .transpose(2, 0, 1)
        .astype(np.float32)
    )
    write_probability_map(tmp_path / "soft" / "probabilities", "s0", p, ["bg", "a", "b"])
    (tmp_path / "soft" / "manifest.csv").write_text(
        "name,kind,max_prob,positive_fraction\ns0,soft,1,1\n"
    )
    source = {"dir": str(tmp_path / "soft"), "images": str(tmp_path / "unlabeled")}
    train = build_segmentation_datasets(labeled, num_classes=3, soft_labels=[source])["train"]
    label, soft = train[0], train[1]
    assert label["soft_mask"].shape == (3, 16, 16)
    assert torch.equal(label["soft_mask"].argmax(0), label["mask"]) and torch.equal(
        label["soft_mask"].sum(0), torch.ones(16, 16)
    )
    np.testing.assert_allclose(soft["soft_mask"].numpy(), np.rint(p * 255) / 255, atol=1e-6)
    assert soft["mask"].dtype == torch.int64 and torch.equal(
        soft["mask"], soft["soft_mask"].argmax(0)
    )
    with pytest.raises(PodiumError, match="have 3 class"):  # maps of another task
        SoftLabelDataset(tmp_path / "soft", tmp_path / "unlabeled", num_classes=1)


class Recorder(Callback):
    """The first train batch (after the loss stack ran) and every loader's metrics."""

    def __init__(self):
        super().__init__(order=CallbackOrder.external)
        self.batch, self.metrics, self.loaders = None, None, {}

    def on_batch_end(self, runner):
        if runner.is_train_loader and self.batch is None:
            self.batch = {
                k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                for k, v in runner.batch.items()
            }
            self.metrics = {
                k: float(torch.as_tensor(v).detach())
                for k, v in runner.batch_metrics.items()
                if k.startswith("loss")
            }

    def on_loader_end(self, runner):
        self.loaders[runner.loader_key] = dict(runner.loader_metrics)


class NoLogger(dl.ILogger):
    def __init__(self):
        super().__init__(log_batch_metrics=False, log_epoch_metrics=False)

    def log_metrics(self, *args, **kwargs):
        pass


def bce(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy on logits by its definition, in float64."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))


def test_a_mixed_batch_logs_hard_and_soft_losses_equal_to_hand_references(mixed):
    labeled, soft_dir, _ = mixed
    datasets = build_segmentation_datasets(labeled, soft_labels={"dir": str(soft_dir)})
    loaders = {
        "train": DataLoader(datasets["train"], batch_size=6),
        "valid": DataLoader(datasets["valid"], batch_size=1),
    }
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 3, padding=1)
    terms = {
        "bce": {
            "samples": "hard",
            "input_key": "logits",
            "target_key": "mask",
            "criterion": {"_target_": "podium.losses.SoftBCEWithLogitsLoss"},
        },
        "pseudo": {
            "samples": "soft",
            "weight": 0.5,
            "input_key": "logits",
            "target_key": "soft_mask",
            "criterion": {"_target_": "podium.losses.SoftTargetBCEWithLogitsLoss"},
        },
    }
    recorder = Recorder()
    runner = dl.SupervisedRunner(
        input_key="image", output_key="logits", target_key="mask", loss_key="loss"
    )
    runner.train(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        num_epochs=1,
        callbacks={
            "loss": LossStackCallback(terms=terms, sample_key="soft"),
            "optimizer": dl.OptimizerCallback(metric_key="loss"),
            "recorder": recorder,
        },
        verbose=False,
        loggers={"none": NoLogger()},
    )
    batch, logged = recorder.batch, recorder.metrics
    soft = batch["soft"].numpy()
    assert soft.tolist() == [
        False,
        False,
        False,
        True,
        True,
        False,
    ]  # labeled, soft, soft, negative
    logits = batch["logits"].numpy()
    hard_reference = bce(logits[~soft], batch["mask"].numpy()[~soft])
    soft_reference = bce(logits[soft], batch["soft_mask"].numpy()[soft])
    assert logged["loss_bce"] == pytest.approx(hard_reference, rel=1e-5)
    assert logged["loss_pseudo"] == pytest.approx(soft_reference, rel=1e-5)
    assert logged["loss_hard"] == pytest.approx(hard_reference, rel=1e-5)
    assert logged["loss_soft"] == pytest.approx(0.5 * soft_reference, rel=1e-5)
    assert logged["loss"] == pytest.approx(hard_reference + 0.5 * soft_reference, rel=1e-5)
    assert recorder.loaders["train"]["loss_soft"] == pytest.approx(logged["loss_soft"], rel=1e-6)
    valid = recorder.loaders["valid"]  # labeled only: no soft term, the total is the hard loss
    assert "loss_soft" not in valid and valid["loss"] == pytest.approx(valid["loss_hard"], rel=1e-6)


def test_sample_selection_needs_a_sample_key():
    term = {
        "input_key": "logits",
        "target_key": "mask",
        "samples": "soft",
        "criterion": {"_target_": "podium.losses.SoftTargetBCEWithLogitsLoss"},
    }
    with pytest.raises(PodiumError, match="needs LossStackCallback's sample_key"):
        LossStackCallback(terms={"pseudo": term})
    with pytest.raises(PodiumError, match='did you mean "soft"'):
        LossStackCallback(terms={"pseudo": {**term, "samples": "sotf"}}, sample_key="soft")
    with pytest.raises(PodiumError, match="taken by the logged sum loss_soft"):
        LossStackCallback(terms={"soft": term}, sample_key="soft")


def test_shipped_self_training_config_trains_on_both_kinds(teacher, nuclei_data, tmp_path):
    cv, unlabeled, reference = teacher
    soft = tmp_path / "soft"
    assert (
        podium(
            "pseudo-label",
            "--cv",
            cv,
            "--data",
            unlabeled,
            "--out",
            soft,
            "--negatives",
            1,
            "--negative-threshold",
            negative_threshold(reference),
            "--no-progress",
        )
        == 0
    )
    split = pd.read_csv(nuclei_data / "split.csv")
    small = pd.concat(
        [split[split["split"] == "train"].head(12), split[split["split"] == "valid"].head(2)]
    )
    small.to_csv(tmp_path / "split.csv", index=False)
    logdir = tmp_path / "run"
    result = catalyst_run(
        logdir,
        nuclei_data,
        f"--data/split_file={tmp_path / 'split.csv'}:str",
        f"--data/soft_labels={soft}:str",
        "--stages/train/num_epochs=1:int",
        config=REPO / "configs" / "nuclei" / "self_training.yml",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    train = pd.read_csv(logdir / "logs" / "train.csv")
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert {"loss_hard", "loss_soft", "loss_bce", "loss_dice", "loss_pseudo"} <= set(train.columns)
    assert train["loss_soft"].iloc[0] == pytest.approx(0.5 * train["loss_pseudo"].iloc[0], rel=1e-6)
    assert "loss_soft" not in valid.columns and "dice" in valid.columns
