"""podium.metrics against sklearn / numpy on random data (fixed seeds)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, r2_score

from podium.errors import PodiumError
from podium.metrics import (
    BoxIoU,
    ClassificationScores,
    ConfusionCounts,
    R2Score,
    SegmentationScores,
    box_iou,
    r2_from_sums,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def channels_last(a):
    """(B, C, H, W) → (B·H·W, C), the layout sklearn's multilabel metrics take."""
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def feed(metric, outputs, targets, batch_size=3, **extra):
    for start in range(0, len(outputs), batch_size):
        sl = slice(start, start + batch_size)
        metric.update(
            torch.as_tensor(outputs[sl]),
            torch.as_tensor(targets[sl]),
            **{k: v[sl] for k, v in extra.items()},
        )
    return metric


# ------------------------------------------------------------------ segmentation
def test_binary_dice_iou_match_sklearn():
    r = rng(1)
    logits = r.normal(size=(7, 1, 9, 11)).astype(np.float32)
    target = (r.random((7, 9, 11)) > 0.6).astype(np.float32)  # (B, H, W) for a 1-channel output
    for threshold in (0.5, 0.3):
        metric = feed(SegmentationScores(threshold=threshold), logits, target)
        pred = (sigmoid(logits[:, 0]) > threshold).ravel()
        values = metric.compute_key_value()
        assert values["dice"] == pytest.approx(f1_score(target.ravel(), pred), abs=1e-12)
        assert values["iou"] == pytest.approx(jaccard_score(target.ravel(), pred), abs=1e-12)
        assert values["dice/_micro"] == values["dice/_macro"] == values["dice"]
        assert not [k for k in values if "class_" in k]  # one class: no per-class keys


def test_multilabel_per_class_micro_macro_match_sklearn():
    r = rng(2)
    logits = r.normal(size=(6, 3, 8, 8))
    target = (r.random((6, 3, 8, 8)) > np.array([0.3, 0.6, 0.9])[None, :, None, None]).astype(
        np.float32
    )
    metric = feed(SegmentationScores(class_names=["a", "b", "c"]), logits, target)
    y, p = channels_last(target), channels_last(sigmoid(logits) > 0.5)
    values = metric.compute_key_value(prefix="seg_")
    for score, fn in (("dice", f1_score), ("iou", jaccard_score)):
        per_class = fn(y, p, average=None)
        assert [values[f"seg_{score}/{n}"] for n in "abc"] == pytest.approx(per_class, abs=1e-12)
        assert values[f"seg_{score}/_macro"] == pytest.approx(fn(y, p, average="macro"), abs=1e-12)
        assert values[f"seg_{score}/_micro"] == pytest.approx(fn(y, p, average="micro"), abs=1e-12)
        assert values[f"seg_{score}"] == values[f"seg_{score}/_macro"]
    # a threshold per class
    metric = feed(SegmentationScores(threshold=[0.2, 0.5, 0.8]), logits, target)
    p = channels_last(sigmoid(logits) > np.array([0.2, 0.5, 0.8])[None, :, None, None])
    assert metric.compute()["dice"]["per_class"] == pytest.approx(
        f1_score(y, p, average=None), abs=1e-12
    )


