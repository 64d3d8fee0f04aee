"""Classifier + box regression on the real deepforest crowns: reader, crops, letterbox geometry of
boxes, model, TTA de-augmentation, and `catalyst-dl run` → `podium predict-detector` end to end."""

import csv

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, run_command

from podium.cli.main import main
from podium.datasets.deepforest import read_deepforest_annotations, split_region, window_to_scene
from podium.datasets.letterbox import letterbox, letterbox_meta
from podium.errors import PodiumError
from podium.tasks.boxes.data import (
    IGNORE,
    build_deepforest_datasets,
    cxcywh_to_xyxy,
    inside_fractions,
    letterbox_boxes,
    main_box,
    unletterbox_boxes,
)

CONFIG = REPO / "configs" / "detector" / "efficientnet_b0_boxes.yml"


@pytest.fixture(scope="module")
def small_datasets():
    return build_deepforest_datasets(size=64, num_train=64, num_valid=32, seed=3)


# ---------------------------------------------------------------- reader (real files)


def test_deepforest_reader_reads_every_box():
    items = read_deepforest_annotations()
    names = [item.image_path.replace("\\", "/").split("/")[-1] for item in items]
    assert names == [
        "2019_YELL_2_528000_4978000_image_crop2.png",
        "2019_YELL_2_541000_4977000_image_crop.png",
        "OSBS_029.tif",
        "SOAP_061.png",
    ]
    assert [len(item.labels) for item in items] == [574, 279, 61, 37]  # 951, as real-data.md says
    labels = [label for item in items for label in item.labels]
    assert {name: labels.count(name) for name in set(labels)} == {
        "Tree": 914,
        "Alive": 9,
        "Dead": 28,
    }
    assert [item.size for item in items] == [(2472, 2299), (1035, 1249), (400, 400), (400, 400)]
    # the first object of SOAP_061.xml, read by hand from the file
    assert items[3].labels[0] == "Dead" and items[3].boxes[0].tolist() == [149, 105, 173, 129]
    for item in items:
        assert item.boxes.dtype == np.float32 and item.boxes.shape == (len(item.labels), 4)
        height, width = item.size
        assert (item.boxes[:, 2] <= width).all() and (item.boxes[:, 3] <= height).all()


def test_deepforest_reader_errors(tmp_path):
    with pytest.raises(PodiumError, match="no Pascal VOC"):
        read_deepforest_annotations(str(tmp_path))
    (tmp_path / "a.xml").write_text("<annotation><filename>missing.png</filename></annotation>")
    with pytest.raises(PodiumError, match="missing.png, which does not exist"):
        read_deepforest_annotations(str(tmp_path))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 20, 3), np.uint8))
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>20</width><height>10</height></size><object><name>Tree</name><bndbox><xmin>5</xmin><ymin>2</ymin><xmax>25</xmax><ymax>8</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(PodiumError, match="outside the 20×10 image"):
        read_deepforest_annotations(str(tmp_path))


# ---------------------------------------------------------------- box geometry


def test_letterbox_boxes_hand_computed():
    meta = letterbox_meta((100, 200), 64)  # 200 wide: scale 0.32 → 64×32, padded 16 top and bottom
    assert meta["resized"] == [32, 64] and meta["pad"] == [16, 16, 0, 0]
    boxes = np.array([[0, 0, 200, 100], [50, 25, 150, 75]], dtype=np.float64)
    assert letterbox_boxes(boxes, meta).tolist() == [[0, 16, 64, 48], [16, 24, 48, 40]]


@pytest.mark.parametrize(
    "shape,size", [((100, 200), 64), ((157, 61), 128), ((64, 64), 64), ((31, 250), (96, 80))]
)
def test_letterbox_boxes_round_trip_is_exact(shape, size):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 1, size=(50, 2, 2)) * np.array(shape[::-1])
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    meta = letterbox_meta(shape, size)
    np.testing.assert_allclose(
        unletterbox_boxes(letterbox_boxes(boxes, meta), meta), boxes, rtol=0, atol=1e-9
    )


def test_letterbox_boxes_follow_the_image():
    """A filled rectangle letterboxed as a mask lands where letterbox_boxes puts its box (±1 px)."""
    mask = np.zeros((90, 150), np.uint8)
    mask[20:50, 30:110] = 1  # box xyxy (30, 20, 110, 50) in pixel-edge coordinates
    boxed, meta = letterbox(mask, 64, interpolation=cv2.INTER_NEAREST_EXACT)
    ys, xs = np.nonzero(boxed)
    observed = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_allclose(letterbox_boxes([30, 20, 110, 50], meta), observed, atol=1.0)


