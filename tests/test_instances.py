"""podium.tasks.instances: targets, watershed, metrics against independent references."""

import itertools
import json

import cv2
import numpy as np
import pytest
import tifffile
import torch
import yaml
from scipy import ndimage

from podium.errors import PodiumError
from podium.tasks.instances.data import build_instance_datasets
from podium.tasks.instances.metrics import (
    THRESHOLDS,
    InstanceScores,
    average_precision,
    iou_matrix,
    match_counts,
)
from podium.tasks.instances.polygons import instance_polygons
from podium.tasks.instances.targets import check_instance_labels, instance_targets
from podium.tasks.instances.watershed import InstanceSettings, split_instances


# ------------------------------------------------------------------ references (brute force)
def _pixels(labels, k):
    return np.argwhere(labels == k)


def _reference_targets(labels, border_width, contact_width):
    """Per pixel, straight from the definitions in targets.py (O(pixels × pixels))."""
    coords = np.argwhere(np.ones_like(labels, dtype=bool))
    ids = [k for k in np.unique(labels) if k > 0]
    border = np.zeros(labels.shape, bool)
    near = np.zeros(labels.shape, int)
    for k in ids:
        inside = _pixels(labels, k)
        outside = np.argwhere(labels != k)
        if len(outside):
            d = np.sqrt(((inside[:, None] - outside[None]) ** 2).sum(-1)).min(1)
            border[tuple(inside[d <= border_width].T)] = True
        d = np.sqrt(((coords[:, None] - inside[None]) ** 2).sum(-1)).min(1)
        near[tuple(coords[d <= contact_width].T)] += 1
    return np.stack([labels > 0, border, near >= 2], -1).astype(np.uint8)


def _reference_counts(truth, predicted):
    """TP/FP/FN per threshold: IoU by brute force over object pairs, then the unique matches."""
    t_ids = [k for k in np.unique(truth) if k > 0]
    p_ids = [k for k in np.unique(predicted) if k > 0]
    ious = {}
    for a, b in itertools.product(t_ids, p_ids):
        inter = np.sum((truth == a) & (predicted == b))
        union = np.sum((truth == a) | (predicted == b))
        ious[a, b] = inter / union
    tp = np.array([sum(iou > t or np.isclose(iou, t) for iou in ious.values()) for t in THRESHOLDS])
    return tp, len(p_ids) - tp, len(t_ids) - tp


def _reference_ap(truth, predicted):
    tp, fp, fn = _reference_counts(truth, predicted)
    return float(
        np.mean([1.0 if a + b + c == 0 else a / (a + b + c) for a, b, c in zip(tp, fp, fn)])
    )


def _random_labels(rng, shape=(24, 28), count=6):
    labels = np.zeros(shape, np.int32)
    for k in range(1, count + 1):
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(2, 9, size=2)
        labels[y : y + h, x : x + w] = k + 10  # ids need not be consecutive
    return labels


# ------------------------------------------------------------------ targets
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("widths", [(1, 1), (2, 2), (1.5, 3)])
def test_targets_match_brute_force_definitions(seed, widths):
    labels = _random_labels(np.random.default_rng(seed))
    got = instance_targets(labels, *widths)
    assert got.shape == labels.shape + (3,) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, _reference_targets(labels, *widths))


def test_two_touching_squares_by_hand():
    labels = np.zeros((6, 10), np.uint8)
    labels[1:5, 1:5], labels[1:5, 5:9] = 1, 2  # they touch along x = 4 | 5
    body, border, contact = np.moveaxis(instance_targets(labels, 1, 1.5), -1, 0)
    np.testing.assert_array_equal(body, labels > 0)
    assert border[1:5, 1:5].sum() == 16 - 4  # a 4×4 square minus its 2×2 core
    np.testing.assert_array_equal(np.nonzero(contact.any(0))[0], [4, 5])  # the two touching columns
    assert contact[0, 4] and contact[5, 5]  # the background just above / below the seam (√2 ≤ 1.5)


def test_image_edge_is_no_border():
    labels = np.ones((5, 5), np.int32)
    assert instance_targets(labels, 2, 2)[..., 1].sum() == 0


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full((3, 3), 1.5, np.float32), "non-integer"),
        (np.full((3, 3), -1, np.int32), "negative"),
        (np.zeros((2, 3, 3), np.int32), "shape"),
        (np.array([["a"]]), "integer label image"),
    ],
)
def test_bad_labels_are_one_line_errors(labels, message):
    with pytest.raises(PodiumError, match=message):
        check_instance_labels(labels, "x.png")


