"""Geopose dense regression: synthetic scenes, augmentation of vector targets, the multi-head
model, D4 TTA (equivariance), and `catalyst-dl run` → `podium predict-geopose` end to end."""

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from conftest import REPO, run_command

from podium.cli.main import main
from podium.errors import PodiumError
from podium.inference.tta import build_tta
from podium.tasks.geopose.data import (
    CITIES,
    SceneGeometry,
    SyntheticGeoposeScenes,
    build_geopose_datasets,
    render_scene,
)
from podium.tasks.geopose.model import build_geopose_model
from podium.tasks.geopose.predict import GeoposePredictor, build_geopose_tta, geopose_tta

CONFIG = REPO / "configs" / "geopose" / "unet_resnet18_hubercos.yml"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread for this module's in-process forwards: the suite shares 2 cores with
    other jobs, and OpenMP's spin-waiting then makes 2-thread forwards ~20x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -------------------------------------------------------------- D4 views (the test's own reference)

D4_VIEWS = [
    (t, h, v) for t in (False, True) for h in (False, True) for v in (False, True)
]  # (transpose, hflip, vflip)


def _flip(array, axis):
    return array.flip(axis) if isinstance(array, torch.Tensor) else np.flip(array, axis)


def _swap(array, a, b):
    return array.transpose(a, b) if isinstance(array, torch.Tensor) else np.swapaxes(array, a, b)


def apply_view(array, view, y_axis=-2, x_axis=-1):
    """The array as the view sees it: transposed, then h-flipped, then v-flipped."""
    transpose, hflip, vflip = view
    array = _swap(array, y_axis, x_axis) if transpose else array
    array = _flip(array, x_axis) if hflip else array
    return _flip(array, y_axis) if vflip else array


def undo_view(array, view):
    transpose, hflip, vflip = view
    array = _flip(array, -2) if vflip else array
    array = _flip(array, -1) if hflip else array
    return _swap(array, -2, -1) if transpose else array


def view_vector(vector, view):
    """An (x, y) vector (last dim) as the view sees it."""
    transpose, hflip, vflip = view
    x, y = vector[..., 0], vector[..., 1]
    if transpose:
        x, y = y, x
    x = -x if hflip else x
    y = -y if vflip else y
    return (torch.stack if isinstance(vector, torch.Tensor) else np.stack)([x, y], -1)


def view_point(point: np.ndarray, view, size: int) -> np.ndarray:
    """Where a point (x, y) of an S×S image lands in the view (pixel-edge coordinates)."""
    transpose, hflip, vflip = view
    x, y = point
    if transpose:
        x, y = y, x
    if hflip:
        x = size - x
    if vflip:
        y = size - y
    return np.array([x, y])


@pytest.mark.parametrize("view", D4_VIEWS)
def test_view_vector_moves_like_the_pixels(view):
    size = 16
    p, q = np.array([3, 5]), np.array([11, 6])  # two pixels (column, row)
    image = np.zeros((size, size))
    image[p[1], p[0]], image[q[1], q[0]] = 1, 2
    seen = apply_view(image, view)
    p_seen = np.argwhere(seen == 1)[0][::-1]
    q_seen = np.argwhere(seen == 2)[0][::-1]
    assert np.array_equal(view_vector(q - p, view), q_seen - p_seen)
    assert np.array_equal(view_point(q + 0.5, view, size), q_seen + 0.5)  # view_point agrees
    assert np.array_equal(undo_view(seen, view), image)


# ---------------------------------------------------------------- synthetic scenes


def view_geometry(geometry: SceneGeometry, view) -> SceneGeometry:
    """The scene with every point, vector and array moved by the view."""
    size = geometry.size
    shapes = [
        shape._replace(
            centre=view_point(shape.centre, view, size), axis=view_vector(shape.axis, view)
        )
        for shape in geometry.shapes
    ]
    arrays = {
        key: np.ascontiguousarray(apply_view(getattr(geometry, key), view, y_axis=0, x_axis=1))
        for key in ("ground", "grain", "missing")
    }
    return geometry._replace(
        shapes=shapes,
        direction=view_vector(geometry.direction, view),
        shadow=view_vector(geometry.shadow, view),
        **arrays,
    )


@pytest.fixture(scope="module")
def scenes():
    return build_geopose_datasets(image_size=64, num_train=8, num_valid=4, missing_prob=1.0)


@pytest.mark.parametrize("view", D4_VIEWS)
def test_rendering_is_d4_equivariant(scenes, view):
    """Rendering the moved scene = moving the rendering: the generator has no hidden orientation."""
    for index in range(4):
        geometry = scenes["train"].geometry(index)
        image, height = render_scene(geometry)
        moved_image, moved_height = render_scene(view_geometry(geometry, view))
        assert np.array_equal(moved_image, apply_view(image, view, y_axis=0, x_axis=1))
        np.testing.assert_array_equal(moved_height, apply_view(height, view, y_axis=0, x_axis=1))