def test_multiclass_argmax_with_ignore_matches_sklearn():
    r = rng(3)
    logits = r.normal(size=(5, 4, 10, 10)).astype(np.float32)
    labels = r.integers(0, 4, size=(5, 10, 10))
    labels[r.random(labels.shape) < 0.2] = 255  # ignored pixels
    keep = labels != 255
    y, p = labels[keep], logits.argmax(1)[keep]
    classes = list(range(4))
    for activation in ("softmax", "argmax"):
        metric = feed(SegmentationScores(activation=activation, ignore_value=255), logits, labels)
        result = metric.compute()
        for score, fn in (("dice", f1_score), ("iou", jaccard_score)):
            assert result[score]["per_class"] == pytest.approx(
                fn(y, p, labels=classes, average=None), abs=1e-12
            )
            assert result[score]["macro"] == pytest.approx(
                fn(y, p, labels=classes, average="macro"), abs=1e-12
            )
            assert result[score]["micro"] == pytest.approx(
                fn(y, p, labels=classes, average="micro"), abs=1e-12
            )
        assert result["dice"]["micro"] == pytest.approx(accuracy_score(y, p))  # single label
    # (B, 1, H, W) index targets and one-hot targets give the same counts
    one_hot = np.eye(4, dtype=np.float32)[np.where(keep, labels, 0)].transpose(0, 3, 1, 2)
    one_hot[np.broadcast_to(~keep[:, None], one_hot.shape)] = 255
    for target in (labels[:, None], one_hot):
        other = feed(SegmentationScores(activation="softmax", ignore_value=255), logits, target)
        for name in ("tp", "fp", "fn"):
            assert torch.equal(other.state[name], metric.state[name])
    # background left out of the averages
    metric = feed(
        SegmentationScores(activation="softmax", ignore_value=255, classes=[1, 2, 3]),
        logits,
        labels,
    )
    values = metric.compute_key_value()
    assert "dice/class_00" not in values and "dice/class_03" in values
    assert values["dice/_macro"] == pytest.approx(
        f1_score(y, p, labels=[1, 2, 3], average="macro"), abs=1e-12
    )
    assert values["dice/_micro"] == pytest.approx(
        f1_score(y, p, labels=[1, 2, 3], average="micro"), abs=1e-12
    )


def test_multilabel_ignore_masks_each_class_separately():
    r = rng(4)
    logits = r.normal(size=(4, 2, 6, 6))
    target = (r.random((4, 2, 6, 6)) > 0.5).astype(np.float32)
    target[r.random(target.shape) < 0.25] = -1
    metric = feed(SegmentationScores(ignore_value=-1), logits, target)
    y, p = channels_last(target), channels_last(sigmoid(logits) > 0.5)
    per_class = [f1_score(y[y[:, c] != -1, c], p[y[:, c] != -1, c]) for c in range(2)]
    assert metric.compute()["dice"]["per_class"] == pytest.approx(per_class, abs=1e-12)
    flat_y, flat_p = y.ravel(), p.ravel()
    micro = f1_score(flat_y[flat_y != -1], flat_p[flat_y != -1])
    assert metric.compute()["dice"]["micro"] == pytest.approx(micro, abs=1e-12)


def test_per_image_is_the_mean_of_image_scores():
    r = rng(5)
    logits = r.normal(size=(8, 2, 7, 7))
    target = (r.random((8, 2, 7, 7)) > 0.7).astype(np.float32)
    target[2] = 0  # an image with no class 0 or 1 in the target...
    logits[2] = -5  # ...and none predicted: both classes empty → 1.0
    target[3, 1] = 0  # class 1 absent from image 3's target but predicted → 0.0
    per_image = feed(SegmentationScores(per_image=True), logits, target)
    dataset = feed(SegmentationScores(per_image=False), logits, target)
    pred = sigmoid(logits) > 0.5
    for score, fn in (("dice", f1_score), ("iou", jaccard_score)):
        per = np.array(
            [
                fn(
                    channels_last(target[i : i + 1]),
                    channels_last(pred[i : i + 1]),
                    average=None,
                    zero_division=1.0,
                )
                for i in range(8)
            ]
        )
        micro = [
            fn(
                channels_last(target[i : i + 1]),
                channels_last(pred[i : i + 1]),
                average="micro",
                zero_division=1.0,
            )
            for i in range(8)
        ]
        got = per_image.compute()[score]
        assert got["per_class"] == pytest.approx(per.mean(0), abs=1e-12)
        assert got["macro"] == pytest.approx(per.mean(), abs=1e-12)
        assert got["micro"] == pytest.approx(np.mean(micro), abs=1e-12)
        assert per[2].tolist() == [1.0, 1.0] and per[3, 1] == 0.0
        # the same state answers both questions; the two differ on this data
        assert dataset.compute(per_image=True)[score]["macro"] == got["macro"]
        assert (
            per_image.compute(per_image=False)[score]["macro"] == dataset.compute()[score]["macro"]
        )
        assert abs(got["macro"] - dataset.compute()[score]["macro"]) > 1e-3


