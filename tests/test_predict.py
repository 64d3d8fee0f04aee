"""`podium predict`: inference YAML vs flags, ensembles, tiles, letterbox, timings, sharding,
bad config.

The trained nuclei run (session fixture) serves the tests about real predictions; geometry,
multi-class and config tests use tiny hand-made runs (a resolved config + random weights),
which load in a fraction of a second.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from podium.cli.main import main as podium_main
from podium.datasets.letterbox import letterbox, unletterbox
from podium.errors import PodiumError
from podium.inference import Predictor, TiledPrediction, load_model, resolve_inference_config
from podium.inference.config import apply_flags, load_inference_config
from podium.inference.probability_maps import read_probability_map

SMALL_NORMALIZE = {"mode": "fixed", "max_value": 255, "mean": [0.5], "std": [0.25]}
TIMING_KEYS = {
    "images",
    "seconds",
    "images_per_second",
    "seconds_per_image",
    "peak_rss_mb",
    "peak_cuda_mb",
    "tiles",
    "world_size",
    "ranks",
}


def predict(*args) -> int:
    return podium_main(["predict", "--no-progress", *map(str, args)])


def pngs(folder: Path):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def fake_run(
    path: Path,
    num_classes=1,
    target=None,
    valid_transforms=None,
    seed=0,
    class_names=None,
    callbacks=None,
):
    """A run directory as catalyst-dl writes it (resolved config + best/last), with random
    weights."""
    from podium.models import build_segmentation_model

    model_config = {
        "_target_": "podium.models.build_segmentation_model",
        "architecture": "unet",
        "encoder": "resnet18",
        "in_channels": 1,
        "num_classes": num_classes,
        "pretrained": False,
    }
    data = {
        "root": str(path / "unused"),
        "num_classes": num_classes,
        "normalize": SMALL_NORMALIZE,
        "valid_transforms": valid_transforms,
    }
    if target is not None:
        data["target"] = target
    if class_names is not None:
        data["class_names"] = class_names
    stages = {"train": {"num_epochs": 1, "callbacks": callbacks or {}}}
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "_config.json").write_text(
        json.dumps({"model": model_config, "data": data, "stages": stages})
    )
    (path / "checkpoints").mkdir()
    for offset, name in enumerate(("best", "last")):
        torch.manual_seed(seed + offset)
        model = build_segmentation_model("unet", "resnet18", in_channels=1, num_classes=num_classes)
        torch.save({"model_state_dict": model.state_dict()}, path / "checkpoints" / f"{name}.pth")
    return path


def small_folder(root: Path, shapes, num_classes=1, multilabel=False, seed=0):
    """images/NAME.png (8-bit grey) of the given H×W and masks/NAME.png (or .tif, multilabel)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate(shapes):
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w)).astype(np.uint8), (0, 0), 3)
        cv2.imwrite(
            str(root / "images" / f"img{i}.png"),
            cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX),
        )
        if multilabel:
            import tifffile

            tifffile.imwrite(
                root / "masks" / f"img{i}.tif",
                (rng.random((h, w, num_classes)) > 0.5).astype(np.uint8),
            )
        else:
            labels = (
                (image.astype(int) * num_classes // 256).astype(np.uint8)
                if num_classes > 1
                else (image > 128).astype(np.uint8) * 255
            )
            cv2.imwrite(str(root / "masks" / f"img{i}.png"), labels)
    return root


def read_png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------- the trained run
def test_yaml_and_flags_give_identical_outputs(trained_run, nuclei_data, tmp_path, capsys):
    run_dir, _ = trained_run
    config = tmp_path / "infer.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"run": str(run_dir), "checkpoint": "best"}],
                "data": {"root": str(nuclei_data), "split": "valid"},
                "postprocess": {"threshold": 0.4, "min_size": 5},
                "outputs": {
                    "probabilities": True,
                    "submission": {"path": str(tmp_path / "a" / "sub.csv")},
                },
                "out": str(tmp_path / "a"),
                "progress": False,
            }
        )
    )
    assert predict("--config", config) == 0
    yaml_out = capsys.readouterr().out
    assert (
        predict(
            "--run",
            run_dir,
            "--data",
            nuclei_data,
            "--split",
            "valid",
            "--threshold",
            0.4,
            "--min-size",
            5,
            "--probabilities",
            "--submission",
            tmp_path / "b" / "sub.csv",
            "--out",
            tmp_path / "b",
        )
        == 0
    )
    flags_out = capsys.readouterr().out
    a, b = tmp_path / "a", tmp_path / "b"
    assert pngs(a) == pngs(b) and len(pngs(a / "masks")) == 4
    assert (a / "sub.csv").read_text() == (b / "sub.csv").read_text()
    assert (
        json.loads((a / "metrics.json").read_text())["dice"]
        == json.loads((b / "metrics.json").read_text())["dice"]
    )
    assert "Dice" in yaml_out and yaml_out.splitlines()[1] == flags_out.splitlines()[1]
    # the resolved config written next to the predictions runs again to the same masks
    assert predict("--config", b / "predict_config.yml", "--out", tmp_path / "c") == 0
    assert pngs(tmp_path / "c" / "masks") == pngs(b / "masks")