def test_scene_targets_are_consistent(scenes):
    train, valid = scenes["train"], scenes["valid"]
    sample = train[1]
    assert list(sample)[0] == "image" and sample["image"].shape == (3, 64, 64)
    height, magnitude = sample["height_target"][0].numpy(), sample["magnitude_target"][0].numpy()
    scale = float(sample["scale_target"][0])
    missing = np.isnan(height)
    assert missing.any() and np.array_equal(
        np.isnan(magnitude), missing
    )  # missing_prob 1: gaps everywhere
    np.testing.assert_allclose(magnitude[~missing], scale * height[~missing], rtol=1e-6)
    assert height[~missing].min() == 0 and height[~missing].max() > 2
    assert torch.linalg.norm(sample["direction_target"]).item() == pytest.approx(1.0, abs=1e-6)
    # scale = tan(off-nadir) / GSD inside the city's ranges
    style = CITIES[sample["city"]]
    off_nadir = math.degrees(math.atan(scale * float(sample["gsd"][0])))
    assert style.off_nadir_deg[0] <= off_nadir <= style.off_nadir_deg[1]
    # deterministic; splits differ; cities in turn
    again = train[1]
    assert all(
        torch.equal(again[k].nan_to_num(-1), sample[k].nan_to_num(-1))
        for k in sample
        if isinstance(sample[k], torch.Tensor)
    )
    assert not torch.equal(valid[1]["image"], sample["image"])
    assert [train.city(i) for i in range(5)] == ["ARG", "ATL", "JAX", "OMA", "ARG"]
    assert train.name(5) == "ATL_train_00005"
    other = build_geopose_datasets(num_train=2, num_valid=1, seed=1)["train"][1]
    assert not torch.equal(other["image"], sample["image"])


def test_d4_augmentation_moves_direction_with_the_image():
    plain = SyntheticGeoposeScenes(24, image_size=64)
    augmented = SyntheticGeoposeScenes(24, image_size=64, transforms=[{"D4": {}}])
    augmented.transforms.set_random_state(np.random.default_rng(0), random.Random(0))
    seen = set()
    for index in range(24):
        a, b = plain[index], augmented[index]
        view = next(v for v in D4_VIEWS if torch.equal(apply_view(a["image"], v), b["image"]))
        seen.add(view)
        for key in ("height_target", "magnitude_target"):
            assert torch.equal(apply_view(a[key], view).nan_to_num(-1), b[key].nan_to_num(-1))
        assert torch.allclose(
            b["direction_target"], view_vector(a["direction_target"], view), atol=1e-6
        )
        assert torch.allclose(b["scale_target"], a["scale_target"]) and torch.allclose(
            b["gsd"], a["gsd"]
        )
    assert len(seen) >= 6  # the test saw (almost) every view