def test_bad_widths_and_thresholds():
    with pytest.raises(PodiumError, match="border_width"):
        instance_targets(np.zeros((2, 2), int), border_width=-1)
    with pytest.raises(PodiumError, match="seed_threshold"):
        InstanceSettings(seed_threshold=1.5)
    with pytest.raises(PodiumError, match="mask_thresold"):
        InstanceSettings.from_config({"mask_thresold": 0.5})


# ------------------------------------------------------------------ watershed / components
def test_components_match_scipy_label():
    rng = np.random.default_rng(0)
    probability = ndimage.uniform_filter(rng.random((40, 50)), 3)
    settings = InstanceSettings(method="components", mask_threshold=0.5)
    got = split_instances(probability[None], settings)
    expected, count = ndimage.label(probability > 0.5, structure=np.ones((3, 3)))
    assert got.max() == count
    # the same partition (ids may differ): a one-to-one map between the two labellings
    pairs = set(zip(got.ravel(), expected.ravel()))
    assert len(pairs) == count + 1 and len({a for a, _ in pairs}) == count + 1


def test_components_min_size_drops_small_blobs():
    probability = np.zeros((10, 10))
    probability[0:3, 0:3] = 1  # 9 px
    probability[6:8, 6:8] = 1  # 4 px
    got = split_instances(probability, InstanceSettings("components", min_size=5))
    assert got.max() == 1 and (got > 0).sum() == 9


def test_watershed_separates_touching_objects_connected_components_cannot():
    labels = np.zeros((20, 30), np.int32)
    labels[4:16, 3:15], labels[4:16, 15:27] = 1, 2
    probabilities = np.moveaxis(instance_targets(labels, 2, 2), -1, 0).astype(np.float32)
    split = split_instances(probabilities, InstanceSettings("watershed", 0.5, 0.5))
    merged = split_instances(probabilities, InstanceSettings("components", mask_threshold=0.5))
    assert merged.max() == 1
    assert split.max() == 2
    np.testing.assert_array_equal(match_counts(labels, split)[0], [2] * len(THRESHOLDS))


def test_watershed_keeps_a_mask_blob_without_a_seed():
    probabilities = np.zeros((3, 10, 10), np.float32)
    probabilities[0, 2:5, 2:5] = 0.6  # body above t2, but the score stays below t
    got = split_instances(probabilities, InstanceSettings("watershed", 0.7, 0.5))
    assert got.max() == 1 and (got > 0).sum() == 9


def test_watershed_needs_three_channels():
    with pytest.raises(PodiumError, match="3 probability channel"):
        split_instances(np.zeros((1, 4, 4)), InstanceSettings("watershed"))


# ------------------------------------------------------------------ metrics
def test_iou_matrix_by_hand():
    truth = np.array([[1, 1, 0, 2], [1, 1, 0, 2]])
    pred = np.array([[5, 5, 5, 0], [5, 5, 0, 0]])
    np.testing.assert_allclose(iou_matrix(truth, pred), [[4 / 5], [0.0]])


def test_hand_made_matches():
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # matched exactly
    truth[0:4, 6:10] = 2  # matched at IoU 12/16 = 0.75
    truth[6:10, 0:4] = 3  # missed
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 7
    pred[0:3, 6:10] = 8
    pred[6:10, 6:10] = 9  # a false positive
    tp, fp, fn = match_counts(truth, pred)
    expected_tp = np.array([2 if t <= 0.75 + 1e-9 else 1 for t in THRESHOLDS])
    np.testing.assert_array_equal(tp, expected_tp)
    np.testing.assert_array_equal(fp, 3 - expected_tp)
    np.testing.assert_array_equal(fn, 3 - expected_tp)
    assert average_precision(tp, fp, fn) == pytest.approx(
        np.mean([a / (a + 2 * (3 - a)) for a in expected_tp])
    )


@pytest.mark.parametrize("seed", range(6))
def test_counts_and_ap_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = _random_labels(rng, count=7)
    pred = np.roll(_random_labels(rng, count=3), 1, axis=1)
    pred[truth > 0] = np.where(rng.random() < 0.5, truth, pred)[truth > 0]  # partly the truth
    pred = np.where(rng.random(pred.shape) < 0.05, 0, pred)
    for a, b in zip(match_counts(truth, pred), _reference_counts(truth, pred)):
        np.testing.assert_array_equal(a, b)
    assert average_precision(*match_counts(truth, pred)) == pytest.approx(
        _reference_ap(truth, pred)
    )


