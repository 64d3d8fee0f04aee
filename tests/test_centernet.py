"""CenterNet (PKU seed): Gaussian targets, flips of boxes vs. maps, peak decoding, TTA, VOC mAP
(hand-computed, and exact under 2-process gloo DDP), the deepforest tiles, and an end-to-end
`catalyst-dl run` + `podium predict` (= `predict-centernet`) whose mAP is the logged map50."""

import math
import os
from types import SimpleNamespace

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import REPO, run_command, run_two_ranks

from podium.cli.main import main
from podium.errors import PodiumError
from podium.inference.tta import View, augment, deaugment_maps, dihedral_views
from podium.runners.engines import free_port
from podium.tasks.centernet.callbacks import DetectionMAPCallback
from podium.tasks.centernet.data import (
    boxes_in_window,
    build_deepforest_tiles,
    draw_gaussian,
    gaussian_radius,
    render_targets,
)
from podium.tasks.centernet.metrics import DetectionMAP, average_precision
from podium.tasks.centernet.model import build_centernet, decode_centernet
from podium.tasks.centernet.predict import RULES, CenterNetPredictor

CONFIG = REPO / "configs" / "centernet" / "resnet18_trees.yml"


# ---------------------------------------------------------------- targets


def test_gaussian_radius_hand_computed():
    # 10×10 box, min_overlap 0.7: the three roots (b + √Δ)/2 of CenterNet's code are
    # r1 = (20 + √(400 − 4·30/1.7))/2, r2 = (40 + √(1600 − 16·30))/2, r3 = (−28 + √(784 +
    # 11.2·30))/2
    r1 = (20 + math.sqrt(400 - 4 * 30 / 1.7)) / 2
    r3 = (-28 + math.sqrt(784 + 11.2 * 30)) / 2
    assert r3 < r1 and r3 == pytest.approx(2.7332, abs=1e-4)
    assert gaussian_radius(10, 10, 0.7) == pytest.approx(r3, rel=1e-12)
    # 4 × 12: r3 = (−22.4 + √(22.4² + 4·2.8·0.3·48))/2
    assert gaussian_radius(4, 12, 0.7) == pytest.approx(
        (-22.4 + math.sqrt(22.4**2 + 2.8 * 4 * 0.3 * 48)) / 2
    )


def test_draw_gaussian_values_and_clipping():
    heatmap = np.zeros((9, 9), np.float32)
    draw_gaussian(heatmap, column=4, row=4, radius=2)
    sigma = 5 / 6
    assert heatmap[4, 4] == 1.0
    assert heatmap[4, 6] == pytest.approx(math.exp(-4 / (2 * sigma**2)), rel=1e-6)
    assert heatmap[3, 5] == pytest.approx(math.exp(-2 / (2 * sigma**2)), rel=1e-6)
    assert heatmap[4, 7] == 0 and heatmap[1, 4] == 0  # outside the radius
    corner = np.zeros((9, 9), np.float32)
    draw_gaussian(corner, column=0, row=8, radius=2)  # clipped at two borders: the visible quarter
    np.testing.assert_array_equal(corner[6:, :3], heatmap[2:5, 4:7])
    assert corner.sum() == pytest.approx(heatmap[2:5, 4:7].sum())
    draw_gaussian(heatmap, column=4, row=4, radius=1)  # overlapping Gaussians keep the max
    assert heatmap[4, 6] == pytest.approx(math.exp(-4 / (2 * sigma**2)), rel=1e-6)