def test_empty_case_convention():
    empty = torch.zeros(2, 1, 4, 4)
    metric = SegmentationScores()
    metric.update(torch.full_like(empty, -10.0), empty)  # nothing predicted, nothing true
    assert metric.compute_key_value() == {
        "dice": 1.0,
        "dice/_macro": 1.0,
        "dice/_micro": 1.0,
        "iou": 1.0,
        "iou/_macro": 1.0,
        "iou/_micro": 1.0,
    }
    skip = SegmentationScores(empty_score=None, per_image=True)
    skip.update(torch.full_like(empty, -10.0), empty)
    assert np.isnan(skip.compute()["dice"]["macro"])
    # a predicted-only image scores 0 whatever the convention
    metric.update(torch.full_like(empty, 10.0), empty)
    assert metric.compute()["dice"]["macro"] == 0.0
    # empty_score=None leaves empty (image, class) pairs out of the per-image mean
    logits = torch.tensor([[[[5.0, -5.0]]], [[[-5.0, -5.0]]]])  # image 1 is empty-empty
    target = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    counted = SegmentationScores(per_image=True, empty_score=None)
    counted.update(logits, target)
    assert counted.compute()["dice"]["macro"] == pytest.approx(2 / 3)
    ones = SegmentationScores(per_image=True)
    ones.update(logits, target)
    assert ones.compute()["dice"]["macro"] == pytest.approx((2 / 3 + 1) / 2)
    # a class absent from the whole dataset: 1.0 (in macro) by default, NaN (left out) with None
    logits = torch.tensor([[[[5.0]], [[-5.0]]]])
    target = torch.tensor([[[[1.0]], [[0.0]]]])
    for empty_score, per_class, macro in ((1.0, [1.0, 1.0], 1.0), (None, [1.0, np.nan], 1.0)):
        m = SegmentationScores(empty_score=empty_score)
        m.update(logits, target)
        got = m.compute()["dice"]
        np.testing.assert_equal(got["per_class"], per_class)
        assert got["macro"] == macro
    assert np.isnan(SegmentationScores().compute()["dice"]["macro"])  # nothing added


def test_batching_merge_and_reduce_outside_ddp_change_nothing():
    r = rng(6)
    logits = r.normal(size=(9, 3, 5, 5))
    target = (r.random((9, 3, 5, 5)) > 0.5).astype(np.float32)
    for per_image in (False, True):
        whole = feed(SegmentationScores(per_image=per_image), logits, target, batch_size=9)
        parts = feed(SegmentationScores(per_image=per_image), logits, target, batch_size=2)
        a = feed(SegmentationScores(per_image=per_image), logits[:4], target[:4])
        b = feed(SegmentationScores(per_image=per_image), logits[4:], target[4:])
        for other in (parts, a.merge(b), whole.reduced()):
            assert other.compute_key_value() == pytest.approx(whole.compute_key_value(), abs=1e-12)


def test_confusion_counts_agrees_with_segmentation_scores():
    r = rng(7)
    logits = r.normal(size=(3, 2, 6, 6))
    target = r.random((3, 2, 6, 6)) > 0.5
    counts = ConfusionCounts(num_classes=2)
    for i in range(3):
        counts.add(sigmoid(logits[i]) > 0.5, target[i])
    scores = feed(SegmentationScores(), logits, target.astype(np.float32)).compute()
    assert counts.dice() == pytest.approx(scores["dice"]["per_class"])
    assert counts.iou() == pytest.approx(scores["iou"]["per_class"])


def test_segmentation_bad_input_is_one_clear_error():
    with pytest.raises(PodiumError, match='unknown activation "relu"'):
        SegmentationScores(activation="relu")
    with pytest.raises(PodiumError, match='unknown segmentation metric "f1"'):
        SegmentationScores(metrics=["dice", "f1"])
    with pytest.raises(PodiumError, match="does not match outputs"):
        SegmentationScores().update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(PodiumError, match=r"must lie in \[0, 3\)"):
        SegmentationScores(activation="softmax").update(
            torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3)
        )
    with pytest.raises(PodiumError, match="class_names has 2 names for 3 classes"):
        SegmentationScores(class_names=["a", "b"]).update(
            torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
        )