def test_main_box_rule():
    boxes = np.array(
        [
            [10, 10, 30, 30],  # fully inside, centre (20, 20)
            [45, 45, 55, 55],  # fully inside, centre (50, 50): nearest the window centre (50, 50)
            [90, 40, 130, 60],  # x 90..100 of 90..130 inside: a quarter, below min_inside 0.75
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(main_box(boxes, (0, 0, 100, 100), 0.75), [45, 45, 55, 55])
    # in (80, 30, 110, 70) it is half inside (x 90..110): counts at min_inside 0.5, clipped, in crop
    # pixels
    np.testing.assert_array_equal(main_box(boxes[2:], (80, 30, 110, 70), 0.5), [10, 10, 30, 30])
    assert main_box(boxes[2:], (80, 30, 110, 70), 0.75) is None
    assert main_box(np.zeros((0, 4)), (0, 0, 10, 10), 0.75) is None
    np.testing.assert_allclose(inside_fractions(boxes, (0, 0, 100, 100)), [1.0, 1.0, 0.25])


# ---------------------------------------------------------------- crops from the real files


def test_crops_split_is_spatial_balanced_and_unambiguous(small_datasets):
    items = read_deepforest_annotations()
    for split, dataset in small_datasets.items():
        assert sum(dataset.target(i) is not None for i in range(len(dataset))) == len(dataset) // 2
        for index, window in enumerate(dataset.windows):
            start, end = split_region(items[window.source].size[1], split, 0.25)
            assert start <= window.x0 < window.x1 <= end and 64 <= window.x1 - window.x0 <= 160
            shares = np.sort(inside_fractions(items[window.source].boxes, window[1:]))[::-1]
            if dataset.target(index) is None:  # max_other 0.25: no crown more than a quarter inside
                assert shares[0] <= 0.25
            else:  # one crown entirely inside, every other at most a quarter
                assert shares[0] == pytest.approx(1.0) and shares[1] <= 0.25


def test_crop_targets_map_back_to_the_annotated_boxes(small_datasets):
    """bbox (normalised, letterboxed frame) → crop pixels → scene pixels = an XML box, clipped."""
    items = read_deepforest_annotations()
    dataset = small_datasets["valid"]
    positives = 0
    for index in range(len(dataset)):
        sample, window = dataset[index], dataset.windows[index]
        assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
        if sample["label"].item() == 0:
            assert sample["bbox"].tolist() == [IGNORE] * 4
            continue
        positives += 1
        assert ((sample["bbox"] >= 0) & (sample["bbox"] <= 1)).all()
        meta = letterbox_meta((window.y1 - window.y0, window.x1 - window.x0), 64)
        crop_box = unletterbox_boxes(cxcywh_to_xyxy(sample["bbox"].double().numpy()) * 64, meta)
        scene = window_to_scene(crop_box, window[1:])
        truth = np.clip(
            items[window.source].boxes, [window.x0, window.y0] * 2, [window.x1, window.y1] * 2
        )
        assert np.abs(truth - scene).max(axis=1).min() < 1e-3  # float32 storage of bbox
    assert positives == 16


def test_crops_are_deterministic_and_seeded():
    a = build_deepforest_datasets(size=64, num_train=8, num_valid=8, seed=1)
    b = build_deepforest_datasets(size=64, num_train=8, num_valid=8, seed=1)
    c = build_deepforest_datasets(size=64, num_train=8, num_valid=8, seed=2)
    assert a["train"].windows == b["train"].windows != c["train"].windows
    torch.testing.assert_close(a["valid"][3]["image"], b["valid"][3]["image"], rtol=0, atol=0)


def test_train_transforms_move_the_box():
    plain = build_deepforest_datasets(size=64, num_train=8, num_valid=1, splits=["train"])["train"]
    flipped = build_deepforest_datasets(
        size=64,
        num_train=8,
        num_valid=1,
        splits=["train"],
        train_transforms=[{"HorizontalFlip": {"p": 1.0}}],
    )["train"]
    for index in range(8):
        a, b = plain[index], flipped[index]
        torch.testing.assert_close(b["image"], a["image"].flip(-1))
        if a["label"].item() == 1:
            expected = a["bbox"].clone()
            expected[0] = 1 - expected[0]
            torch.testing.assert_close(b["bbox"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"crop_size": [160, 64]}, "min must not exceed max"),
        ({"crop_size": 64}, r"crop_size must be \[min, max\]"),
        ({"size": 4}, "size must be an integer >= 8"),
        ({"valid_fraction": 1.0}, r"valid_fraction must be a number in \(0, 1\)"),
        ({"splits": ["test"]}, "data splits"),
        ({"max_other": 0.8}, r"max_other must be null or a number in \[0, min_inside\)"),
    ],
)
def test_bad_data_params(params, message):
    with pytest.raises(PodiumError, match=message):
        build_deepforest_datasets(**params)


