"""Whole-scene prediction (`podium predict --scenes`): the window grid and weights against
MONAI's formulas, blending against a numpy reference, no seams, streamed post-processing equal
to whole-scene post-processing, the real trees-geo run end to end, and one line per bad input."""

import os
import re

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from conftest import REPO, run_command
from podium.datasets.normalize import build_normalizer
from podium.datasets.scenes.windows import sliding_starts
from podium.errors import PodiumError
from podium.files import OutputWriteError, temporary_path
from podium.inference.postprocess import PostProcess
from podium.inference.scenes import ScenePredictor, scene_outputs
from podium.inference.tiles import window_weights

UTM = "EPSG:32617"
TRANSFORM = from_origin(404000.0, 3285000.0, 0.5, 0.5)
FIXED = {"mode": "fixed", "max_value": 255}


def write_scene(path, array, nodata=None, transform=TRANSFORM):
    count, height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype,
        crs=UTM,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array)
    return path


def small_net(seed=0, channels=3):
    """A fully convolutional net with a 9-pixel receptive field (zero padding at its edges)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 5, padding=2),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 1, 5, padding=2),
    ).eval()
    return torch.no_grad()(lambda x: torch.sigmoid(net(x)))


def blended(predictor, path):
    """The float32 probabilities of a whole scene, from the predictor's row stream."""
    with rasterio.open(path) as src:
        rows = [p for _, p, _, _ in predictor.blended_rows(src, range(1, src.count + 1))]
    return np.concatenate(rows, axis=1)


def numpy_reference(fn, image, window, overlap, weight):
    """Σ w·p / Σ w over the windows of the hand grid, in float64 over the whole image."""
    channels, height, width = image.shape
    w = window_weights((window, window), weight).astype(np.float64)
    sums, weights = np.zeros((height, width)), np.zeros((height, width))
    for top in sliding_starts(height, window, overlap):
        for left in sliding_starts(width, window, overlap):
            crop = image[:, top : top + window, left : left + window]
            p = fn(torch.from_numpy(crop[None].astype(np.float32) / 255))[0, 0].double().numpy()
            sums[top : top + window, left : left + window] += w * p
            weights[top : top + window, left : left + window] += w
    return sums / weights


# ---------------------------------------------------------------- grid and weights
def test_sliding_starts_are_monais_grid():
    # every 192 px from 0, the last window moved back to end at the edge (1000 - 256 = 744)
    assert sliding_starts(1000, 256, 64) == [0, 192, 384, 576, 744]
    assert sliding_starts(640, 256, 64) == [0, 192, 384]  # 384 + 256 = 640: no extra window
    assert sliding_starts(256, 256, 64) == [0] and sliding_starts(100, 256, 64) == [0]


def test_gaussian_weights_are_monais_importance_map():
    height, width = 64, 48
    ys = np.arange(height) - (height - 1) / 2
    xs = np.arange(width) - (width - 1) / 2
    sigma_y, sigma_x = height * 0.125, width * 0.125
    expected = np.exp(-(ys[:, None] ** 2) / (2 * sigma_y**2)) * np.exp(
        -(xs[None] ** 2) / (2 * sigma_x**2)
    )
    expected = np.maximum(expected, max(expected.min(), 1e-3))  # MONAI's floor
    np.testing.assert_allclose(window_weights((height, width), "gaussian"), expected, rtol=1e-5)
    assert window_weights((height, width), "gaussian").min() == pytest.approx(1e-3)
    assert (window_weights((4, 6), "mean") == 1).all()
    with pytest.raises(PodiumError, match="expected one of: pyramid, mean, gaussian"):
        window_weights((4, 4), "cosine")