# ------------------------------------------------------------------ R2
def test_r2_matches_sklearn():
    r = rng(8)
    y = r.normal(2.0, 3.0, size=(12, 3, 4, 4))
    p = y + r.normal(0, 2.0, size=y.shape)
    flat = feed(R2Score(), p, y)
    assert flat.compute()["r2"] == pytest.approx(r2_score(y.ravel(), p.ravel()), abs=1e-10)
    uniform = feed(R2Score(multioutput="uniform"), p, y)
    expected = r2_score(channels_last(y), channels_last(p))  # uniform average over the 3 outputs
    assert uniform.compute()["r2"] == pytest.approx(expected, abs=1e-10)
    assert uniform.compute_key_value() == {"r2": pytest.approx(expected, abs=1e-10)}
    # (B,) targets
    v = feed(R2Score(), p[:, 0, 0, 0], y[:, 0, 0, 0])
    assert v.compute()["r2"] == pytest.approx(r2_score(y[:, 0, 0, 0], p[:, 0, 0, 0]), abs=1e-10)


def test_r2_per_group_is_the_mean_of_group_r2():
    r = rng(9)
    y = r.normal(size=(20, 1, 5, 5)) * np.arange(1, 21)[:, None, None, None]
    p = y + r.normal(size=y.shape)
    cities = np.array(["ATL", "JAX", "OMA", "ARG"])[r.integers(0, 4, size=20)]
    metric = feed(R2Score(), p, y, group=cities)
    expected = {c: r2_score(y[cities == c].ravel(), p[cities == c].ravel()) for c in set(cities)}
    result = metric.compute()
    assert result["groups"] == pytest.approx(expected, abs=1e-10)
    assert result["r2"] == pytest.approx(np.mean(list(expected.values())), abs=1e-10)
    assert result["pooled"] == pytest.approx(r2_score(y.ravel(), p.ravel()), abs=1e-10)
    values = metric.compute_key_value("val_")
    assert set(values) == {"val_r2", "val_r2/_pooled", *(f"val_r2/{c}" for c in expected)}
    assert set(metric.compute_key_value(log_groups=False)) == {"r2", "r2/_pooled"}
    # integer group ids as a tensor, batches that bring new groups late
    ids = torch.as_tensor(np.searchsorted(sorted(set(cities)), cities))
    by_id = feed(R2Score(), p, y, batch_size=7, group=ids)
    assert by_id.compute()["r2"] == pytest.approx(result["r2"], abs=1e-10)


def test_r2_edge_cases():
    r = rng(10)
    y = r.normal(size=(6, 10))
    p = y + 0.3 * r.normal(size=y.shape)
    y_nan = y.copy()
    y_nan[r.random(y.shape) < 0.3] = np.nan  # missing targets
    metric = feed(R2Score(ignore_value=float("nan")), p, y_nan)
    keep = ~np.isnan(y_nan)
    assert metric.compute()["r2"] == pytest.approx(r2_score(y_nan[keep], p[keep]), abs=1e-10)
    # constant target: sklearn's force_finite convention
    constant = np.full(5, 3.7)
    assert (
        r2_from_sums(5, constant.sum(), (constant**2).sum(), 0.0)
        == 1.0
        == r2_score(constant, constant)
    )
    m = feed(R2Score(), constant + 0.1, constant)
    assert m.compute()["r2"] == 0.0 == r2_score(constant, constant + 0.1)
    assert np.isnan(R2Score().compute()["r2"])


# ------------------------------------------------------------------ classification
def test_binary_accuracy_f1_match_sklearn():
    r = rng(11)
    logits = r.normal(size=(50, 1))
    labels = (r.random(50) > 0.6).astype(np.float32)
    labels[:5] = -1  # ignored
    metric = feed(
        ClassificationScores(num_classes=1, ignore_value=-1), logits, labels, batch_size=8
    )
    keep = labels != -1
    pred = (sigmoid(logits[:, 0]) > 0.5)[keep]
    values = metric.compute_key_value()
    assert values == {
        "accuracy": pytest.approx(accuracy_score(labels[keep], pred), abs=1e-12),
        "f1": pytest.approx(f1_score(labels[keep], pred), abs=1e-12),
    }
    # probabilities in, another threshold
    probs = metric_probs = sigmoid(logits)
    metric = feed(
        ClassificationScores(activation="none", threshold=0.7),
        metric_probs,
        labels[:, None].clip(0),
    )
    assert metric.compute()["f1"] == pytest.approx(
        f1_score(labels.clip(0), probs[:, 0] > 0.7), abs=1e-12
    )
    # no positives anywhere: F1 0 (sklearn's zero_division default)
    none = ClassificationScores()
    none.update(torch.full((4,), -3.0), torch.zeros(4))
    assert none.compute_key_value() == {"accuracy": 1.0, "f1": 0.0}