_SIGTERM_AT_THIRD_IMAGE = """
import os, signal
import cv2
_encode, _calls = cv2.imencode, []
def imencode(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return _encode(*args, **kwargs)
cv2.imencode = imencode
"""


def test_sigterm_during_predict_is_one_line_and_the_files_stay_whole(
    trained_run, nuclei_data, tmp_path
):
    """A real SIGTERM while `podium predict` encodes its third image (a sitecustomize in the
    child sends it): exit 143, one line that says the files written are whole and gives the
    command again; no temp file is left, and that command then writes every mask."""
    run_dir, _ = trained_run
    hook, out = tmp_path / "hook", tmp_path / "out"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SIGTERM_AT_THIRD_IMAGE)
    args = [
        "predict",
        "--run",
        str(run_dir),
        "--data",
        str(nuclei_data),
        "--split",
        "valid",
        "--out",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(hook))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "podium"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 143, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "interrupted" in line or "rror" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith(
        "podium predict: interrupted by SIGTERM; the files written before it are complete"
    )
    assert lines[0].endswith("run the same command again: " + shlex.join(["podium", *args]))
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if p.name.endswith(".tmp")]
    assert all(
        cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in written if p.suffix == ".png"
    )
    assert len([p for p in written if p.suffix == ".png"]) == 2  # the third was never written

    assert predict(*args[1:]) == 0
    assert len(pngs(out / "masks")) == 4


def test_ensemble_is_the_weighted_mean_of_its_models(trained_run, nuclei_data, tmp_path):
    """best + another checkpoint (best and last are often the same epoch in this short run: the
    warm-up stage's checkpoint is a different model for sure), weights 3 : 1."""
    run_dir, _ = trained_run
    other = run_dir / "checkpoints" / "warmup.1.pth"
    common = ("--data", nuclei_data, "--split", "valid", "--probabilities", "--no-overlays")
    assert (
        predict("--run", run_dir, "--checkpoint", "best", "--out", tmp_path / "best", *common) == 0
    )
    assert (
        predict("--run", run_dir, "--checkpoint", other, "--out", tmp_path / "other", *common) == 0
    )
    assert (
        predict(
            "--run",
            run_dir,
            "--checkpoint",
            "best",
            "--checkpoint",
            other,
            "--weight",
            3,
            "--weight",
            1,
            "--out",
            tmp_path / "both",
            *common,
        )
        == 0
    )
    names = sorted(p.stem for p in (tmp_path / "both" / "probabilities").glob("*.png"))
    assert len(names) == 4
    for name in names:
        best, second, both = (
            read_probability_map(tmp_path / d / "probabilities", name)
            for d in ("best", "other", "both")
        )
        assert np.abs(best - second).max() > 0.1  # two different models
        # each map is rounded to 1/255 on disk, so the hand-made mean is within 1/255 of the written
        # one
        np.testing.assert_allclose(both, 0.75 * best + 0.25 * second, atol=1 / 255 + 1e-6)
    models = json.loads((tmp_path / "both" / "metrics.json").read_text())["models"]
    assert [(m["checkpoint"], m["weight"]) for m in models] == [("best", 3.0), (str(other), 1.0)]