def test_zoom_and_rotation_follow_through_keypoints():
    plain = SyntheticGeoposeScenes(2, image_size=64, missing_prob=0.0)[1]
    zoomed = SyntheticGeoposeScenes(
        2,
        image_size=64,
        missing_prob=0.0,
        transforms=[{"Affine": {"scale": 2.0, "rotate": 30.0, "p": 1.0}}],
    )[1]
    assert float(zoomed["scale_target"][0]) == pytest.approx(
        2 * float(plain["scale_target"][0]), rel=1e-4
    )
    assert float(zoomed["gsd"][0]) == pytest.approx(float(plain["gsd"][0]) / 2, rel=1e-4)
    # magnitude = scale × height still holds pixel by pixel after resampling
    np.testing.assert_allclose(
        zoomed["magnitude_target"].numpy(),
        float(zoomed["scale_target"][0]) * zoomed["height_target"].numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    cosine = float(torch.dot(zoomed["direction_target"], plain["direction_target"]))
    assert math.degrees(math.acos(cosine)) == pytest.approx(30.0, abs=0.1)
    assert torch.linalg.norm(zoomed["direction_target"]).item() == pytest.approx(1.0, abs=1e-6)


def test_bad_data_is_refused():
    with pytest.raises(PodiumError, match="need similarity transforms"):
        SyntheticGeoposeScenes(1, transforms=[{"Resize": {"height": 32, "width": 64}}])[0]
    with pytest.raises(PodiumError, match='unknown city "ATLL" \\(did you mean "ATL"\\?\\)'):
        build_geopose_datasets(cities=["ATLL"])
    with pytest.raises(PodiumError, match="image_size must be an integer >= 32"):
        build_geopose_datasets(image_size=16)
    with pytest.raises(PodiumError, match="num_valid must be an integer >= 1"):
        build_geopose_datasets(num_valid=0)
    with pytest.raises(PodiumError, match="missing_prob must be a number in \\[0, 1\\]"):
        build_geopose_datasets(missing_prob=2)


# ---------------------------------------------------------------- model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_geopose_model(scalar_inputs=["gsd"], head_channels=8, hidden_features=16).eval()


def test_model_heads_and_scalar_inputs(model):
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(images, gsd=torch.tensor([[1.0], [1.0]]))
        other = model(images, gsd=torch.tensor([[2.0], [1.0]]))
        odd = model(torch.randn(1, 3, 50, 70), gsd=torch.tensor([1.0]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "height": (2, 1, 64, 96),
        "magnitude": (2, 1, 64, 96),
        "direction": (2, 2),
        "scale": (2, 1),
    }
    assert odd["height"].shape == (1, 1, 50, 70)
    assert torch.allclose(out["direction"].norm(dim=1), torch.ones(2)) and (out["scale"] > 0).all()
    # the GSD reaches every head of the first image only
    for key in out:
        assert not torch.allclose(out[key][0], other[key][0]) and torch.allclose(
            out[key][1], other[key][1]
        )
    with pytest.raises(
        PodiumError,
        match=r"takes the scalar inputs \[gsd\].*set runner/input_key to \[image, gsd\]",
    ):
        model(images)
    with pytest.raises(PodiumError, match="scalar_inputs must be a list of distinct batch keys"):
        build_geopose_model(scalar_inputs="gsd")


# ---------------------------------------------------------------- TTA

# hflip and transpose generate D4 (and rot90 = their composition): equivariance under them is
# equivariance under all 8 views, with a third of the forward passes.
GENERATORS = [(False, True, False), (True, False, False), (True, True, False)]


def _check_equivariant(predict, images, views=GENERATORS, atol=1e-4):
    base = predict(images)
    for view in views:
        moved = predict(apply_view(images, view))
        for key in ("height", "magnitude"):
            assert torch.allclose(moved[key], apply_view(base[key], view), atol=atol), (key, view)
        assert torch.allclose(
            moved["direction"], view_vector(base["direction"], view), atol=atol
        ), view
        assert torch.allclose(moved["scale"], base["scale"], atol=atol)


@pytest.mark.parametrize("views_per_batch", [None, 8])
def test_d4_tta_is_equivariant_for_any_model(model, views_per_batch):
    """TTA(g·x) = g·TTA(x) for every D4 view g: maps moved, direction rotated, scale unchanged
    (8 views per forward too: the GSD is repeated for every view)."""
    predictor = GeoposePredictor(model, tta="d4", device="cpu")
    predictor.tta = build_geopose_tta({"views": "d4", "max_views_per_batch": views_per_batch})
    images = torch.randn(2, 3, 32, 32)
    gsd = torch.tensor([1.0, 1.3])
    _check_equivariant(lambda x: predictor.predict(x, {"gsd": gsd}), images)
    assert torch.allclose(
        predictor.predict(images, {"gsd": gsd})["direction"].norm(dim=1), torch.ones(2)
    )


def test_wrong_vector_deaugmentation_breaks_equivariance(model):
    """The test above can fail: directions averaged without undoing the views are not
    equivariant."""
    wrong = build_tta("d4", vector_keys={"direction": "scalar", "scale": "scalar"})
    with pytest.raises(AssertionError):
        _check_equivariant(
            lambda x: geopose_tta(wrong, model, x, {"gsd": torch.ones(2, 1)}),
            torch.randn(2, 3, 32, 32),
        )


def test_tta_keeps_an_equivariant_model_unchanged():
    """For a model that is already D4-equivariant every view votes the same: TTA = plain output
    (non-square input: transposed views are W×H)."""
    height, width = 24, 32
    gx = torch.arange(width, dtype=torch.float32) + 0.5 - width / 2
    gy = torch.arange(height, dtype=torch.float32) + 0.5 - height / 2

    def fn(images):
        h, w = images.shape[-2:]
        xs, ys = (gx, gy) if (h, w) == (height, width) else (gy, gx)
        weight = (
            images[:, 0].relu() + 1e-3
        )  # a direction from the image's centre of mass: a true vector
        x = (weight * xs[None, None, :]).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
        y = (weight * ys[None, :, None]).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
        return {
            "height": images.mean(dim=1, keepdim=True),
            "magnitude": images[:, 1:2] ** 2,
            "direction": torch.nn.functional.normalize(torch.stack([x, y], dim=1), dim=1),
            "scale": images.abs().mean(dim=(1, 2, 3))[:, None],
        }

    images = torch.randn(3, 3, height, width)
    plain = fn(images)
    for mode in ("flip", "d2", "d4"):
        averaged = geopose_tta(build_geopose_tta(mode), fn, images)
        for key in plain:
            assert torch.allclose(averaged[key], plain[key], atol=1e-5), (mode, key)
    with pytest.raises(PodiumError, match='unknown tta views "d8"'):
        build_geopose_tta("d8")
    for spec in ("multiscale", {"views": "d4", "scales": [0.5, 1.0]}):
        with pytest.raises(PodiumError, match="flips and transposes only"):
            build_geopose_tta(spec)


# ---------------------------------------------------------------- end to end


def test_train_then_predict_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the subprocesses too (see one_torch_thread)
    logdir = tmp_path / "run"
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        CONFIG,
        f"--args/logdir={logdir}:str",
        "--data/num_train=16:int",
        "--data/num_valid=8:int",
        "--stages/train/num_epochs=1:int",
        "--stages/train/loaders/batch_size=8:int",
        "--model/head_channels=8:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert {
        "height_r2",
        "magnitude_r2",
        "geopose_r2",
        "height_r2/ARG",
        "magnitude_r2/OMA",
        "direction_r2",
        "loss_hubercos",
        "loss_scale",
    } <= set(valid.columns)
    row = valid.iloc[-1]
    assert row["geopose_r2"] == pytest.approx(
        (row["height_r2"] + row["magnitude_r2"]) / 2, rel=1e-5
    )
    cities = [row[f"height_r2/{c}"] for c in CITIES]
    assert row["height_r2"] == pytest.approx(np.mean(cities), rel=1e-6)  # the mean over cities
    assert row["loss"] == pytest.approx(row["loss_hubercos"] + 10 * row["loss_scale"], rel=1e-5)

    # predicting the run's valid scenes without TTA reproduces the logged R2s (`podium
    # predict-geopose` in this process: the console script's code without another start-up)
    out = tmp_path / "preds"
    assert (
        main(["predict-geopose", "--run", str(logdir), "--synthetic", "valid", "--out", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("height_r2", "magnitude_r2", "geopose_r2", "height_r2/JAX"):
        assert metrics[key] == pytest.approx(row[key], rel=1e-4, abs=1e-6), key
    assert f"valid geopose_r2 {row['geopose_r2']:.4f}" in capsys.readouterr().out
    rows = pd.read_csv(out / "predictions.csv")
    assert len(rows) == 8 and set(rows["city"]) == set(CITIES)
    # `podium predict` picks the task from the run's model: the same table and metrics
    routed = tmp_path / "routed"
    args = ["--run", str(logdir), "--synthetic", "valid", "--out", str(routed), "--no-maps"]
    assert main(["predict", *args]) == 0
    for name in ("predictions.csv", "metrics.json"):
        assert (routed / name).read_bytes() == (out / name).read_bytes(), name
    assert capsys.readouterr().out.startswith("predict: 8 images")
    first = rows["name"].iloc[0]
    agl = tifffile.imread(out / f"{first}_AGL.tif")
    assert agl.shape == (64, 64) and agl.dtype == np.float32
    vflow = json.loads((out / f"{first}_VFLOW.json").read_text())
    assert vflow["angle"] == pytest.approx(rows["angle"].iloc[0], abs=1e-5) and vflow["scale"] > 0

    # image files with D4 TTA and the GSD given once
    import cv2

    image, _ = render_scene(SyntheticGeoposeScenes(1, image_size=64).geometry(0))
    cv2.imwrite(str(tmp_path / "tile.png"), image[:, :, ::-1])
    out_images = tmp_path / "images"
    assert (
        main(
            [
                "predict-geopose",
                "--run",
                str(logdir),
                "--images",
                str(tmp_path / "tile.png"),
                "--scalar",
                "gsd=1.2",
                "--tta",
                "d4",
                "--out",
                str(out_images),
            ]
        )
        == 0
    )
    rows = pd.read_csv(out_images / "predictions.csv")
    assert list(rows["name"]) == ["tile"] and (out_images / "tile_MAG.tif").is_file()
    assert not (out_images / "metrics.json").exists()


def test_predict_geopose_errors(tmp_path, capsys):
    assert (
        main(
            [
                "predict-geopose",
                "--run",
                str(tmp_path),
                "--synthetic",
                "valid",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "is not a podium run directory" in capsys.readouterr().err
    assert (
        main(
            [
                "predict-geopose",
                "--run",
                str(tmp_path),
                "--images",
                "x.png",
                "--scalar",
                "gsd",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "--scalar 'gsd': expected NAME=NUMBER" in capsys.readouterr().err
    model = build_geopose_model(scalar_inputs=["gsd"], head_channels=8, hidden_features=8)
    from podium.tasks.geopose.predict import predict_images

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(PodiumError, match=r"takes the scalar inputs \[gsd\]; got \[\]"):
        predict_images(GeoposePredictor(model, device="cpu"), [tmp_path / "a.tif"])