def test_multiclass_accuracy_f1_match_sklearn():
    r = rng(12)
    logits = r.normal(size=(60, 5))
    labels = r.integers(0, 4, size=60)  # class 4 never a target...
    logits[:, 4] -= 10  # ...nor predicted: left out of macro F1, like sklearn
    metric = feed(
        ClassificationScores(num_classes=5, activation="softmax"), logits, labels, batch_size=16
    )
    pred = logits.argmax(1)
    values = metric.compute_key_value()
    assert values["accuracy"] == pytest.approx(accuracy_score(labels, pred), abs=1e-12)
    assert (
        values["f1"]
        == values["f1/_macro"]
        == pytest.approx(f1_score(labels, pred, average="macro"), abs=1e-12)
    )
    assert values["f1/_micro"] == pytest.approx(f1_score(labels, pred, average="micro"), abs=1e-12)
    per_class = f1_score(labels, pred, average=None, labels=range(5), zero_division=0.0)
    assert [values[f"f1/class_{c:02d}"] for c in range(5)] == pytest.approx(per_class, abs=1e-12)
    # one-hot targets, ignore
    one_hot = np.eye(5)[labels]
    one_hot[:10] = -1
    ignored = feed(
        ClassificationScores(num_classes=5, activation="argmax", ignore_value=-1), logits, one_hot
    )
    assert ignored.compute()["f1"] == pytest.approx(
        f1_score(labels[10:], pred[10:], average="macro"), abs=1e-12
    )
    assert ignored.compute()["confusion"].sum() == 50


# ------------------------------------------------------------------ boxes
def test_box_iou_by_hand():
    predicted = torch.tensor(
        [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 4, 2.0]]
    )
    target = torch.tensor(
        [[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 3, 3], [1, 1, 1, 1], [2, 2, 2, 2], [1, 0, 3, 4.0]]
    )
    # overlap 1 / union 7; identical; disjoint; equal points; distinct points; 4 / (8 + 8 - 4)
    expected = [1 / 7, 1.0, 0.0, 1.0, 0.0, 4 / 12]
    assert box_iou(predicted, target).tolist() == pytest.approx(expected)
    xywh = lambda b: torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1)  # noqa: E731
    cxcywh = lambda b: torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=1)  # noqa: E731
    assert box_iou(xywh(predicted), xywh(target), "xywh").tolist() == pytest.approx(expected)
    assert box_iou(cxcywh(predicted), cxcywh(target), "cxcywh").tolist() == pytest.approx(expected)
    metric = BoxIoU()
    metric.update(predicted[:4], target[:4])
    metric.update(predicted[4:].reshape(1, 2, 4), target[4:].reshape(1, 2, 4))  # (B, N, 4)
    assert metric.compute_key_value() == {"box_iou": pytest.approx(np.mean(expected))}
    # rows with a NaN target are left out
    with_missing = torch.cat([target[:2], torch.full((1, 4), float("nan"))])
    ignoring = BoxIoU(ignore_value=float("nan"))
    ignoring.update(predicted[:3], with_missing)
    assert ignoring.compute() == {"iou": pytest.approx((1 / 7 + 1) / 2), "count": 2.0}
    with pytest.raises(PodiumError, match='unknown box_format "yolo"'):
        BoxIoU(box_format="yolo")


def test_box_iou_random_against_numpy():
    r = rng(13)
    a = (
        np.sort(r.random((40, 2, 2)) * 10, axis=1)
        .transpose(0, 2, 1)
        .reshape(40, 4)[:, [0, 2, 1, 3]]
    )
    b = (
        np.sort(r.random((40, 2, 2)) * 10, axis=1)
        .transpose(0, 2, 1)
        .reshape(40, 4)[:, [0, 2, 1, 3]]
    )
    # a, b: x1 <= x2, y1 <= y2 per row
    assert (a[:, 2] >= a[:, 0]).all() and (a[:, 3] >= a[:, 1]).all()
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    expected = iw * ih / (area(a) + area(b) - iw * ih)
    metric = feed(BoxIoU(), a, b, batch_size=7)
    assert metric.compute()["iou"] == pytest.approx(expected.mean(), abs=1e-12)