def test_render_targets_hand_computed():
    # box (13, 2)–(31, 26), stride 4 → centre (5.5, 3.5) cells: cell (row 3, col 5), offset (0, 0),
    # size (4.5, 6)
    targets = render_targets(
        np.array([[13, 2, 31, 26]]), [0], (32, 48), num_classes=2, output_stride=4
    )
    assert targets["heatmap"].shape == (2, 8, 12) and targets["size"].shape == (2, 8, 12)
    assert targets["heatmap"][0, 3, 5] == 1.0 and (targets["heatmap"][0] == 1).sum() == 1
    assert targets["heatmap"][1].max() == 0  # class 1 has no box
    np.testing.assert_allclose(targets["size"][:, 3, 5], [4.5, 6.0])
    np.testing.assert_allclose(targets["offset"][:, 3, 5], [0.0, 0.0])
    assert np.isnan(targets["size"]).sum() == 2 * 8 * 12 - 2  # NaN = no target, except the centre
    # radius = int(gaussian_radius(ceil 6, ceil 4.5)) = int(1.86) = 1: a 3×3 Gaussian
    assert int(gaussian_radius(6, 5)) == 1
    assert (targets["heatmap"][0] > 0).sum() == 9
    # a centre 0.25 cell right/up of a cell centre
    targets = render_targets(np.array([[2, 0, 8, 5]]), [0], (16, 16), output_stride=4)
    np.testing.assert_allclose(targets["offset"][:, 0, 1], [1.25 - 1.5, 0.625 - 0.5])


def _random_boxes(rng, count, size, low=8, high=40, height=None):
    """`count` boxes in a size × (height or size) image, no two centres in one stride-4 cell."""
    boxes = []
    while len(boxes) < count:
        w, h = rng.uniform(low, high, 2)
        x, y = rng.uniform(0, size - w), rng.uniform(0, (height or size) - h)
        box = np.array([x, y, x + w, y + h])
        centre = (box[:2] + box[2:]) / 2 / 4
        cells = {tuple(np.floor((b[:2] + b[2:]) / 8).astype(int)) for b in boxes}
        if tuple(np.floor(centre).astype(int)) not in cells:
            boxes.append(box)
    return np.array(boxes)


def _as_outputs(targets):
    """Targets as if a model had predicted them: NaN (no target) → 0, a batch of one."""
    return {key: torch.from_numpy(np.nan_to_num(value))[None] for key, value in targets.items()}


def test_decode_inverts_render():
    boxes = _random_boxes(np.random.default_rng(0), 12, 128)
    out = _as_outputs(render_targets(boxes, [0] * 12, (128, 128)))
    found = decode_centernet(
        out["heatmap"],
        out["size"],
        out["offset"],
        output_stride=4,
        probabilities=True,
        min_score=0.999,
    )[0]
    assert len(found["boxes"]) == 12 and torch.all(found["scores"] == 1)
    order = np.lexsort((found["boxes"][:, 1].numpy(), found["boxes"][:, 0].numpy()))
    expected = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
    np.testing.assert_allclose(found["boxes"].numpy()[order], expected, atol=1e-4)
    # a peak is the max of its 3×3 neighbourhood: a lower neighbour of a peak is suppressed
    heatmap = torch.zeros(1, 1, 8, 8)
    heatmap[0, 0, 3, 3], heatmap[0, 0, 3, 4], heatmap[0, 0, 6, 6] = 0.9, 0.8, 0.5
    found = decode_centernet(
        heatmap, torch.ones(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), probabilities=True, min_score=0.1
    )[0]
    assert found["scores"].tolist() == pytest.approx([0.9, 0.5])
    np.testing.assert_allclose(found["boxes"].numpy(), [[12, 12, 16, 16], [24, 24, 28, 28]])


D4 = dihedral_views("d4")


def _albumentations_view(boxes, size, view, height=None):
    """The boxes of the view of a size × (height or size) image — albumentations as reference."""
    steps = (
        ([A.Transpose(p=1)] if view.transpose else [])
        + ([A.HorizontalFlip(p=1)] if view.hflip else [])
        + ([A.VerticalFlip(p=1)] if view.vflip else [])
    )
    pipeline = A.Compose(
        steps, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"])
    )
    image = np.zeros((height or size, size, 3), np.float32)
    out = pipeline(image=image, bboxes=boxes, labels=[0] * len(boxes))
    return np.asarray(out["bboxes"], np.float64)


def _undo(targets, view, cells):
    """Rendered targets of a view moved back by the one TTA (`podium.inference.tta`)."""
    return {
        key: deaugment_maps(torch.from_numpy(value)[None], view, cells, RULES[key])[0]
        for key, value in targets.items()
    }