def test_best_and_last_from_one_yaml_entry(trained_run, nuclei_data, tmp_path):
    run_dir, _ = trained_run
    config = {
        "models": [{"run": str(run_dir), "checkpoint": ["best", "last"]}],
        "out": str(tmp_path / "out"),
        "data": {"root": str(nuclei_data), "split": "valid"},
        "outputs": {"probabilities": True},
    }
    (tmp_path / "infer.yml").write_text(yaml.safe_dump(config))
    assert predict("--config", tmp_path / "infer.yml") == 0
    models = json.loads((tmp_path / "out" / "metrics.json").read_text())["models"]
    assert [m["checkpoint"] for m in models] == ["best", "last"]


def _scene_512x640(folder: Path) -> Path:
    """The real 512×512 nuclei image widened to 512×640 (its first 128 columns repeated), 16-bit
    PNG."""
    import tifffile

    source = (
        Path(importlib.util.find_spec("stardist").submodule_search_locations[0]) / "data" / "images"
    )
    image = tifffile.imread(source / "img2d.tif")
    folder.mkdir()
    cv2.imwrite(
        str(folder / "scene.png"), np.concatenate([image, image[:, :128]], axis=1).astype(np.uint16)
    )
    return folder


def test_tiles_match_the_whole_image_in_bounded_memory(trained_run, tmp_path):
    """512×640 in 256² tiles overlapping by 64 vs one pass over the whole image.

    Tolerance: a tile gives the network 256² of context instead of the whole scene, so the
    deepest (stride-32) features differ near tile seams and image borders; the pyramid weights
    fade those seams. Measured on this run: mean |Δp| ≈ 0.007 and masks agree at Dice ≈ 0.98, so
    mean |Δp| < 0.02 and mask Dice > 0.96 leave room for another seed, not for a wrong merge
    (a shifted or unweighted tile gives mean |Δp| > 0.1).
    """
    from podium.datasets import build_segmentation_dataset

    run_dir, _ = trained_run
    model, config = load_model(run_dir, "best")
    image = build_segmentation_dataset(
        _scene_512x640(tmp_path / "scene"), normalize=config["data"]["normalize"]
    )[0]["image"]
    assert image.shape == (1, 512, 640)
    inputs = []
    hook = model.register_forward_pre_hook(lambda module, args: inputs.append(tuple(args[0].shape)))
    whole = Predictor(model, mode="binary")(image[None])[0]
    inputs.clear()
    tiles = TiledPrediction(256, 64, batch_size=4)
    tiled = Predictor(model, mode="binary", tiles=tiles)(image[None])[0]
    hook.remove()
    # toolbelt's grid: ceil((640-64)/192) = 3 columns × ceil((512-64)/192) = 3 rows; never > 4 tiles
    # at once
    assert tiles.tiles_seen == 9 and [s[0] for s in inputs] == [4, 4, 1]
    assert all(s[1:] == (1, 256, 256) for s in inputs)
    assert tiled.shape == whole.shape == (1, 512, 640)
    difference = (tiled - whole).abs()
    a, b = whole > 0.5, tiled > 0.5
    dice = 2 * (a & b).sum().item() / (a.sum() + b.sum()).item()
    assert difference.mean().item() < 0.02 and dice > 0.96, (difference.mean().item(), dice)


def test_tiles_from_the_command_line_and_timings_json(trained_run, tmp_path):
    run_dir, _ = trained_run
    scene = _scene_512x640(tmp_path / "scene")
    out = tmp_path / "out"
    assert (
        predict(
            "--run", run_dir, "--data", scene, "--tiles", 256, "--tile-overlap", 64, "--out", out
        )
        == 0
    )
    assert read_png(out / "masks" / "scene.png").shape == (512, 640)
    timings = json.loads((out / "timings.json").read_text())
    assert TIMING_KEYS <= set(timings) and timings["tiles"] == 9 and timings["images"] == 1
    assert (
        timings["world_size"] == 1
        and timings["peak_rss_mb"] > 0
        and timings["seconds_per_image"] > 0
    )
    assert timings["images_per_second"] == pytest.approx(1 / timings["seconds"], rel=1e-2)
    assert set(timings["ranks"][0]) >= {
        "images",
        "seconds",
        "load_seconds",
        "device",
        "peak_rss_mb",
    }
    assert "dice" not in json.loads((out / "metrics.json").read_text())  # no masks/ in the folder


