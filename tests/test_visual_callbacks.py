"""OverlayCallback and ProgressPlotCallback in tiny in-process Catalyst config runs.

A one-layer conv net on random 1×16×16 images (the mask is `image > 0.3`), built from a config
the way `catalyst-dl run` builds it: callbacks come from YAML-like dicts, anew for each stage.
"""

import hashlib
import re
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from catalyst.core.callback import Callback, CallbackOrder
from catalyst.runners.config import SupervisedConfigRunner
from torch.utils.data import Dataset

from podium.callbacks.progress import ProgressPlotCallback, default_metric_keys, plot_progress
from podium.callbacks.visuals import OverlayCallback, per_sample_scores

NUM_VALID = 22  # not a multiple of the batch size: the last batch is short


class RandomMasks(Dataset):
    def __init__(self, size: int, seed: int, prefix: str):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(size, 1, 16, 16, generator=generator)
        # varying foreground fractions so that per-sample Dice spreads out
        thresholds = torch.linspace(-1.5, 1.5, size).view(size, 1, 1, 1)
        self.masks = (self.images > thresholds).float()
        self.names = [f"{prefix}{i:02d}" for i in range(size)]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        return {"image": self.images[index], "mask": self.masks[index], "name": self.names[index]}


class TinyRunner(SupervisedConfigRunner):
    def get_datasets(self, stage):
        return OrderedDict(
            train=RandomMasks(32, seed=0, prefix="t"), valid=RandomMasks(NUM_VALID, 1, "v")
        )


class Probe(Callback):
    """After the callbacks under test: snapshots of progress.png / .json at each epoch end."""

    snapshots = []

    def __init__(self):
        super().__init__(order=CallbackOrder.ExternalExtra + 1)

    def on_epoch_end(self, runner):
        png = runner.logdir + "/progress.png"
        with open(png, "rb") as file:
            digest = hashlib.md5(file.read()).hexdigest()
        Probe.snapshots.append((runner.global_epoch_step, digest))


def stage(num_epochs, lr, extra_callbacks):
    return {
        "num_epochs": num_epochs,
        "loaders": {"batch_size": 4, "num_workers": 0},
        "criterion": {"_target_": "torch.nn.BCEWithLogitsLoss"},
        "optimizer": {"_target_": "torch.optim.SGD", "lr": lr},
        "callbacks": {
            "loss": {
                "_target_": "catalyst.callbacks.CriterionCallback",
                "input_key": "logits",
                "target_key": "mask",
                "metric_key": "loss",
            },
            "optimizer": {"_target_": "catalyst.callbacks.OptimizerCallback", "metric_key": "loss"},
            "probs": {
                "_target_": "catalyst.callbacks.BatchTransformCallback",
                "transform": "torch.sigmoid",
                "scope": "on_batch_end",
                "input_key": "logits",
                "output_key": "probs",
            },
            "dice": {
                "_target_": "catalyst.callbacks.DiceCallback",
                "input_key": "probs",
                "target_key": "mask",
                "threshold": 0.5,
            },
            **extra_callbacks,
        },
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tiny") / "run"
    callbacks = {
        "overlays": {
            "_target_": "podium.callbacks.visuals.OverlayCallback",
            "num_best": 3,
            "num_worst": 4,
        },
        "progress": {"_target_": "podium.callbacks.progress.ProgressPlotCallback"},
        "probe": {"_target_": "test_visual_callbacks.Probe"},
    }
    config = {
        "args": {"logdir": str(logdir), "seed": 0},
        "runner": {"_target_": "test_visual_callbacks.TinyRunner"},
        "engine": {"_target_": "catalyst.engines.DeviceEngine", "device": "cpu"},
        "model": {
            "_target_": "torch.nn.Conv2d",
            "in_channels": 1,
            "out_channels": 1,
            "kernel_size": 3,
            "padding": 1,
        },
        "loggers": {"console": {"_target_": "catalyst.loggers.ConsoleLogger"}},
        "stages": {"first": stage(2, 0.5, callbacks), "second": stage(2, 0.1, callbacks)},
    }
    Probe.snapshots = []
    runner = TinyRunner(
        config=config, input_key="image", output_key="logits", target_key="mask", loss_key="loss"
    )
    runner.run()
    return runner, logdir


def overlay_files(folder):
    pattern = re.compile(r"(best|worst)_(\d+)_(v\d+)_(\d\.\d{4})\.png")
    files = {}
    for path in sorted(folder.glob("*.png")):
        match = pattern.fullmatch(path.name)
        assert match, path.name
        kind, rank, name, score = match.groups()
        files[(kind, int(rank))] = (name, float(score), path)
    return files


def reference_dice(model):
    """Per-sample Dice of the whole valid set with plain numpy: name → Dice."""
    dataset = RandomMasks(NUM_VALID, 1, "v")
    with torch.no_grad():
        logits = model(dataset.images)
    predicted = (torch.sigmoid(logits) > 0.5).numpy()
    truth = dataset.masks.numpy() > 0.5
    scores = {}
    for name, p, t in zip(dataset.names, predicted, truth):
        total = p.sum() + t.sum()
        scores[name] = 1.0 if total == 0 else 2.0 * np.logical_and(p, t).sum() / total
    return scores


def test_overlays_of_every_epoch_are_written_and_decode(tiny_run):
    _, logdir = tiny_run
    for stage_name in ("first", "second"):
        for epoch in (1, 2):
            folder = logdir / "overlays" / stage_name / f"epoch_{epoch}"
            files = overlay_files(folder)
            expected = [("best", r) for r in range(3)] + [("worst", r) for r in range(4)]
            assert sorted(files) == expected
            for _, _, path in files.values():
                image = cv2.imread(str(path))
                assert image is not None and image.shape == (16, 16, 3)


def test_best_and_worst_are_the_true_extremes_of_the_epoch(tiny_run):
    runner, logdir = tiny_run
    scores = reference_dice(runner.model.cpu())  # the last epoch validated these weights
    ranking = sorted(scores, key=lambda name: -scores[name])
    files = overlay_files(logdir / "overlays" / "second" / "epoch_2")
    best = [files[("best", r)] for r in range(3)]
    worst = [files[("worst", r)] for r in range(4)]
    assert [score for _, score, _ in best] == pytest.approx(
        [scores[n] for n in ranking[:3]], abs=1e-4
    )
    assert [score for _, score, _ in worst] == pytest.approx(
        [scores[n] for n in ranking[::-1][:4]], abs=1e-4
    )
    for name, score, _ in best + worst:
        assert scores[name] == pytest.approx(score, abs=1e-4)
    assert len(set(scores.values())) > 7  # the extremes are not all one tie


def test_the_callback_keeps_only_the_extremes_in_memory():
    callback = OverlayCallback(num_best=2, num_worst=1)

    class FakeRunner:
        loader_key = "valid"

    runner = FakeRunner()
    callback.on_loader_start(runner)
    generator = torch.Generator().manual_seed(3)
    for _ in range(10):
        logits = torch.randn(4, 1, 8, 8, generator=generator)
        runner.batch = {
            "image": torch.randn(4, 1, 8, 8),
            "logits": logits,
            "mask": (torch.randn(4, 1, 8, 8, generator=generator) > 0).float(),
        }
        callback.on_batch_end(runner)
        assert len(callback._best) <= 2 and len(callback._worst) <= 1
    assert callback._seen == 40


def test_per_sample_scores_multiclass():
    predicted = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 0]]])
    target = torch.tensor([[[0, 1], [2, 0]], [[0, 0], [0, 0]]])
    dice = per_sample_scores(predicted, target, num_classes=3)
    # sample 0: class 1 perfect (1.0), class 2: 2*1/(2+1); sample 1: nothing anywhere → 1
    assert dice.tolist() == pytest.approx([(1.0 + 2 / 3) / 2, 1.0])
    iou = per_sample_scores(predicted, target, num_classes=3, metric="iou")
    assert iou.tolist() == pytest.approx([(1.0 + 0.5) / 2, 1.0])