@pytest.mark.parametrize("view", D4)
def test_undoing_a_view_on_rendered_maps_gives_the_boxes_maps(view):
    """Targets drawn from the view's boxes, moved back by the TTA's rules (size `wh`, offset
    `xy`: mirrored and negated), == the targets of the boxes themselves, for every D4 view."""
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 10, 128)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 8
    assert np.all(np.abs(centres - np.round(centres)) > 1e-3)  # no centre on a cell border (a tie)
    seen = render_targets(_albumentations_view(boxes, 128, view), [0] * 10, (128, 128))
    direct = render_targets(boxes, [0] * 10, (128, 128))
    for key, value in _undo(seen, view, (32, 32)).items():
        np.testing.assert_allclose(
            value.numpy(), direct[key], atol=1e-5, equal_nan=True, err_msg=key
        )


def test_flipped_maps_decode_to_flipped_boxes_even_on_cell_borders():
    """A centre exactly on a cell border lands in another cell when the boxes are flipped, but
    the flipped maps (offset +½ instead of −½) decode to the same box (an h-flip undone is an
    h-flip)."""
    boxes = np.array(
        [[8.0, 8.0, 24.0, 20.0], [40.0, 4.0, 56.0, 28.0]]
    )  # centres at x = 16, 48: borders
    flipped = _albumentations_view(boxes, 64, View(hflip=True))
    targets = {k: np.nan_to_num(v) for k, v in render_targets(boxes, [0, 0], (64, 64)).items()}
    mapped = _undo(targets, View(hflip=True), (16, 16))
    found = decode_centernet(
        mapped["heatmap"][None],
        mapped["size"][None],
        mapped["offset"][None],
        probabilities=True,
        min_score=0.999,
    )[0]["boxes"].numpy()
    np.testing.assert_allclose(
        found[np.argsort(found[:, 0])], flipped[np.argsort(flipped[:, 0])], atol=1e-5
    )


class _BoxRenderer(torch.nn.Module):
    """A stand-in model that sees which D4 view of `reference` it gets and returns the CenterNet
    maps of the boxes moved by that view (heatmap as logits) — a perfectly equivariant detector."""

    output_stride, num_classes = 4, 1

    def __init__(self, reference, boxes):
        super().__init__()
        self.reference, self.boxes = reference, boxes

    def forward(self, images):
        height, width = self.reference.shape[-2:]
        for view in D4:
            if torch.equal(images, augment(self.reference, view)):
                targets = render_targets(
                    _albumentations_view(self.boxes, width, view, height),
                    [0] * len(self.boxes),
                    images.shape[-2:],
                )
                out = _as_outputs(targets)
                out["heatmap"] = torch.logit(out["heatmap"].clamp(1e-6, 1 - 1e-6))
                return out
        raise AssertionError("not a D4 view of the reference image")


@pytest.mark.parametrize("tta", ["none", "flip", "d4"])
@pytest.mark.parametrize("height", [64, 48])
def test_tta_undoes_every_view_on_the_maps(tta, height):
    boxes = _random_boxes(np.random.default_rng(2), 8, 64, low=6, high=20, height=height)
    image = torch.randn(1, 3, height, 64)
    predictor = CenterNetPredictor(_BoxRenderer(image, boxes), tta=tta, device="cpu", top_k=20)
    assert predictor.tta.num_views == {"none": 1, "flip": 2, "d4": 8}[tta]
    maps = predictor.maps(image)
    expected = render_targets(boxes, [0] * 8, (height, 64))
    np.testing.assert_allclose(maps["heatmap"][0].numpy(), expected["heatmap"], atol=1e-5)
    centres = ~np.isnan(expected["size"])
    np.testing.assert_allclose(
        maps["size"][0].numpy()[centres], expected["size"][centres], atol=1e-6
    )
    np.testing.assert_allclose(
        maps["offset"][0].numpy()[centres], expected["offset"][centres], atol=1e-6
    )
    found = predictor.detect(image)[0]
    top = found["boxes"][found["scores"] > 0.99].numpy()
    np.testing.assert_allclose(
        top[np.argsort(top[:, 0])], boxes[np.argsort(boxes[:, 0])], atol=1e-4
    )