# ---------------------------------------------------------------- blending and outputs
@pytest.mark.parametrize("weight", ["gaussian", "mean", "pyramid"])
def test_blending_equals_a_numpy_reference_and_outputs_are_georeferenced(tmp_path, weight):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 150, 205), dtype=np.uint8)
    image[:, :20, :30] = 0  # nodata corner
    path = write_scene(tmp_path / "scene.tif", image, nodata=0)
    fn = small_net()
    reference = numpy_reference(fn, image, 64, 16, weight)
    post = PostProcess(threshold=0.5, min_size=12, fill_holes=True)
    options = dict(window=64, overlap=16, weight=weight, normalizer=build_normalizer(FIXED))
    for batch_size in (1, 3):
        got = blended(ScenePredictor(fn, batch_size=batch_size, **options), path)
        np.testing.assert_allclose(got[0], reference, atol=1e-5)

    summary = ScenePredictor(fn, post=post, **options)(path, tmp_path / "out")
    assert summary["windows"] == 3 * 4 and summary["width"] == 205
    valid = (image != 0).any(axis=0)
    with rasterio.open(summary["probability"]) as out:
        assert (out.crs.to_string(), out.transform, out.dtypes[0]) == (UTM, TRANSFORM, "uint8")
        assert out.profile["tiled"] and out.profile["compress"] == "deflate"
        assert out.block_shapes == [(256, 256)]
        probability = out.read(1)
        np.testing.assert_array_equal(out.read_masks(1) > 0, valid)  # nodata masked
    assert np.abs(probability[valid] / 255 - reference[valid]).max() <= 0.5 / 255 + 1e-6
    with rasterio.open(summary["mask"]) as out:
        assert out.nodata == 255 and out.transform == TRANSFORM
        mask = out.read(1)
    expected = post(np.where(valid, reference, 0)[None]).astype(np.uint8)
    expected[~valid] = 255
    np.testing.assert_array_equal(mask, expected)


def test_no_seams_tiled_equals_whole_image_prediction(tmp_path):
    """1024² scene: windows of 128 overlapping by 64 with gaussian weights agree with one pass
    over the whole image to 1e-3 more than a window away from the border (nearer, fewer windows
    cover a pixel); without overlap, or with mean weights, the windows' zero-padded edges show
    as seams and the same check fails."""
    rng = np.random.default_rng(2)
    smooth = rng.integers(0, 255, (3, 64, 64)).astype(np.float32)
    image = np.kron(smooth, np.ones((16, 16))) + rng.normal(0, 20, (3, 1024, 1024))
    image = np.clip(image, 0, 255).astype(np.uint8)
    path = write_scene(tmp_path / "big.tif", image)
    fn = small_net(seed=3)
    whole = fn(torch.from_numpy(image[None].astype(np.float32) / 255))[0, 0].numpy()
    inner = (slice(128, -128), slice(128, -128))

    def error(overlap, weight):
        predictor = ScenePredictor(
            fn, window=128, overlap=overlap, weight=weight, normalizer=build_normalizer(FIXED)
        )
        return np.abs(blended(predictor, path)[0][inner] - whole[inner]).max()

    assert error(64, "gaussian") <= 1e-3
    assert error(0, "gaussian") > 1e-2  # seams: the test can fail
    assert error(64, "mean") > 1e-2


@pytest.mark.parametrize("min_size", [150, 0])
def test_streamed_post_processing_equals_whole_scene_post_processing(tmp_path, min_size):
    """Blobs and holes that straddle the bands of rows the mask is written in: min_size and
    fill_holes give what PostProcess gives on the whole scene at once."""
    rng = np.random.default_rng(4)
    band = np.zeros((300, 100), np.uint8)
    for _ in range(60):  # rectangles of 1..400 pixels in columns 0..84
        top, left = rng.integers(0, 290), rng.integers(0, 65)
        band[top : top + rng.integers(1, 21), left : left + rng.integers(1, 21)] = 200
    band[100:140, 10:50] = 200
    band[110:130, 20:40] = 0  # a hole crossing a band edge
    band[20:220, 90] = 200  # 200 pixels over 200 rows: stays (min_size 150)
    band[150:290, 95] = 200  # 140 pixels over 140 rows: goes
    path = write_scene(tmp_path / "blobs.tif", band[None])
    post = PostProcess(threshold=0.5, min_size=min_size, fill_holes=True)
    predictor = ScenePredictor(
        lambda x: x[:, :1],  # the image itself as probabilities
        window=32,
        overlap=8,  # final rows come 24 at a time: every blob crosses a band edge somewhere
        normalizer=build_normalizer(FIXED),
        post=post,
    )
    summary = predictor(path, tmp_path / "out")
    with rasterio.open(summary["mask"]) as out:
        mask = out.read(1)
    expected = post((band / 255.0)[None])
    assert expected[20:220, 90].all() and expected[150:290, 95].any() == (min_size == 0)
    assert (expected != (band > 127)).any() and expected[110:130, 20:40].all()
    np.testing.assert_array_equal(mask, expected)