# ---------------------------------------------------------------- model and TTA


def test_box_classifier_outputs_and_blocks():
    from podium.callbacks.freeze import encoder_blocks
    from podium.tasks.boxes.model import build_boxes_model

    for grid in (1, 4):  # global pooling (the seed's head) and the 4×4 box grid
        model = build_boxes_model("resnet18", num_classes=1, box_grid=grid).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 64, 80))
        assert out["logits"].shape == (2, 1) and out["boxes"].shape == (2, 4)
        assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    # the class head sees timm's own pooled features: the same as the timm classifier's pre-logits
    features = model.encoder.forward_head(
        model.encoder.forward_features(torch.ones(1, 3, 64, 64)), pre_logits=True
    )
    torch.testing.assert_close(features, model.encoder(torch.ones(1, 3, 64, 64)))
    assert len(encoder_blocks(model.encoder)) == 5  # stem, layer1..layer4: what freezing counts
    with pytest.raises(PodiumError, match="unknown encoder"):
        build_boxes_model("efficientnet_b00")


class BrightSquare(torch.nn.Module):
    """A 'model' that returns the exact box of the pixels > 0.5 (cxcywh, normalised):
    equivariant."""

    def forward(self, image):
        boxes = []
        for mask in image[:, 0] > 0.5:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            size = torch.tensor(mask.shape[::-1], dtype=torch.float32)
            low = torch.stack([xs.min(), ys.min()]).float() / size
            high = torch.stack([xs.max(), ys.max()]).float().add(1) / size
            boxes.append(torch.cat([(low + high) / 2, high - low]))
        boxes = torch.stack(boxes)
        return {"logits": boxes[:, :1] * 0, "boxes": boxes}


class Constant(torch.nn.Module):
    def forward(self, image):
        n = image.shape[0]
        return {
            "logits": torch.zeros(n, 1),
            "boxes": torch.tensor([[0.2, 0.3, 0.1, 0.2]]).repeat(n, 1),
        }


def test_tta_undoes_each_view_on_the_box():
    from podium.tasks.boxes.predict import BoxesPredictor

    crop = np.zeros(
        (36, 64, 3), np.uint8
    )  # letterboxed to 64: no resize (no blur), 14 px pad on top
    crop[5:15, 40:62] = 255  # off-centre and not square: a wrong inverse moves or reshapes it
    normalize = {"mode": "fixed", "max_value": 255}
    for tta in (
        "none",
        "flip",
        "d4",
        {"views": "d4", "scales": [1.0, 2.0]},
    ):  # x2: edges stay exact
        predictor = BoxesPredictor(
            BrightSquare(), size=64, normalize=normalize, tta=tta, device="cpu"
        )
        _, boxes = predictor.predict([crop])
        np.testing.assert_allclose(boxes[0], [40, 5, 62, 15], atol=1e-4)  # back in crop pixels
    # the 8 inverses of a constant box, averaged by hand: (0.5, 0.5, (0.1 + 0.2) / 2, (0.2 + 0.1) /
    # 2)
    predictor = BoxesPredictor(Constant(), size=64, normalize=normalize, tta="d4", device="cpu")
    _, boxes = predictor.forward(torch.zeros(1, 3, 64, 64))
    torch.testing.assert_close(boxes, torch.tensor([[0.5, 0.5, 0.15, 0.15]]))


# ---------------------------------------------------------------- end to end


def _block_names(model):
    from podium.callbacks.freeze import encoder_blocks

    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in block.parameters()] for block in encoder_blocks(model.encoder)]