class _StrideNet(torch.nn.Module):
    """A stride-4 stand-in for CenterNet that is not equivariant at all: a 3×3 conv, 4×4 average
    pooling (ceil: any input size), a 1×1 conv to heatmap logits, size and offset. Its weights
    come from numpy's seeded generator, so the recorded outputs do not depend on torch's init."""

    output_stride = 4

    def __init__(self):
        super().__init__()
        self.conv, self.head = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Conv2d(6, 5, 1)
        rng = np.random.default_rng(5)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.from_numpy(rng.normal(0, 0.5, parameter.shape)))

    def forward(self, images):
        features = F.avg_pool2d(torch.relu(self.conv(images)), 4, ceil_mode=True)
        out = self.head(features)
        return {"heatmap": out[:, :1], "size": out[:, 1:3], "offset": out[:, 3:]}


# (tta, H, W): square and odd sizes (padded to a multiple of the stride), and a non-square flip
PARITY_CASES = [
    ("none", 29, 29),
    ("flip", 29, 29),
    ("d4", 29, 29),
    ("d4", 32, 32),
    ("flip", 21, 29),
]
D4_FLAGS = [(t, h, v) for t in (False, True) for h in (False, True) for v in (False, True)]
PARITY = REPO / "tests" / "data" / "centernet_tta_before.npz"


def _parity_images(height, width):
    return torch.from_numpy(
        np.random.default_rng(height * width).normal(size=(2, 3, height, width))
    ).float()


def _parity_maps(transposed):
    """Random maps as a view of a 5×7-cell image outputs them (7×5 for transposed views)."""
    rng = np.random.default_rng(11 + transposed)
    shape = (7, 5) if transposed else (5, 7)
    return {
        key: rng.normal(size=(2, channels, *shape)).astype(np.float32)
        for key, channels in (("heatmap", 1), ("size", 2), ("offset", 2))
    }


def test_one_tta_matches_the_old_centernet_deaugmentation():
    """CenterNet's maps through `podium.inference.tta` equal what the CenterNet-only TTA gave:
    outputs recorded (tests/data/centernet_tta_before.npz) from `CenterNetPredictor.maps` and
    `undo_view` of podium/inference/centernet.py before the one TTA replaced them (e55c5fe) — a
    predictor on odd and square sizes for none / flip / d4, every D4 view undone on random maps."""
    recorded = np.load(PARITY)
    for mode, height, width in PARITY_CASES:
        predictor = CenterNetPredictor(_StrideNet(), tta=mode, device="cpu")
        maps = predictor.maps(_parity_images(height, width))
        for key, value in maps.items():
            expected = recorded[f"maps_{mode}_{height}x{width}_{key}"]
            np.testing.assert_allclose(value.numpy(), expected, rtol=0, atol=1e-6, err_msg=key)
    for t, h, v in D4_FLAGS:
        for key, value in _parity_maps(t).items():
            back = deaugment_maps(torch.from_numpy(value), View(t, h, v), (5, 7), RULES[key])
            expected = recorded[f"undo_{int(t)}{int(h)}{int(v)}_{key}"]
            np.testing.assert_array_equal(back.numpy(), expected, err_msg=f"{key} {t, h, v}")


# ---------------------------------------------------------------- mAP


def _box(x, y, w=10.0, h=10.0):
    return [x, y, x + w, y + h]


