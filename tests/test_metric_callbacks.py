"""podium.callbacks.metrics: a real SupervisedRunner run, YAML instantiation, and 2-process gloo
DDP where every rank sees half the data and logs the single-process value."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, r2_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from catalyst import dl
from catalyst.registry import REGISTRY

from podium.callbacks.metrics import (
    BoxIoUCallback,
    ClassificationMetricsCallback,
    R2Callback,
    SegmentationMetricsCallback,
)
from podium.metrics import SegmentationScores, R2Score
from podium.runners.engines import free_port
from conftest import run_two_ranks

CITIES = np.array(["ATL", "JAX", "OMA", "ARG"])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ data for the fake-runner loops
def make_batches_data(n=12, seed=0):
    """Model outputs and targets of n samples for every head (numpy, fixed seed)."""
    r = np.random.default_rng(seed)
    mc_map = r.integers(0, 3, size=(n, 6, 6))
    mc_map[r.random(mc_map.shape) < 0.1] = 255
    mask = (r.random((n, 2, 6, 6)) > 0.6).astype(np.float32)
    mask[r.random(mask.shape) < 0.1] = -1
    box = np.sort(r.random((n, 2, 2)) * 8, axis=1).transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]
    box_true = (
        np.sort(r.random((n, 2, 2)) * 8, axis=1).transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]
    )
    height_true = r.normal(size=(n, 1, 4, 4)) * 3
    # even samples (rank 0) come from ATL/JAX, odd ones (rank 1) from JAX/OMA: group sets differ
    city = np.where(np.arange(n) % 2 == 0, r.choice(["ATL", "JAX"], n), r.choice(["JAX", "OMA"], n))
    return {
        "logits": r.normal(size=(n, 2, 6, 6)).astype(np.float32),
        "mask": mask,
        "mc_logits": r.normal(size=(n, 3, 6, 6)).astype(np.float32),
        "labels_map": mc_map,
        "height": height_true + r.normal(size=height_true.shape),
        "height_true": height_true,
        "city": city,
        "cls_logits": r.normal(size=(n, 3)).astype(np.float32),
        "label": r.integers(0, 3, size=n),
        "bin_logit": r.normal(size=(n, 1)).astype(np.float32),
        "bin_label": (r.random(n) > 0.5).astype(np.float32),
        "box": box,
        "box_true": box_true,
    }


def make_callbacks():
    return [
        SegmentationMetricsCallback(
            "logits", "mask", ignore_value=-1, class_names=["a", "b"], prefix="seg_"
        ),
        SegmentationMetricsCallback(
            "logits", "mask", ignore_value=-1, per_image=True, prefix="img_"
        ),
        SegmentationMetricsCallback(
            "mc_logits", "labels_map", activation="softmax", ignore_value=255, prefix="mc_"
        ),
        R2Callback("height", "height_true", group_key="city"),
        ClassificationMetricsCallback("cls_logits", "label", num_classes=3, prefix="cls_"),
        ClassificationMetricsCallback("bin_logit", "bin_label", prefix="bin_"),
        BoxIoUCallback("box", "box_true"),
    ]


def run_loader(callbacks, data, indices, batch_size=2):
    """What Catalyst does with metric callbacks in one loader, on a stand-in runner."""
    runner = SimpleNamespace(batch=None, batch_metrics={}, loader_metrics={})
    for callback in callbacks:
        callback.on_loader_start(runner)
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        runner.batch = {
            k: (list(v[idx]) if v.dtype.kind == "U" else torch.as_tensor(v[idx]))
            for k, v in data.items()
        }
        for callback in callbacks:
            callback.on_batch_end(runner)
    for callback in callbacks:
        callback.on_loader_end(runner)
    return {k: float(v) for k, v in runner.loader_metrics.items()}


def test_loader_values_match_numpy():
    data = make_batches_data()
    got = run_loader(make_callbacks(), data, np.arange(12))
    # multi-label with ignore, per class
    y = np.moveaxis(data["mask"], 1, -1).reshape(-1, 2)
    p = np.moveaxis(sigmoid(data["logits"]) > 0.5, 1, -1).reshape(-1, 2)
    for c, name in enumerate("ab"):
        keep = y[:, c] != -1
        assert got[f"seg_dice/{name}"] == pytest.approx(f1_score(y[keep, c], p[keep, c]), abs=1e-9)
        assert got[f"seg_iou/{name}"] == pytest.approx(
            jaccard_score(y[keep, c], p[keep, c]), abs=1e-9
        )
    keep = data["labels_map"] != 255
    yl, pl = data["labels_map"][keep], data["mc_logits"].argmax(1)[keep]
    assert got["mc_dice"] == pytest.approx(f1_score(yl, pl, average="macro"), abs=1e-9)
    assert got["mc_iou/_micro"] == pytest.approx(jaccard_score(yl, pl, average="micro"), abs=1e-9)
    cities = sorted(set(data["city"]))
    per_city = [
        r2_score(
            data["height_true"][data["city"] == c].ravel(),
            data["height"][data["city"] == c].ravel(),
        )
        for c in cities
    ]
    assert got["r2"] == pytest.approx(np.mean(per_city), abs=1e-9)
    assert got["cls_f1"] == pytest.approx(
        f1_score(data["label"], data["cls_logits"].argmax(1), average="macro")
    )
    assert got["bin_accuracy"] == pytest.approx(
        accuracy_score(data["bin_label"], data["bin_logit"][:, 0] > 0)
    )
    assert set(got) >= {
        "seg_dice",
        "seg_dice/_macro",
        "seg_dice/_micro",
        "img_dice",
        "img_iou/_micro",
        "r2/_pooled",
        "r2/ATL",
        "r2/OMA",
        "cls_accuracy",
        "cls_f1/_micro",
        "cls_f1/class_02",
        "bin_f1",
        "box_iou",
    }


def test_log_on_batch_puts_batch_values_in_batch_metrics():
    data = make_batches_data()
    callback = SegmentationMetricsCallback("logits", "mask", ignore_value=-1, log_on_batch=True)
    runner = SimpleNamespace(batch_metrics={}, loader_metrics={})
    callback.on_loader_start(runner)
    for idx in (np.arange(0, 3), np.arange(3, 12)):
        runner.batch = {k: torch.as_tensor(v[idx]) for k, v in data.items() if v.dtype.kind != "U"}
        callback.on_batch_end(runner)
        alone = SegmentationScores(ignore_value=-1)
        alone.update(runner.batch["logits"], runner.batch["mask"])
        assert runner.batch_metrics["dice"] == alone.compute_key_value()["dice"]
    callback.on_loader_end(runner)
    whole = SegmentationScores(ignore_value=-1)
    whole.update(torch.as_tensor(data["logits"]), torch.as_tensor(data["mask"]))
    assert runner.loader_metrics == pytest.approx(whole.compute_key_value())


# The README's YAML snippets, instantiated the way catalyst-dl run does.
README_SNIPPETS = """
seg_metrics:
  _target_: podium.callbacks.metrics.SegmentationMetricsCallback
  input_key: logits
  target_key: mask
  activation: sigmoid
  threshold: 0.5
  metrics: [dice, iou]