def test_tta_wraps_the_activation_inside_each_tile():
    """The `tta(fn, images)` contract of podium.inference.tta: fn gives probabilities, and with
    tiles the TTA runs per batch of tiles (a horizontal-flip TTA written out by hand here)."""
    from podium.models import build_segmentation_model

    torch.manual_seed(0)
    model = build_segmentation_model("unet", "resnet18", in_channels=1, num_classes=3).eval()
    images = torch.randn(2, 1, 64, 96)
    calls = []

    def hflip_tta(fn, x):
        calls.append(tuple(x.shape))
        return (fn(x) + fn(x.flip(-1)).flip(-1)) / 2

    with torch.no_grad():
        expected = (
            torch.softmax(model(images), 1) + torch.softmax(model(images.flip(-1)), 1).flip(-1)
        ) / 2
    got = Predictor(model, device="cpu", mode="multiclass", tta=hflip_tta)(images)
    torch.testing.assert_close(got, expected)
    calls.clear()
    tiled = Predictor(
        model,
        device="cpu",
        mode="multiclass",
        tta=hflip_tta,
        tiles=TiledPrediction(64, 32, batch_size=2),
    )(images)
    assert tiled.shape == (2, 3, 64, 96) and set(calls) == {(2, 1, 64, 64)}
    torch.testing.assert_close(
        tiled.sum(1), torch.ones(2, 64, 96)
    )  # merged softmax still sums to 1


def test_tta_flag_through_podium_inference_tta(tmp_path):
    """--tta flip: the written map is the mean of the image and its mirror, each through the
    model."""
    run = fake_run(tmp_path / "run")
    data = small_folder(tmp_path / "data", [(40, 56)])
    out = tmp_path / "out"
    assert (
        predict("--run", run, "--data", data, "--tta", "flip", "--probabilities", "--out", out) == 0
    )
    model, _ = load_model(run, "best")
    image = torch.from_numpy(
        (read_png(data / "images" / "img0.png").astype(np.float32) / 255 - 0.5) / 0.25
    )[None, None]
    with torch.no_grad():
        expected = (torch.sigmoid(model(image)) + torch.sigmoid(model(image.flip(-1))).flip(-1)) / 2
    np.testing.assert_allclose(
        read_probability_map(out / "probabilities", "img0"),
        expected[0].numpy(),
        atol=0.5 / 255 + 1e-4,
    )
    assert yaml.safe_load((out / "predict_config.yml").read_text())["tta"] == "flip"


# ---------------------------------------------------------------------------- geometry
def test_letterboxed_run_predicts_in_the_original_geometry(tmp_path):
    run = fake_run(tmp_path / "run", valid_transforms=[{"Letterbox": {"height": 64, "width": 64}}])
    data = small_folder(tmp_path / "data", [(48, 80), (70, 40)])
    out = tmp_path / "out"
    assert (
        predict("--run", run, "--data", data, "--probabilities", "--out", out, "--batch-size", 2)
        == 0
    )
    model, _ = load_model(run, "best")
    for i, shape in enumerate([(48, 80), (70, 40)]):
        assert read_png(out / "masks" / f"img{i}.png").shape == shape
        assert read_png(out / "overlays" / f"img{i}.png").shape[:2] == shape
        # by hand, in the dataset's order: scale to [0, 1], letterbox to 64², standardise, model,
        # sigmoid, unletterbox
        raw = read_png(data / "images" / f"img{i}.png").astype(np.float32) / 255
        boxed, meta = letterbox(raw, 64)
        with torch.no_grad():
            logits = model(torch.from_numpy((boxed - 0.5) / 0.25)[None, None])
        expected = unletterbox(torch.sigmoid(logits)[0].numpy(), meta, channels_first=True)
        assert expected.shape == (1, *shape)
        np.testing.assert_allclose(
            read_probability_map(out / "probabilities", f"img{i}"), expected, atol=0.5 / 255 + 1e-4
        )
    # scored at the original size against the original masks
    masks = [
        (read_png(out / "masks" / f"img{i}.png") > 0, read_png(data / "masks" / f"img{i}.png") > 0)
        for i in range(2)
    ]
    tp = sum((p & t).sum() for p, t in masks)
    total = sum(p.sum() + t.sum() for p, t in masks)
    assert json.loads((out / "metrics.json").read_text())["dice"][0] == pytest.approx(
        2 * tp / total
    )