def test_average_precision_hand_computed():
    # GT: image 1 has A, B; image 2 has C. Detections by score: .9 hits A (TP), .8 hits A again
    # (FP),
    # .7 misses C (IoU 50/150 = 1/3: FP), .6 hits B (IoU 75/125 = 0.6: TP).
    # precision 1, 1/2, 1/3, 1/2 at recall 1/3, 1/3, 1/3, 2/3 → envelope 1, .5, .5, .5
    # AP = 1/3 · 1 + 1/3 · 1/2 + 1/3 · 0 = 0.5
    metric = DetectionMAP(num_classes=1)
    gt1, gt2 = torch.tensor([_box(0, 0), _box(50, 50)]), torch.tensor([_box(0, 0)])
    det1 = {
        "boxes": torch.tensor([_box(0, 0), _box(0, 0), _box(50, 52.5)]),  # IoU(B) = 75/125 = 0.6
        "scores": torch.tensor([0.9, 0.8, 0.6]),
        "labels": torch.tensor([0, 0, 0]),
    }
    det2 = {
        "boxes": torch.tensor([_box(5, 0)]),
        "scores": torch.tensor([0.7]),
        "labels": torch.tensor([0]),
    }  # IoU 1/3
    metric.update([det1, det2], [gt1, gt2], [torch.tensor([0, 0]), torch.tensor([0])])
    result = metric.compute()
    assert result["map"] == pytest.approx(0.5) and list(result["num_gt"]) == [3]
    assert average_precision(
        np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 0, 1]), 3
    ) == pytest.approx(0.5)
    assert metric.compute_key_value("valid_") == {"valid_map50": pytest.approx(0.5)}
    # the same update as one padded batch (labels −1 / NaN boxes are padding) gives the same value
    padded = DetectionMAP(num_classes=1)
    boxes = torch.full((2, 3, 4), float("nan"))
    boxes[0, :2], boxes[1, :1] = gt1, gt2
    padded.update([det1, det2], boxes, torch.tensor([[0, 0, -1], [0, -1, -1]]))
    assert padded.compute()["map"] == pytest.approx(0.5)


def test_map_rules_threshold_classes_and_empty():
    # IoU exactly 0.5 counts (≥): [0, 20]×[0, 10] against [0, 10]² is 100 / 200
    metric = DetectionMAP(num_classes=3, class_names=["a", "b", "c"])
    detection = {
        "boxes": torch.tensor([[0.0, 0, 20, 10]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([0]),
    }
    metric.update(
        [detection], [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])], [torch.tensor([0, 1])]
    )
    values = metric.compute()
    assert values["ap"][0] == pytest.approx(1.0)  # IoU 0.5 ≥ 0.5
    assert values["ap"][1] == 0.0  # ground truth, no detection
    assert np.isnan(values["ap"][2])  # no ground truth: left out of the mean
    assert values["map"] == pytest.approx(0.5)
    assert metric.compute_key_value() == {
        "map50": pytest.approx(0.5),
        "map50/a": 1.0,
        "map50/b": 0.0,
        "map50/c": pytest.approx(float("nan"), nan_ok=True),
    }
    strict = DetectionMAP(num_classes=1, iou_threshold=0.75)
    strict.update([detection], [torch.tensor([[0.0, 0, 10, 10]])], [torch.tensor([0])])
    assert strict.compute_key_value() == {"map75": 0.0}
    assert np.isnan(DetectionMAP().compute()["map"])
    with pytest.raises(PodiumError, match="iou_threshold"):
        DetectionMAP(iou_threshold=0)
    with pytest.raises(PodiumError, match="ground-truth class 2 >= num_classes 1"):
        DetectionMAP().update([detection], [torch.tensor([[0.0, 0, 1, 1]])], [torch.tensor([2])])


def _map_batches():
    """Six images of CenterNet-like outputs (noisy rendered targets) and their padded ground
    truth."""
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(6):
        boxes = _random_boxes(rng, int(rng.integers(1, 6)), 64, low=6, high=20)
        out = _as_outputs(render_targets(boxes, [0] * len(boxes), (64, 64)))
        heat = out["heatmap"].clamp(1e-3, 1 - 1e-3)
        noisy = {
            "heatmap": torch.logit(heat) + torch.from_numpy(rng.normal(0, 3.0, heat.shape)).float(),
            "size": out["size"] + torch.from_numpy(rng.normal(0, 1.5, out["size"].shape)).float(),
            "offset": out["offset"],
        }
        padded = torch.full((1, 8, 4), float("nan"))
        padded[0, : len(boxes)] = torch.from_numpy(boxes).float()
        labels = torch.full((1, 8), -1)
        labels[0, : len(boxes)] = 0
        batches.append({**noisy, "boxes": padded, "labels": labels})
    return batches