mc_metrics:
  _target_: podium.callbacks.metrics.SegmentationMetricsCallback
  input_key: logits
  target_key: mask
  activation: softmax
  ignore_value: 255
  classes: [1, 2]
  class_names: [background, cell, border]
  per_image: true
r2:
  _target_: podium.callbacks.metrics.R2Callback
  input_key: height
  target_key: height_true
  group_key: city
cls:
  _target_: podium.callbacks.metrics.ClassificationMetricsCallback
  input_key: cls_logits
  target_key: label
  num_classes: 5
  prefix: cls_
boxes:
  _target_: podium.callbacks.metrics.BoxIoUCallback
  input_key: box
  target_key: bbox
  box_format: xyxy
"""


def test_yaml_snippets_instantiate():
    callbacks = dict(REGISTRY.get_from_params(**yaml.safe_load(README_SNIPPETS)))
    assert type(callbacks["seg_metrics"]).__name__ == "SegmentationMetricsCallback"
    assert (
        callbacks["mc_metrics"].metric.classes == [1, 2]
        and callbacks["mc_metrics"].metric.per_image
    )
    assert callbacks["r2"].extra_keys == {"group": "city"}
    assert (
        callbacks["cls"].metric.num_classes == 5 and callbacks["boxes"].metric.box_format == "xyxy"
    )


# ------------------------------------------------------------------ a real Catalyst run
class HeadsDataset(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.features = torch.randn(n, 3, 8, 8, generator=g)
        self.mask = (torch.rand(n, 2, 8, 8, generator=g) > 0.5).float()
        self.label = torch.randint(0, 3, (n,), generator=g)
        self.height = torch.randn(n, 1, 8, 8, generator=g) + self.features[:, :1]
        self.box = torch.rand(n, 4, generator=g).sort(dim=1).values[:, [0, 1, 2, 3]]
        self.city = [str(CITIES[i % 3]) for i in range(n)]

    def __len__(self):
        return len(self.label)

    def __getitem__(self, i):
        x1, y1, x2, y2 = self.box[i][[0, 1, 3, 2]]
        box = torch.stack([x1, y1, x1 + x2, y1 + y2])
        return {
            "features": self.features[i],
            "mask": self.mask[i],
            "label": self.label[i],
            "height_true": self.height[i],
            "city": self.city[i],
            "bbox": box,
        }


class TinyHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.seg = nn.Conv2d(3, 2, 3, padding=1)
        self.reg = nn.Conv2d(3, 1, 1)
        self.cls = nn.Linear(3, 3)
        self.box = nn.Linear(3, 4)

    def forward(self, features):
        pooled = features.mean(dim=(2, 3))
        xy, wh = self.box(pooled).split(2, dim=1)
        return {
            "logits": self.seg(features),
            "height": self.reg(features),
            "cls_logits": self.cls(pooled),
            "box": torch.cat([xy, xy + nn.functional.softplus(wh)], dim=1),
        }


def test_supervised_runner_logs_metrics_equal_to_numpy(tmp_path):
    torch.manual_seed(0)
    loaders = {
        "train": DataLoader(HeadsDataset(16, 0), batch_size=4),
        "valid": DataLoader(HeadsDataset(10, 1), batch_size=4),
    }
    model = TinyHeads()
    runner = dl.SupervisedRunner(input_key="features", output_key=None, target_key="mask")
    runner.train(
        model=model,
        criterion=nn.BCEWithLogitsLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        num_epochs=1,
        logdir=str(tmp_path),
        valid_loader="valid",
        valid_metric="dice",
        minimize_valid_metric=False,
        loggers={"csv": dl.CSVLogger(logdir=str(tmp_path))},
        callbacks=[
            dl.CriterionCallback(input_key="logits", target_key="mask", metric_key="loss"),
            dl.OptimizerCallback(metric_key="loss"),
            SegmentationMetricsCallback(
                "logits", "mask", activation="sigmoid", class_names=["fg", "edge"]
            ),
            SegmentationMetricsCallback(
                "logits", "mask", per_image=True, metrics=["dice"], prefix="img_"
            ),
            R2Callback("height", "height_true", group_key="city"),
            ClassificationMetricsCallback("cls_logits", "label", num_classes=3),
            BoxIoUCallback("box", "bbox"),
        ],
    )
    logged = runner.loader_metrics  # the last loader of the epoch: valid
    assert runner.loader_key == "valid"
    assert runner.epoch_metrics["valid"] == pytest.approx({k: float(v) for k, v in logged.items()})

    # predictions: the trained model in eval mode over the valid loader
    model.eval()
    batches = {
        "logits": [],
        "height": [],
        "cls_logits": [],
        "box": [],
        "mask": [],
        "height_true": [],
        "label": [],
        "bbox": [],
        "city": [],
    }
    with torch.no_grad():
        for batch in loaders["valid"]:
            batch.update(model(batch["features"]))
            for key in batches:
                batches[key].append(np.asarray(batch[key]))
    v = {key: np.concatenate(value) for key, value in batches.items()}

    y = np.moveaxis(v["mask"], 1, -1).reshape(-1, 2)
    p = np.moveaxis(sigmoid(v["logits"]) > 0.5, 1, -1).reshape(-1, 2)
    expected = {
        "dice/fg": f1_score(y[:, 0], p[:, 0]),
        "dice/edge": f1_score(y[:, 1], p[:, 1]),
        "dice": f1_score(y, p, average="macro"),
        "dice/_micro": f1_score(y, p, average="micro"),
        "iou": jaccard_score(y, p, average="macro"),
        "iou/_micro": jaccard_score(y, p, average="micro"),
        "img_dice": np.mean(
            [
                f1_score(y_i, p_i, average="macro", zero_division=1.0)
                for y_i, p_i in zip(
                    np.moveaxis(v["mask"], 1, -1).reshape(10, -1, 2),
                    np.moveaxis(sigmoid(v["logits"]) > 0.5, 1, -1).reshape(10, -1, 2),
                )
            ]
        ),
        "r2": np.mean(
            [
                r2_score(
                    v["height_true"][v["city"] == c].astype(np.float64).ravel(),
                    v["height"][v["city"] == c].astype(np.float64).ravel(),
                )
                for c in sorted(set(v["city"]))
            ]
        ),
        "r2/_pooled": r2_score(
            v["height_true"].astype(np.float64).ravel(), v["height"].astype(np.float64).ravel()
        ),
        "accuracy": accuracy_score(v["label"], v["cls_logits"].argmax(1)),
        "f1": f1_score(v["label"], v["cls_logits"].argmax(1), average="macro"),
    }
    b, t = v["box"].astype(np.float64), v["bbox"].astype(np.float64)
    iw = np.clip(np.minimum(b[:, 2], t[:, 2]) - np.maximum(b[:, 0], t[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, 3], t[:, 3]) - np.maximum(b[:, 1], t[:, 1]), 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    expected["box_iou"] = np.mean(iw * ih / (area(b) + area(t) - iw * ih))
    for key, value in expected.items():
        assert float(logged[key]) == pytest.approx(value, abs=1e-6), key
    for city in ("ATL", "JAX", "OMA"):
        assert f"r2/{city}" in logged
    # the keys reach the loggers as they are (CSV columns)
    with open(tmp_path / "valid.csv") as f:
        header = f.readline().strip().split(",")
    assert {
        "dice",
        "dice/fg",
        "dice/_micro",
        "img_dice",
        "r2",
        "r2/JAX",
        "f1/_macro",
        "box_iou",
    } <= set(header)


# ------------------------------------------------------------------ DDP on gloo
def _ddp_worker(rank, port, out_dir):
    torch.set_num_threads(1)
    data = make_batches_data()
    everything = np.arange(12)
    expected = run_loader(make_callbacks(), data, everything)  # before the group exists

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    callbacks = make_callbacks()
    got = [
        run_loader(callbacks, data, everything[rank::2], batch_size=b) for b in (2, 3)
    ]  # two loaders

    # accumulators alone: rank 0 adds nothing at all (its layout is learnt from rank 1)
    seg, r2 = SegmentationScores(ignore_value=-1), R2Score()
    if rank == 1:
        seg.update(torch.as_tensor(data["logits"]), torch.as_tensor(data["mask"]))
        r2.update(
            torch.as_tensor(data["height"]),
            torch.as_tensor(data["height_true"]),
            group=list(data["city"]),
        )
    lazy = {**seg.reduced().compute_key_value(), **r2.reduced().compute_key_value()}
    untouched = seg.compute_key_value()  # reduced() leaves the local state alone
    dist.barrier()
    dist.destroy_process_group()
    torch.save(
        {"expected": expected, "got": got, "lazy": lazy, "untouched": untouched},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


def test_ddp_reduced_values_equal_single_process(tmp_path):
    run_two_ranks(_ddp_worker, free_port(), str(tmp_path))
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    expected = results[0]["expected"]
    assert expected == results[1]["expected"]
    assert "r2/ATL" in expected and "r2/OMA" in expected  # groups only one rank saw
    for rank, result in enumerate(results):
        for got in result["got"]:
            assert set(got) == set(expected), rank
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), (rank, key)
        # the lazy accumulators: same data as the "seg_" callback (without class names) and "r2"
        full = {k: v for k, v in expected.items() if k.startswith("r2")}
        full.update(
            {
                k: expected[f"seg_{k}"]
                for k in ("dice", "dice/_macro", "dice/_micro", "iou", "iou/_micro")
            }
        )
        for key, value in full.items():
            assert result["lazy"][key] == pytest.approx(value, abs=1e-6), (rank, key)
    assert np.isnan(results[0]["untouched"]["dice"]) and not np.isnan(
        results[1]["untouched"]["dice"]
    )