# ---------------------------------------------------------------- the real trees-geo run
@pytest.fixture(scope="module")
def trees_run(tmp_path_factory, trees_geo):
    """A 1-epoch run of configs/trees_geo/unet_resnet18.yml on the real OSBS_029 GeoTIFF."""
    logdir = tmp_path_factory.mktemp("runs") / "trees_geo"
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        REPO / "configs" / "trees_geo" / "unet_resnet18.yml",
        f"--args/logdir={logdir}:str",
        f"--data/root={trees_geo}:str",
        "--data/train_windows=8:int",
        "--stages/train/num_epochs=1:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir, trees_geo / "OSBS_029.tif"


def test_trees_geo_config_trains_end_to_end(trees_run):
    logdir, _ = trees_run
    valid = pd.read_csv(logdir / "logs" / "valid.csv")
    assert len(valid) == 1 and 0 < valid["dice"].iloc[0] <= 1
    assert (logdir / "checkpoints" / "best.pth").exists()


def test_trees_geo_scene_to_geotiffs_and_polygons(trees_run, tmp_path):
    import geopandas as gpd

    from podium.inference.checkpoint import load_model

    run, scene = trees_run
    out = tmp_path / "pred"
    result = run_command(
        "podium",
        "predict",
        "--run",
        run,
        "--scenes",
        scene,
        "--out",
        out,
        "--polygons",
        out / "crowns.gpkg",
        "--instances",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with rasterio.open(scene) as src:
        image, crs, transform = src.read(), src.crs, src.transform
        valid = src.read_masks(1) > 0
        for band in (2, 3):
            valid |= src.read_masks(band) > 0
    with rasterio.open(out / "OSBS_029_probability.tif") as prob:
        assert (prob.crs, prob.transform, prob.dtypes[0]) == (crs, transform, "uint8")
        assert prob.profile["tiled"] and prob.profile["compress"] == "deflate"
        probability = prob.read(1)
        np.testing.assert_array_equal(prob.read_masks(1) > 0, valid)
    # pixels of rows and columns 0..95 lie in the first window only (128, overlap 32): its
    # probabilities unblended, as a direct call of the model gives them
    model, _ = load_model(run, "best")
    window = image[:, :128, :128].astype(np.float32) / 255
    window[:, ~valid[:128, :128]] = 0
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(window[None])))[0, 0].numpy()
    ok = valid[:96, :96]
    assert np.abs(probability[:96, :96][ok] / 255 - direct[:96, :96][ok]).max() <= 0.5 / 255 + 1e-4
    with rasterio.open(out / "OSBS_029_mask.tif") as m:
        assert (m.crs, m.transform, m.nodata) == (crs, transform, 255)
        mask = m.read(1)
    np.testing.assert_array_equal(mask[~valid], 255)
    np.testing.assert_array_equal(mask[valid], (probability[valid] / 255 > 0.5).astype(np.uint8))

    polygons = gpd.read_file(out / "crowns.gpkg")
    assert polygons.crs.to_epsg() == 32617 and len(polygons) >= 1
    pixel_area = abs(transform.a * transform.e)  # 0.01 m²
    assert polygons["area"].sum() == pytest.approx((mask == 1).sum() * pixel_area)
    np.testing.assert_allclose(polygons["area"], polygons.geometry.area, rtol=1e-9)
    with rasterio.open(out / "OSBS_029_instances.tif") as inst:
        instances = inst.read(1)
        assert inst.crs == crs and inst.transform == transform
    np.testing.assert_array_equal(instances > 0, mask == 1)
    ids, counts = np.unique(instances[instances > 0], return_counts=True)
    assert sorted(ids.tolist()) == sorted(polygons["id"].tolist())
    by_id = dict(zip(polygons["id"], polygons["area"]))
    assert [by_id[i] for i in ids] == pytest.approx((counts * pixel_area).tolist())