def _run_callback(callback, batches, loader_key="valid"):
    runner = SimpleNamespace(batch=None, loader_key=loader_key, loader_metrics={}, batch_metrics={})
    callback.on_loader_start(runner)
    for batch in batches:
        runner.batch = batch
        callback.on_batch_end(runner)
    callback.on_loader_end(runner)
    return runner.loader_metrics


def test_callback_decodes_and_matches_like_the_metric():
    batches = _map_batches()
    logged = _run_callback(DetectionMAPCallback(output_stride=4), batches)
    metric = DetectionMAP()
    for b in batches:
        metric.update(
            decode_centernet(b["heatmap"], b["size"], b["offset"]), b["boxes"], b["labels"]
        )
    assert 0.05 < logged["map50"] < 0.99 and logged["map50"] == pytest.approx(
        metric.compute()["map"]
    )
    assert (
        _run_callback(DetectionMAPCallback(loader_keys=["valid"]), batches, loader_key="train")
        == {}
    )
    with pytest.raises(PodiumError, match="batch has no boxes"):
        _run_callback(
            DetectionMAPCallback(), [{k: v for k, v in batches[0].items() if k != "boxes"}]
        )


def _ddp_worker(rank, port, out_dir):
    torch.set_num_threads(1)
    batches = _map_batches()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    got = _run_callback(DetectionMAPCallback(), batches[rank::2])  # each rank sees half the images
    dist.barrier()
    dist.destroy_process_group()
    torch.save(got, os.path.join(out_dir, f"rank{rank}.pt"))


def test_map_under_ddp_equals_single_process(tmp_path):
    expected = _run_callback(DetectionMAPCallback(), _map_batches())
    run_two_ranks(_ddp_worker, free_port(), str(tmp_path))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["map50"] == pytest.approx(expected["map50"], abs=1e-12), rank
    halves = [
        _run_callback(DetectionMAPCallback(), _map_batches()[r::2])["map50"] for r in range(2)
    ]
    assert all(abs(h - expected["map50"]) > 1e-6 for h in halves)  # so the test can fail


# ---------------------------------------------------------------- model