def test_empty_images():
    empty = np.zeros((4, 4), int)
    assert average_precision(*match_counts(empty, empty)) == 1.0
    one = empty.copy()
    one[1:3, 1:3] = 1
    assert average_precision(*match_counts(one, empty)) == 0.0
    assert average_precision(*match_counts(empty, one)) == 0.0


def test_scores_sum_over_images_like_one_pass():
    rng = np.random.default_rng(3)
    truths = [_random_labels(rng) for _ in range(4)]
    preds = [np.where(rng.random(t.shape) < 0.1, 0, t) for t in truths]
    whole = InstanceScores()
    whole.update(
        torch.as_tensor(np.stack(preds))[:, None], torch.as_tensor(np.stack(truths))[:, None]
    )
    halves = [InstanceScores(), InstanceScores()]
    halves[0].update(np.stack(preds[:2]), np.stack(truths[:2]))
    halves[1].update(np.stack(preds[2:]), np.stack(truths[2:]))
    merged = halves[0].merge(halves[1]).compute()
    assert merged == pytest.approx(whole.compute())
    counts = [_reference_counts(t, p) for t, p in zip(truths, preds)]
    tp, fp, fn = (sum(c[i][0] for c in counts) for i in range(3))
    assert whole.compute()["object_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert whole.compute()["ap"] == pytest.approx(
        np.mean([_reference_ap(t, p) for t, p in zip(truths, preds)])
    )