def test_polygons_join_objects_across_strips_and_keep_holes(tmp_path):
    from podium.inference.polygons import mask_polygons, polygons_path

    assert polygons_path("o/trees.gpkg", "a/s1.tif", 1).as_posix() == "o/trees.gpkg"
    assert polygons_path("o/trees.gpkg", "a/s1.tif", 2).as_posix() == "o/trees_s1.gpkg"

    mask = np.zeros((40, 30), np.uint8)
    mask[5:35, 5:25] = 1  # one object crossing every strip of 8 rows, with a hole
    mask[15:20, 10:15] = 0
    mask[36:38, 26:28] = 1  # a second object
    mask[0, 0] = 255  # nodata: no object
    path = write_scene(tmp_path / "mask.tif", mask[None], nodata=255)
    polygons = mask_polygons(path, strip_rows=8)
    assert polygons["id"].tolist() == [1, 2] and polygons["class"].tolist() == [1, 1]
    assert polygons["area"].tolist() == pytest.approx([(600 - 25) * 0.25, 4 * 0.25])
    first = polygons.geometry.iloc[0]
    assert first.geom_type == "Polygon" and len(first.interiors) == 1
    x0, y0 = TRANSFORM * (5, 35)
    x1, y1 = TRANSFORM * (25, 5)
    assert first.bounds == pytest.approx((x0, y0, x1, y1))