def test_centernet_model_shapes_and_heads():
    model = build_centernet("resnet18", num_classes=3, head_channels=16)
    out = model(torch.randn(2, 3, 70, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "heatmap": (2, 3, 18, 24),
        "size": (2, 2, 18, 24),
        "offset": (2, 2, 18, 24),
    }
    assert tuple(model.encoder.get_output_spec().strides) == (4, 8, 16, 32)
    assert torch.sigmoid(model.heads["heatmap"][-1].bias).tolist() == pytest.approx(
        [0.1] * 3, abs=1e-6
    )
    from podium.callbacks.freeze import encoder_blocks

    assert (
        len(encoder_blocks(model.encoder)) == 5
    )  # stem … layer4: the freeze callbacks see the timm stages
    with pytest.raises(PodiumError, match="output_stride 3 is not a feature stride"):
        build_centernet("resnet18", output_stride=3)
    with pytest.raises(PodiumError, match="decoder_channels has 2 values"):
        build_centernet("resnet18", decoder_channels=[8, 8])


# ---------------------------------------------------------------- deepforest tiles


@pytest.fixture(scope="module")
def tiles():
    return build_deepforest_tiles()


def test_tiles_split_is_spatial_and_covers_the_valid_region(tiles):
    train, valid = tiles["train"], tiles["valid"]
    for scene_index, scene in enumerate(valid.scenes):
        height, width = scene.image.shape[:2]
        boundary = int(round(width * 0.75))
        covered = np.zeros((height, width), bool)
        for w in valid.windows:
            if w.source == scene_index:
                assert w.x0 >= boundary
                covered[w.y0 : w.y1, w.x0 : w.x1] = True
        assert covered[:, boundary:].all() and not covered[:, :boundary].any()
        assert all(w.x1 <= boundary for w in train.windows if w.source == scene_index)
    sample = valid[0]
    assert sample["image"].shape == (3, 128, 128) and sample["heatmap_target"].shape == (1, 32, 32)
    # every real box of a tile has its peak, size and offset
    n = int(sample["num_boxes"])
    assert n > 0 and torch.all(sample["labels"][:n] == 0) and torch.all(sample["labels"][n:] == -1)
    assert (
        int((sample["heatmap_target"] == 1).sum()) <= n
        and int((~torch.isnan(sample["size_target"][0])).sum()) <= n
    )
    total = sum(int(valid[i]["num_boxes"]) for i in range(len(valid)))
    assert (
        total > 300
    )  # ~1/4 of 951 crowns, some counted in two tiles where the last tile moves inwards


def test_boxes_in_window_clips_and_drops():
    boxes = np.array([[0.0, 0, 10, 10], [8, 8, 28, 28], [95, 0, 110, 10]])
    kept, labels = boxes_in_window(boxes, np.array([0, 1, 2]), (5, 0, 100, 100), min_visibility=0.5)
    np.testing.assert_allclose(
        kept, [[0, 0, 5, 10], [3, 8, 23, 28]]
    )  # 50 % and 100 % inside; 1/3 dropped
    assert labels.tolist() == [0, 1]


def _cells(boxes, stride=4):
    return [tuple(c) for c in np.floor((boxes[:, :2] + boxes[:, 2:]) / 2 / stride).astype(int)]


def test_tile_flip_moves_image_boxes_and_targets(tiles):
    plain = tiles["valid"]
    flipped = build_deepforest_tiles(
        splits=["valid"], valid_transforms=[{"HorizontalFlip": {"p": 1.0}}]
    )["valid"]

    def flip_boxes(sample):
        boxes = sample["boxes"][: int(sample["num_boxes"])].numpy().astype(np.float64)
        boxes[:, [0, 2]] = 128 - boxes[:, [2, 0]]
        return boxes

    # a tile with several crowns whose centres occupy distinct cells, before and after the flip
    index = next(
        i
        for i in range(len(plain))
        if plain[i]["num_boxes"] >= 3
        and len(set(_cells(flip_boxes(plain[i])))) == int(plain[i]["num_boxes"])
        and len(set(_cells(plain[i]["boxes"][: int(plain[i]["num_boxes"])].numpy())))
        == int(plain[i]["num_boxes"])
    )
    a, b = plain[index], flipped[index]
    torch.testing.assert_close(b["image"], a["image"].flip(-1))
    expected = flip_boxes(a)
    got = b["boxes"][: int(b["num_boxes"])].numpy()
    np.testing.assert_allclose(
        got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])], atol=1e-3
    )
    # the targets were drawn from the flipped boxes: they decode to exactly those boxes
    found = decode_centernet(
        b["heatmap_target"][None],
        torch.nan_to_num(b["size_target"])[None],
        torch.nan_to_num(b["offset_target"])[None],
        probabilities=True,
        min_score=0.999,
    )[0]
    decoded = found["boxes"].numpy()
    assert len(decoded) == len(expected)
    np.testing.assert_allclose(
        decoded[np.lexsort(decoded.T[::-1])], expected[np.lexsort(expected.T[::-1])], atol=1e-3
    )


def test_bad_data_params():
    with pytest.raises(PodiumError, match="tile_size 126 must be a multiple of output_stride 4"):
        build_deepforest_tiles(tile_size=126)
    with pytest.raises(PodiumError, match=r"valid_fraction must be a number in \(0.0, 1.0\)"):
        build_deepforest_tiles(valid_fraction=1.0)
    with pytest.raises(PodiumError, match="class 'Tree', not in data classes"):
        build_deepforest_tiles(classes=["Alive", "Dead"])
    with pytest.raises(
        PodiumError, match=r"holds \d+ boxes, more than data max_objects 4; raise max_objects"
    ):
        tiles = build_deepforest_tiles(max_objects=4, splits=["valid"])["valid"]
        [tiles[i] for i in range(len(tiles))]