def test_progress_png_is_redrawn_after_every_epoch(tiny_run):
    _, logdir = tiny_run
    epochs = [epoch for epoch, _ in Probe.snapshots]
    assert epochs == [1, 2, 3, 4]
    digests = [digest for _, digest in Probe.snapshots]
    assert len(set(digests)) == 4  # a new picture each epoch
    image = cv2.imread(str(logdir / "progress.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def test_progress_history_spans_both_stages(tiny_run):
    import json

    runner, logdir = tiny_run
    saved = json.loads((logdir / "progress.json").read_text())
    assert saved["run"] == runner.run_key
    history = saved["history"]
    assert [(r["epoch"], r["stage"], r["stage_epoch"]) for r in history] == [
        (1, "first", 1),
        (2, "first", 2),
        (3, "second", 1),
        (4, "second", 2),
    ]
    for record in history:
        assert set(record["metrics"]) == {"train", "valid"}
        assert {"loss", "dice"} <= set(record["metrics"]["valid"])
    assert not list(logdir.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_plot_progress_and_metric_selection(tmp_path):
    assert default_metric_keys(
        ["loss", "loss/mean", "loss/std", "lr", "momentum", "dice", "dice/_micro", "x/_macro"]
    ) == ["loss", "lr", "dice", "x/_macro"]
    history = [
        {
            "epoch": e,
            "stage": "a" if e < 3 else "b",
            "metrics": {"train": {"loss": 1.0 / e}, "valid": {"loss": 1.2 / e, "dice": e / 5}},
        }
        for e in range(1, 5)
    ]
    assert plot_progress(history, tmp_path / "p.png")
    assert cv2.imread(str(tmp_path / "p.png")) is not None
    assert not plot_progress([], tmp_path / "empty.png")


def test_progress_new_run_in_the_same_logdir_starts_afresh(tmp_path):
    (tmp_path / "progress.json").write_text('{"run": "old", "history": [{"epoch": 1}]}')

    class FakeRunner:
        logdir = str(tmp_path)
        run_key = "new"

    callback = ProgressPlotCallback()
    callback.on_stage_start(FakeRunner())
    assert callback.history == []