# ------------------------------------------------------------------ data, polygons, predict
def _instance_folder(root, count=3, size=(40, 48), seed=0):
    """images/ (8-bit), masks/ (binary 0/255) and instances/ (uint16 ids) like `samples nuclei`."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks", "instances"):
        (root / sub).mkdir(parents=True)
    names = []
    for i in range(count):
        labels = _random_labels(rng, size, count=5).astype(np.uint16) * 300  # ids > 255
        image = np.where(labels > 0, 200, 30).astype(np.uint8)
        name = f"img{i}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), (labels > 0).astype(np.uint8) * 255)
        cv2.imwrite(str(root / "instances" / f"{name}.png"), labels)
        names.append(name)
    split = ["train"] * (count - 1) + ["valid"]
    (root / "split.csv").write_text(
        "name,split\n" + "".join(f"{n},{s}\n" for n, s in zip(names, split))
    )
    return root


def test_datasets_yield_targets_of_the_labels(tmp_path):
    root = _instance_folder(tmp_path / "data")
    datasets = build_instance_datasets(root, border_width=1, contact_width=2)
    item = datasets["valid"][0]
    labels = cv2.imread(str(root / "instances" / "img2.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(item["instances"][0].numpy(), labels)
    expected = np.moveaxis(_reference_targets(labels.astype(int), 1, 2), -1, 0)
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    assert item["mask"].dtype == torch.float32 and item["image"].shape == (1, 40, 48)


def test_datasets_reject_non_integer_labels_naming_the_file(tmp_path):
    root = _instance_folder(tmp_path / "data")
    path = root / "instances" / "img2.tif"
    tifffile.imwrite(path, np.full((40, 48), 1.5, np.float32))
    (root / "instances" / "img2.png").unlink()
    dataset = build_instance_datasets(root)["valid"]
    with pytest.raises(PodiumError, match="img2.tif.*non-integer"):
        dataset[0]
    with pytest.raises(PodiumError, match="num_classes 3"):
        build_instance_datasets(root, num_classes=2)


def test_polygons_one_feature_per_object_that_rasterizes_back():
    from rasterio.features import rasterize

    labels = _random_labels(np.random.default_rng(5), (30, 30), count=5)
    labels[20:23, 20:23], labels[25, 25] = 99, 99  # one object in two 8-separated pieces
    labels = relabel(labels)
    features = instance_polygons(labels)
    assert [f["properties"]["id"] for f in features] == sorted(set(labels.ravel()) - {0})
    for feature in features:
        k = feature["properties"]["id"]
        assert feature["properties"]["area"] == (labels == k).sum()
        back = rasterize([(feature["geometry"], 1)], out_shape=labels.shape, fill=0)
        np.testing.assert_array_equal(back > 0, labels == k)


def relabel(labels):
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def test_writers_block_is_checked():
    from podium.inference.writers import check_writers

    with pytest.raises(PodiumError, match="seed_treshold.*did you mean"):
        check_writers([{"_target_": WRITER, "seed_treshold": 0.5}])
    with pytest.raises(PodiumError, match="writers must be a list"):
        check_writers({"_target_": WRITER})
    with pytest.raises(PodiumError, match="cannot be imported"):
        check_writers([{"_target_": "podium.tasks.instances.predict.Nope"}])
    assert check_writers(None) == []


WRITER = "podium.tasks.instances.predict.InstanceWriter"


def _instance_run(path, root):
    """A run directory like catalyst-dl writes for configs/nuclei/instances_unet_resnet18.yml."""
    from podium.models import build_segmentation_model

    model = {
        "_target_": "podium.models.build_segmentation_model",
        "architecture": "unet",
        "encoder": "resnet18",
        "in_channels": 1,
        "num_classes": 3,
        "pretrained": False,
    }
    data = {
        "_target_": "podium.tasks.instances.data.build_instance_datasets",
        "root": str(root),
        "num_classes": 3,
        "target": "multilabel",
        "class_names": ["body", "border", "contact"],
        "normalize": {"mode": "fixed", "max_value": 255},
    }
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "_config.json").write_text(
        json.dumps({"model": model, "data": data, "stages": {"train": {}}})
    )
    (path / "checkpoints").mkdir()
    torch.manual_seed(0)
    net = build_segmentation_model("unet", "resnet18", in_channels=1, num_classes=3)
    torch.save({"model_state_dict": net.state_dict()}, path / "checkpoints" / "best.pth")
    return path


@pytest.mark.parametrize("method", ["watershed", "components"])
def test_predict_writes_label_maps_polygons_and_scores(tmp_path, method):
    from podium.cli.main import main as podium_main

    root = _instance_folder(tmp_path / "data")
    run = _instance_run(tmp_path / "run", root)
    config = {
        "models": [{"run": str(run)}],
        "data": {"root": str(root)},
        "writers": [{"_target_": WRITER, "method": method, "mask_threshold": 0.4}],
        "out": str(tmp_path / "out"),
    }
    (tmp_path / "infer.yml").write_text(yaml.safe_dump(config))
    assert podium_main(["predict", "--no-progress", "--config", str(tmp_path / "infer.yml")]) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "dice" not in metrics  # the run's targets are not the masks/ files
    block = metrics["instances"]
    assert block["settings"]["method"] == method and block["scored_images"] == 3
    for name, numbers in block["per_image"].items():
        predicted = cv2.imread(str(out / "instances" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert predicted.dtype == np.uint16 and predicted.max() == numbers["objects"]
        truth = cv2.imread(str(root / "instances" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        tp, fp, fn = _reference_counts(truth.astype(int), predicted.astype(int))
        assert (numbers["tp"], numbers["fp"], numbers["fn"]) == (tp[0], fp[0], fn[0])
        assert numbers["ap"] == pytest.approx(_reference_ap(truth.astype(int), predicted))
        polygons = json.loads((out / "polygons" / f"{name}.geojson").read_text())
        assert len(polygons["features"]) == numbers["objects"]
    tp, fp, fn = (sum(v[k] for v in block["per_image"].values()) for k in ("tp", "fp", "fn"))
    assert block["object_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1)


def test_tune_finds_settings_that_recover_the_objects():
    from podium.tasks.instances.tune import tune_instances

    labels = np.zeros((20, 30), np.int32)
    labels[4:16, 3:15], labels[4:16, 15:27], labels[0:2, 0:2] = 1, 2, 3
    probabilities = np.moveaxis(instance_targets(labels, 2, 2), -1, 0) * 0.9
    best, rows = tune_instances(
        {"a": probabilities}, {"a": labels}, [0.5, 0.95], [0.5], [0, 10], metric="ap"
    )
    assert len(rows) == 4
    assert best["seed_threshold"] == 0.5 and best["min_size"] == 0  # 0.95: no seeds, one blob
    assert max(r["ap"] for r in rows) == pytest.approx(
        np.mean([1.0 if t <= 1 else 0 for t in THRESHOLDS])
    )


def test_shipped_config_trains_and_logs_object_metrics(tmp_path):
    """configs/nuclei/instances_unet_resnet18.yml end to end: 1 + 1 epochs on a small folder."""
    import pandas as pd
    from conftest import REPO, catalyst_run

    root = _instance_folder(tmp_path / "data", count=3, size=(100, 100))
    logdir = tmp_path / "run"
    result = catalyst_run(
        logdir,
        root,
        "--stages/warmup/num_epochs=1:int",
        "--stages/train/num_epochs=1:int",
        config=REPO / "configs" / "nuclei" / "instances_unet_resnet18.yml",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert {"ap", "object_f1", "dice/body", "dice/contact"} <= set(valid.columns)
    assert valid["ap"].between(0, 1).all() and (logdir / "checkpoints" / "best.pth").is_file()


# ------------------------------------------------------------------ DDP on gloo
def _scores_data():
    rng = np.random.default_rng(11)
    truths = np.stack([_random_labels(rng) for _ in range(5)])
    preds = np.stack([np.where(rng.random(t.shape) < 0.15, 0, t) for t in truths])
    return truths, preds


def _ddp_scores_worker(rank, port, out_dir):
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)
    truths, preds = _scores_data()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    scores = InstanceScores()
    scores.update(preds[rank::2], truths[rank::2])  # 3 images on rank 0, 2 on rank 1
    reduced = scores.reduced().compute()
    dist.barrier()
    dist.destroy_process_group()
    torch.save(reduced, os.path.join(out_dir, f"rank{rank}.pt"))


def test_ddp_reduced_scores_equal_one_process(tmp_path):
    from conftest import run_two_ranks

    from podium.runners.engines import free_port

    run_two_ranks(_ddp_scores_worker, free_port(), str(tmp_path))
    truths, preds = _scores_data()
    one = InstanceScores()
    one.update(preds, truths)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got == pytest.approx(one.compute())


def test_writers_obey_safe_targets(monkeypatch):
    from podium.inference.writers import check_writers

    monkeypatch.setenv("PODIUM_SAFE_TARGETS", "1")
    assert check_writers([{"_target_": WRITER}])
    with pytest.raises(PodiumError, match="PODIUM_SAFE_TARGETS"):
        check_writers([{"_target_": "collections.OrderedDict"}])


def test_tune_postprocess_instances_writes_the_best_writer_settings(tmp_path, capsys):
    """`podium tune-postprocess --instances`: the grid of tune_instances on the maps, the best
    (seed, mask, min size) written into the InstanceWriter's entry, the rest of the YAML kept."""
    from podium.cli.main import main as podium_main
    from podium.inference.probability_maps import read_probability_map, write_probability_map
    from podium.tasks.instances.tune import tune_instances

    root = _instance_folder(tmp_path / "data")
    maps, truths = tmp_path / "maps", {}
    for path in sorted((root / "instances").iterdir()):
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32)
        truths[path.stem] = labels
        targets = np.moveaxis(instance_targets(labels, 2, 2), -1, 0) * 0.9
        write_probability_map(maps, path.stem, targets, ["body", "border", "contact"])
    infer = tmp_path / "infer.yml"
    infer.write_text(
        "# instances of my run\n"
        "models:\n  - {run: logs/x}\n"
        "writers:\n"
        f"  - _target_: {WRITER}\n"
        "    method: watershed   # body/border/contact\n"
        "    seed_threshold: 0.95\n"
        "    mask_threshold: 0.5\n"
        "    min_size: 0\n"
        "    polygons: true\n"
        "out: preds\n"
    )
    argv = ["tune-postprocess", "--instances", "--probabilities", str(maps), "--data", str(root)]
    argv += ["--config", str(infer), "--seed-thresholds", "0.5,0.95", "--mask-thresholds", "0.5"]
    assert podium_main(argv + ["--min-sizes", "0,500"]) == 0
    expected, rows = tune_instances(
        {name: read_probability_map(maps, name) for name in truths},
        truths,
        [0.5, 0.95],
        [0.5],
        [0, 500],
    )
    keys = ("seed_threshold", "mask_threshold", "min_size")
    writer = yaml.safe_load(infer.read_text())["writers"][0]
    assert {k: writer[k] for k in keys} == {k: expected[k] for k in keys}
    assert len(rows) == 4 and writer["seed_threshold"] == 0.5  # 0.95: no seeds at 0.9
    assert writer["polygons"] is True and writer["method"] == "watershed"
    text = infer.read_text()
    assert "# instances of my run" in text and "tuned by podium tune-postprocess" in text

    infer.write_text("models:\n  - {run: logs/x}\nout: preds\n")
    capsys.readouterr()
    assert podium_main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        f"podium: error: {infer}: --instances tunes the InstanceWriter of its writers: block, "
        "and there is none (see configs/nuclei/infer_instances.yml)"
    )