def test_resized_run_predicts_in_the_original_geometry(tmp_path):
    """A Resize is undone by resizing the whole output back (stretching), not as a letterbox:
    on non-square images the two differ everywhere."""
    run = fake_run(tmp_path / "run", valid_transforms=[{"Resize": {"height": 64, "width": 64}}])
    best = run / "checkpoints" / "best.pth"
    checkpoint = torch.load(best)
    checkpoint["model_state_dict"]["head.final.weight"] *= (
        300  # probabilities far from 0.5: geometry shows
    )
    torch.save(checkpoint, best)
    shapes = [(48, 80), (70, 40)]
    data = small_folder(tmp_path / "data", shapes)
    out = tmp_path / "out"
    assert (
        predict("--run", run, "--data", data, "--probabilities", "--out", out, "--batch-size", 2)
        == 0
    )
    model, _ = load_model(run, "best")
    for i, (height, width) in enumerate(shapes):
        assert read_png(out / "masks" / f"img{i}.png").shape == (height, width)
        # by hand: scale to [0, 1], stretch to 64², standardise, model, sigmoid, stretch back (cv2
        # linear)
        raw = read_png(data / "images" / f"img{i}.png").astype(np.float32) / 255
        stretched = cv2.resize(raw, (64, 64), interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            logits = model(torch.from_numpy((stretched - 0.5) / 0.25)[None, None])
        probs = torch.sigmoid(logits)[0, 0].numpy()
        expected = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
        got = read_probability_map(out / "probabilities", f"img{i}")
        assert got.shape == (1, height, width) and expected.max() - expected.min() > 0.5
        np.testing.assert_allclose(got[0], expected, atol=0.5 / 255 + 1e-4)


def test_a_valid_pipeline_that_cannot_be_undone_is_refused(tmp_path, capsys):
    run = fake_run(tmp_path / "run", valid_transforms=[{"CenterCrop": {"height": 32, "width": 32}}])
    data = small_folder(tmp_path / "data", [(48, 48)])
    assert predict("--run", run, "--data", data, "--out", tmp_path / "out") != 0
    error = capsys.readouterr().err
    assert "CenterCrop" in error and "Letterbox or Resize" in error
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- modes and metrics
def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else 2 * (pred & true).sum() / total


def test_multiclass_masks_metrics_and_submission(tmp_path, capsys):
    names = ["background", "dim", "bright"]
    callbacks = {
        "metrics": {"_target_": "podium.callbacks.SegmentationMetricsCallback", "classes": [1, 2]}
    }
    run = fake_run(
        tmp_path / "run", num_classes=3, target="multiclass", class_names=names, callbacks=callbacks
    )
    data = small_folder(tmp_path / "data", [(64, 64), (64, 96)], num_classes=3)
    out = tmp_path / "out"
    assert predict("--run", run, "--data", data, "--out", out, "--submission", out / "sub.csv") == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    pred = [read_png(out / "masks" / f"img{i}.png") for i in range(2)]
    true = [read_png(data / "masks" / f"img{i}.png") for i in range(2)]
    assert pred[1].shape == (64, 96) and pred[0].max() < 3
    by_hand = [
        _dice(
            np.concatenate([(p == c).ravel() for p in pred]),
            np.concatenate([(t == c).ravel() for t in true]),
        )
        for c in range(3)
    ]
    assert metrics["dice"] == pytest.approx(by_hand)
    assert metrics["dice_macro"] == pytest.approx(
        np.mean(by_hand[1:])
    )  # the run's metric averaged classes 1, 2
    assert f"Dice {metrics['dice_macro']:.4f}" in printed
    # per image: the macro over the same classes, each image on its own (the report ranks by it)
    for i in range(2):
        dice_by_hand = np.mean([_dice(pred[i] == c, true[i] == c) for c in (1, 2)])
        assert metrics["per_image"][f"img{i}"]["dice"] == pytest.approx(dice_by_hand)
    rows = (out / "sub.csv").read_text().splitlines()
    # default columns for several classes: one row per image and class but the background
    assert rows[0] == "ImageId,ClassId,EncodedPixels" and len(rows) == 1 + 2 * 2
    assert [r.split(",")[:2] for r in rows[1:3]] == [["img0", "bright"], ["img0", "dim"]]


def test_multilabel_writes_a_mask_folder_per_class(tmp_path):
    run = fake_run(tmp_path / "run", num_classes=2, target="multilabel", class_names=["a", "b"])
    data = small_folder(tmp_path / "data", [(64, 64)], num_classes=2, multilabel=True)
    out = tmp_path / "out"
    assert predict("--run", run, "--data", data, "--out", out, "--probabilities") == 0
    import tifffile

    truth = tifffile.imread(data / "masks" / "img0.tif") > 0
    metrics = json.loads((out / "metrics.json").read_text())
    for c, name in enumerate(["a", "b"]):
        pred = read_png(out / "masks" / name / "img0.png") > 0
        assert metrics["dice"][c] == pytest.approx(_dice(pred, truth[..., c]))
        assert (out / "probabilities" / name / "img0.png").is_file()


def test_names_csv_selects_images(tmp_path):
    run = fake_run(tmp_path / "run")
    data = small_folder(tmp_path / "data", [(32, 32)] * 3)
    (tmp_path / "names.csv").write_text("ImageId,EncodedPixels\nimg2.png,\nimg0.png,1 3\n")
    out = tmp_path / "out"
    assert (
        predict("--run", run, "--data", data, "--names", tmp_path / "names.csv", "--out", out) == 0
    )
    assert sorted(pngs(out / "masks")) == ["img0.png", "img2.png"]


# ---------------------------------------------------------------------------- sharding
def test_two_torchrun_processes_write_what_one_process_writes(tmp_path):
    run = fake_run(tmp_path / "run")
    data = small_folder(tmp_path / "data", [(32, 32)] * 5 + [(48, 32)] * 2)
    common = [
        "--run-dir",
        run,
        "--data",
        data,
        "--probabilities",
        "--no-progress",
    ]  # torchrun would take --run
    assert (
        podium_main(
            [
                "predict",
                *map(str, common),
                "--out",
                str(tmp_path / "one"),
                "--submission",
                str(tmp_path / "one" / "sub.csv"),
            ]
        )
        == 0
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "podium",
            "predict",
            *map(str, common),
            "--out",
            str(tmp_path / "two"),
            "--submission",
            str(tmp_path / "two" / "sub.csv"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert pngs(one) == pngs(two) and len(pngs(one / "masks")) == 7
    assert (one / "sub.csv").read_bytes() == (two / "sub.csv").read_bytes()
    assert not (two / "_parts").exists()
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (one, two)]
    assert metrics[0]["dice"] == metrics[1]["dice"] and metrics[1]["images"] == 7
    timings = json.loads((two / "timings.json").read_text())
    assert timings["world_size"] == 2 and [r["images"] for r in timings["ranks"]] == [4, 3]
    assert result.stdout.count("predicted 7 images") == 1  # rank 0 reports


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "config, culprits",
    [
        ({"modles": []}, ['"modles"', 'did you mean "models"']),
        (
            {"models": [{"run": "r", "chekpoint": "best"}]},
            ['"chekpoint"', "models[0]", 'did you mean "checkpoint"'],
        ),
        ({"models": [{"run": "r", "weight": 0}]}, ["models[0]/weight", "> 0"]),
        ({"models": ["r"], "out": "o", "data": {"roots": "d"}}, ['"roots"', 'did you mean "root"']),
        ({"models": ["r"], "out": "o", "data": {"split": "valid", "fold": 1}}, ["split", "fold"]),
        (
            {"models": ["r"], "out": "o", "tiles": {"size": 256, "overlap": 256}},
            ["tiles/overlap", "256"],
        ),
        (
            {"models": ["r"], "out": "o", "tiles": {"size": 256, "wieght": "mean"}},
            ['"wieght"', 'did you mean "weight"'],
        ),
        ({"models": ["r"], "out": "o", "ensemble": {"method": "median"}}, ["median", "mean"]),
        (
            {"models": ["r"], "out": "o", "outputs": {"overlay": True}},
            ['"overlay"', 'did you mean "overlays"'],
        ),
        (
            {"models": ["r"], "out": "o", "outputs": {"submission": {"columns": ["a", "b"]}}},
            ["submission", "path"],
        ),
        ({"models": ["r"], "out": "o", "batch_size": 0}, ["batch_size", "0"]),
        ({"models": ["r"], "out": "o", "tta": "d8"}, ['"d8"', "tta", "d4"]),
        (
            {"models": ["r"], "out": "o", "tta": {"veiws": "d4"}},
            ['"veiws"', 'did you mean "views"'],
        ),
        ({"models": ["r"]}, ["out"]),
        ({"out": "o"}, ["no model"]),
    ],
)
def test_bad_config_keys_and_values(config, culprits):
    with pytest.raises(PodiumError) as error:
        resolve_inference_config(config)
    for culprit in culprits:
        assert culprit in str(error.value), str(error.value)


def test_bad_yaml_key_is_one_error_line(tmp_path, capsys):
    config = tmp_path / "infer.yml"
    run = fake_run(tmp_path / "run")
    config.write_text(
        f"models: [{{run: {run}}}]\nout: {tmp_path / 'out'}\ndata: "
        f"{{root: {tmp_path}}}\npostprocess: {{treshold: 0.3}}\n"
    )
    assert podium_main(["predict", "--config", str(config)]) != 0
    errors = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("podium: error:")
    ]
    assert (
        len(errors) == 1 and '"treshold"' in errors[0] and 'did you mean "threshold"' in errors[0]
    )
    assert not (tmp_path / "out").exists()