# ---------------------------------------------------------------- end to end


def test_train_then_predict_end_to_end(tmp_path, capsys):
    logdir = tmp_path / "run"
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        CONFIG,
        f"--args/logdir={logdir}:str",
        "--data/num_train=16:int",
        "--data/num_valid=12:int",
        "--stages/train/num_epochs=1:int",
        "--model/head_channels=16:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert {"map50", "loss_heatmap", "loss_size", "loss_offset"} <= set(valid.columns)
    assert valid["loss"].to_numpy() == pytest.approx(
        (valid["loss_heatmap"] + 0.1 * valid["loss_size"] + valid["loss_offset"]).to_numpy(),
        rel=1e-5,
    )

    # predicting the run's valid tiles without TTA reproduces the logged map50 exactly
    out = tmp_path / "valid.csv"
    result = run_command(
        "podium",
        "predict-centernet",
        "--run",
        logdir,
        "--deepforest",
        "valid",
        "--out",
        out,
        "--min-score",
        "0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logged = float(valid["map50"].iloc[-1])
    assert f"valid map50 {logged:.4f} over 12 tiles" in result.stdout
    rows = pd.read_csv(out)
    assert len(rows) == 12 * 100 and set(rows["class"]) == {
        "crown"
    }  # top 100 per tile, scene pixels
    assert set(rows["image"]) <= {
        os.path.basename(s.item.image_path)
        for s in build_deepforest_tiles(splits=["valid"])["valid"].scenes
    }
    # `podium predict` picks the task from the run's model: the same command, the same rows
    routed = tmp_path / "routed.csv"
    args = ["--run", str(logdir), "--deepforest", "valid", "--out", str(routed), "--min-score", "0"]
    assert main(["predict", *args]) == 0
    assert routed.read_bytes() == out.read_bytes()
    assert capsys.readouterr().out.startswith(f"predict: {12 * 100} boxes with score >= 0.0")

    # a whole image file, with D4 TTA: boxes in its own pixels
    from podium.datasets.deepforest import read_deepforest_annotations

    source = next(item for item in read_deepforest_annotations() if item.size == (400, 400))
    image = cv2.imread(source.image_path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(tmp_path / "scene.png"), image[:, :, :3] if image.ndim == 3 else image)
    out_images = (
        tmp_path / "images.csv"
    )  # in this process: the same command without another start-up
    assert (
        main(
            [
                "predict-centernet",
                "--run",
                str(logdir),
                "--images",
                str(tmp_path / "scene.png"),
                "--out",
                str(out_images),
                "--tta",
                "d4",
                "--min-score",
                "0",
                "--top-k",
                "5",
            ]
        )
        == 0
    )
    rows = pd.read_csv(out_images)
    assert len(rows) == 5 and set(rows["name"]) == {"scene"}
    assert rows["score"].is_monotonic_decreasing


def test_predict_centernet_errors(tmp_path, capsys):
    from podium.tasks.centernet.predict import load_centernet_predictor

    with pytest.raises(PodiumError, match="is not a podium run directory"):
        load_centernet_predictor(tmp_path)
    with pytest.raises(PodiumError, match='unknown tta views "d8"'):
        CenterNetPredictor(_StrideNet(), tta="d8", device="cpu")
    with pytest.raises(PodiumError, match="stride 4 takes flips and transposes only"):
        CenterNetPredictor(_StrideNet(), tta="multiscale", device="cpu")
    assert (
        main(
            [
                "predict-centernet",
                "--run",
                str(tmp_path),
                "--deepforest",
                "valid",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        != 0
    )
    assert "podium: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "predict-centernet",
                "--run",
                str(tmp_path),
                "--images",
                "a.png",
                "--deepforest",
                "valid",
                "--out",
                "x.csv",
            ]
        )