def test_train_then_predict_end_to_end(tmp_path):
    from podium.tasks.boxes.model import build_boxes_model

    logdir = tmp_path / "run"
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        CONFIG,
        f"--args/logdir={logdir}:str",
        "--data/size=64:int",
        "--data/num_train=16:int",
        "--data/num_valid=16:int",
        "--stages/head/num_epochs=1:int",
        "--stages/last2/num_epochs=1:int",
        "--stages/all/num_epochs=1:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert len(valid) == 3  # one epoch per stage
    assert {"accuracy", "f1", "box_iou", "loss_bce", "loss_box"} <= set(valid.columns)
    assert valid["loss"].to_numpy() == pytest.approx(
        (valid["loss_bce"] + 5 * valid["loss_box"]).to_numpy(), rel=1e-5
    )

    # staged unfreezing: stage last2 trains only the last 2 of 6 backbone blocks, stage all every
    # block
    states = {
        stage: torch.load(logdir / "checkpoints" / f"{stage}.1.pth", weights_only=True)[
            "model_state_dict"
        ]
        for stage in ("head", "last2", "all")
    }
    blocks = _block_names(build_boxes_model("efficientnet_b0"))
    assert len(blocks) == 6

    def same(a, b, names):
        return all(torch.equal(states[a][n], states[b][n]) for n in names)

    assert [same("head", "last2", names) for names in blocks] == [True] * 4 + [False] * 2
    assert [same("last2", "all", names) for names in blocks] == [False] * 6

    # predicting the run's own valid windows reproduces its logged metrics: the letterbox inverse
    # and the crop offset are exact, and IoU does not change under those axis-aligned maps
    out = tmp_path / "valid.csv"
    result = run_command(
        "podium",
        "predict-detector",
        "--run",
        logdir,
        "--deepforest",
        "valid",
        "--out",
        out,
        "--no-clip",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 16
    ious = [float(r["iou"]) for r in rows if r["iou"]]
    assert len(ious) == 8 and np.mean(ious) == pytest.approx(valid["box_iou"].iloc[-1], abs=1e-5)
    accuracy = np.mean([r["label"] == r["true_label"] for r in rows])
    assert accuracy == pytest.approx(valid["accuracy"].iloc[-1])
    # `podium predict` (in this process) picks the task from the run's model: the same rows
    routed = tmp_path / "routed.csv"
    args = ["--run", str(logdir), "--deepforest", "valid", "--out", str(routed), "--no-clip"]
    assert main(["predict", *args]) == 0 and routed.read_bytes() == out.read_bytes()

    # the same windows as image files: the boxes come back in each file's pixels
    dataset = build_deepforest_datasets(size=64, num_train=16, num_valid=16, splits=["valid"])[
        "valid"
    ]
    folder = tmp_path / "crops"
    folder.mkdir()
    for index in (0, 9):
        w = dataset.windows[index]
        crop = dataset.images[w.source][w.y0 : w.y1, w.x0 : w.x1]
        cv2.imwrite(
            str(folder / f"{dataset.name(index)}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        )
    out_images = tmp_path / "images.csv"  # in this process: the command ran as one above
    images = ["--run", str(logdir), "--images", str(folder), "--out", str(out_images), "--no-clip"]
    assert main(["predict-detector", *images]) == 0
    by_name = {r["name"]: r for r in rows}
    for row in csv.DictReader(open(out_images)):
        scene = by_name[row["name"]]
        x0, y0 = float(scene["window_x0"]), float(scene["window_y0"])
        assert float(row["x1"]) + x0 == pytest.approx(float(scene["x1"]), abs=2e-3)
        assert float(row["y2"]) + y0 == pytest.approx(float(scene["y2"]), abs=2e-3)
        assert float(row["score"]) == pytest.approx(float(scene["score"]), abs=1e-5)


def test_predict_detector_errors(tmp_path):
    from podium.tasks.boxes.predict import BoxesPredictor, load_boxes_predictor, predict_images
    from podium.tasks.command import image_paths

    with pytest.raises(PodiumError, match="is not a podium run directory"):
        load_boxes_predictor(tmp_path)
    with pytest.raises(PodiumError, match="does not exist"):
        image_paths([tmp_path / "nope.png"])
    cv2.imwrite(str(tmp_path / "grey.png"), np.zeros((20, 30), np.uint8))
    predictor = BoxesPredictor(Constant(), size=32, device="cpu")
    with pytest.raises(PodiumError, match="grey.png has 1 channel"):
        predict_images(predictor, image_paths([tmp_path]))
    with pytest.raises(PodiumError, match="threshold must be"):
        predict_images(predictor, [tmp_path / "grey.png"], threshold=2)
    with pytest.raises(PodiumError, match='unknown tta views "d8"'):
        BoxesPredictor(Constant(), tta="d8")