def test_ensemble_members_must_agree_on_classes(tmp_path, capsys):
    binary = fake_run(tmp_path / "binary")
    multiclass = fake_run(tmp_path / "multiclass", num_classes=3, target="multiclass")
    data = small_folder(tmp_path / "data", [(32, 32)])
    assert (
        predict("--run", binary, "--run", multiclass, "--data", data, "--out", tmp_path / "out")
        != 0
    )
    error = capsys.readouterr().err
    assert "must agree" in error and "binary" in error and "multiclass" in error


def test_flags_override_the_yaml_and_the_shipped_config_resolves():
    shipped = load_inference_config(REPO / "configs" / "nuclei" / "infer.yml")
    resolved = resolve_inference_config(shipped)
    assert resolved["models"] == [{"run": "logs/nuclei_demo", "checkpoint": "best", "weight": 1.0}]
    flags = {
        "runs": ["a", "b"],
        "checkpoints": ["last"],
        "data": "other",
        "threshold": 0.3,
        "tile_size": 128,
        "overlays": False,
        "submission": "s.csv",
    }
    resolved = resolve_inference_config(apply_flags(shipped, flags))
    assert [m["run"] for m in resolved["models"]] == ["a", "b"] and {
        m["checkpoint"] for m in resolved["models"]
    } == {"last"}
    assert (
        resolved["data"]["root"] == "other" and resolved["data"]["split"] is None
    )  # --data starts a new selection
    assert resolved["postprocess"] == {"threshold": 0.3, "min_size": 0, "fill_holes": False}
    assert resolved["tiles"] == {
        "size": [128, 128],
        "overlap": 32,
        "weight": "pyramid",
        "batch_size": None,
    }
    assert resolved["outputs"]["overlays"] is False and resolved["outputs"]["submission"] == {
        "path": "s.csv"
    }