# ---------------------------------------------------------------- bad input, one line each
def test_all_nodata_scene(tmp_path):
    path = write_scene(tmp_path / "blank.tif", np.zeros((3, 20, 20), np.uint8), nodata=0)
    with pytest.raises(PodiumError, match=r"blank.tif \(scene blank\) is all nodata"):
        ScenePredictor(small_net(), window=16)(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_band_out_of_range(tmp_path):
    path = write_scene(tmp_path / "two.tif", np.ones((2, 20, 20), np.uint8))
    with pytest.raises(PodiumError, match=r"band 3 is out of range .* expected band numbers 1..2"):
        ScenePredictor(small_net(), window=16, bands=[1, 2, 3])(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_window_larger_than_the_scene_is_padded(tmp_path):
    rng = np.random.default_rng(5)
    image = rng.integers(1, 255, (3, 30, 45), dtype=np.uint8)
    path = write_scene(tmp_path / "small.tif", image)
    fn = small_net()
    predictor = ScenePredictor(fn, window=64, normalizer=build_normalizer(FIXED))
    padded = np.zeros((3, 64, 64), np.float32)
    padded[:, :30, :45] = image / 255
    expected = fn(torch.from_numpy(padded[None]))[0, 0, :30, :45].numpy()
    np.testing.assert_allclose(blended(predictor, path)[0], expected, atol=1e-6)
    summary = predictor(path, tmp_path / "out")
    with rasterio.open(summary["probability"]) as out:
        assert (out.height, out.width) == (30, 45)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_output_that_cannot_be_written_keeps_the_earlier_file(tmp_path):
    path = write_scene(tmp_path / "scene.tif", np.full((3, 40, 40), 9, np.uint8))
    predictor = ScenePredictor(small_net(), window=16, normalizer=build_normalizer(FIXED))
    out = tmp_path / "out"
    predictor(path, out)
    files = scene_outputs(out, path)
    before = {kind: p.read_bytes() for kind, p in files.items()}
    temporary_path(files["probability"]).symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(OutputWriteError) as error:
        predictor(path, out)
    message = str(error.value)
    assert "\n" not in message and f"cannot write {files['probability']}" in message
    assert {kind: p.read_bytes() for kind, p in files.items()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in files.values())


def test_cli_bad_scene_is_one_line(trees_run, tmp_path, capsys):
    run, _ = trees_run
    blank = write_scene(tmp_path / "blank.tif", np.full((3, 20, 20), 255, np.uint8), nodata=255)
    # in this process (a real `podium predict` process: test_trees_geo_scene_to_geotiffs_…)
    from podium.cli.main import main as podium_main

    command = ["predict", "--run", str(run), "--scenes", str(blank), "--out", str(tmp_path)]
    capsys.readouterr()
    assert podium_main(command) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("podium: error: raster") and "is all nodata" in lines[-1], err
    assert "Traceback" not in err, err
    assert podium_main(command + ["--polygons", "x.shp"]) == 1
    assert "expected one of: .gpkg, .geojson" in capsys.readouterr().err
    assert podium_main(command + ["--data", str(tmp_path)]) == 1
    assert "--data does not go with it" in capsys.readouterr().err


def test_scenes_block_of_the_inference_config(tmp_path):
    from podium.inference.config import apply_flags, resolve_inference_config

    base = {"models": [{"run": str(tmp_path)}], "out": str(tmp_path / "out")}
    flags = {"scenes": ["a.tif"], "window": 256, "blend": "mean", "polygons": "p.geojson"}
    scenes = resolve_inference_config(apply_flags(base, flags))["scenes"]
    assert scenes == {
        "images": ["a.tif"],
        "window": 256,
        "overlap": None,
        "weight": "mean",
        "polygons": "p.geojson",
        "simplify": None,
        "instances": False,
    }
    for block, message in (
        ({"images": []}, "scenes/images must be a list of raster paths, got []"),
        ({"images": ["a.tif"], "weight": "cosine"}, "scenes/weight 'cosine' is not supported"),
        ({"images": ["a.tif"], "overlap": -1}, "scenes/overlap must be"),
        ({"images": ["a.tif"], "windw": 5}, 'unknown key "windw" in scenes'),
    ):
        with pytest.raises(PodiumError, match=re.escape(message)):
            resolve_inference_config({**base, "scenes": block})


def test_predictor_arguments_are_checked():
    with pytest.raises(PodiumError, match="overlap 64 must be smaller than the window 64×64"):
        ScenePredictor(small_net(), window=64, overlap=64)
    with pytest.raises(PodiumError, match="at most 255 classes, got 300"):
        ScenePredictor(small_net(), mode="multiclass", num_classes=300)


def test_an_exported_model_predicts_scenes_like_its_run(trees_run, tmp_path):
    """`podium predict --model FILE.onnx --scenes`: onnxruntime in the scene predictor writes
    the GeoTIFFs the run writes (probabilities within 1/255, masks equal but on ties)."""
    run, scene = trees_run
    from podium.cli.main import main as podium_main  # in this process: no start-up cost

    onnx = tmp_path / "trees.onnx"
    assert podium_main(["export", "--run", str(run), "--out", str(onnx)]) == 0
    for source, out in ((["--run", run], "torch"), (["--model", onnx], "onnx")):
        command = ["predict", *map(str, source), "--scenes", str(scene)]
        assert podium_main(command + ["--out", str(tmp_path / out), "--no-progress"]) == 0
    files = {}
    for out in ("torch", "onnx"):
        with rasterio.open(tmp_path / out / "OSBS_029_probability.tif") as prob:
            files[out] = (prob.read(1).astype(int), prob.read_masks(1), prob.crs, prob.transform)
        with rasterio.open(tmp_path / out / "OSBS_029_mask.tif") as mask:
            files[out] += (mask.read(1),)
    torch_files, onnx_files = files["torch"], files["onnx"]
    assert np.abs(torch_files[0] - onnx_files[0]).max() <= 1
    np.testing.assert_array_equal(torch_files[1], onnx_files[1])
    assert torch_files[2:4] == onnx_files[2:4]
    assert (torch_files[4] != onnx_files[4]).mean() < 1e-3
