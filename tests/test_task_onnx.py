"""`podium predict-<task> --model FILE.onnx`: a task's export run by onnxruntime writes what
`--run` writes on the same images, with TTA around the file and the run's settings from its
metadata; what needs the run, or the other model source, is refused in one line."""

import csv
import importlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
import tifffile
import yaml

from podium.inference.checkpoint import load_run_config
from podium.inference.onnx_metadata import read_file_metadata, write_metadata
from tests.test_export import TASK_MODELS, make_run, podium

TOLERANCE = 1e-3
# settings that differ from each predictor's defaults, so that a file that loses one predicts
# otherwise than its run
NORMALIZE = {"mode": "fixed", "mean": [0.3, 0.4, 0.5], "std": [0.2, 0.25, 0.3], "max_value": 255}
DATA = {
    "centernet": {
        "_target_": "podium.tasks.centernet.data.build_deepforest_tiles",
        "scale": 0.5,
        "classes": ["tree"],
        "normalize": NORMALIZE,
    },
    "geopose": {"normalize": {"mode": "stats", "path": "STATS"}},  # read in by the export
    "boxes": {"size": 64, "normalize": NORMALIZE},
}
MODELS = {**TASK_MODELS, "boxes": {**TASK_MODELS["boxes"], "box_grid": 2}}  # 64 px → 2×2 at /32
RUN_DATA_FLAGS = {"centernet": "--deepforest", "geopose": "--synthetic", "boxes": "--deepforest"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{task: (run, its export)} of tiny runs with seeded random weights."""
    folder = tmp_path_factory.mktemp("task_onnx")
    stats = folder / "stats.json"  # as `podium stats` writes it
    stats.write_text(
        json.dumps({"normalize": {key: NORMALIZE[key] for key in ("max_value", "mean", "std")}})
    )
    found = {}
    for task, model in MODELS.items():
        data = json.loads(json.dumps(DATA[task]).replace("STATS", str(stats)))
        run = make_run(folder / task, {"encoder": "resnet18", **model}, data)
        path = folder / f"{task}.onnx"
        code, _, err = podium("export", "--run", run, "--out", path)
        assert code == 0, err
        found[task] = run, path
    return found


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of two smooth RGB images whose sides are not multiples of 32."""
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for name, (height, width) in (("a", (150, 206)), ("b", (97, 120))):
        noise = generator.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
        image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{name}.png"), image)
    return folder


def rows(path: Path) -> list:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_rows_close(got: list, expected: list, numbers: dict) -> None:
    """Equal rows; the `numbers` columns {name: decimals the CSV keeps} within TOLERANCE (+ one
    unit of their rounding: a value can fall on either side of it)."""
    assert got and len(got) == len(expected)
    for row, reference in zip(got, expected):
        assert list(row) == list(reference)
        for key, value in row.items():
            if key in numbers:
                slack = TOLERANCE + 10.0 ** -numbers[key]
                assert abs(float(value) - float(reference[key])) <= slack, (key, row, reference)
            else:
                assert value == reference[key], (key, row, reference)


def test_centernet_model_writes_what_its_run_writes(exports, images, tmp_path, monkeypatch):
    run, path = exports["centernet"]
    common = ["--images", images, "--tta", "flip", "--top-k", 20]
    code, _, err = podium("predict-centernet", "--run", run, *common, "--out", tmp_path / "r.csv")
    assert code == 0, err
    code, out, err = podium(
        "predict-centernet", "--model", path, *common, "--threads", 1, "--out", tmp_path / "m.csv"
    )
    assert code == 0, err
    expected = rows(tmp_path / "r.csv")
    assert {row["class"] for row in expected} == {"tree"}  # the run's data/classes
    boxes = {key: 2 for key in ("x1", "y1", "x2", "y2")}
    assert_rows_close(rows(tmp_path / "m.csv"), expected, {**boxes, "score": 5})
    # the boxes are in each image's pixels: the file resized by the run's scale 0.5 first
    assert max(float(row["x2"]) for row in expected if row["name"] == "a") > 206 / 2
    # `podium predict --model` of a task's file is the task's command, which finds the task
    # without an onnxruntime session of its own: the file is opened once, to predict
    opened = []
    session = onnxruntime.InferenceSession
    monkeypatch.setattr(
        onnxruntime, "InferenceSession", lambda *a, **k: opened.append(a[0]) or session(*a, **k)
    )
    code, _, err = podium("predict", "--model", path, *common, "--out", tmp_path / "p.csv")
    assert code == 0, err
    assert opened == [str(path)]
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "m.csv").read_text()


def test_geopose_model_writes_what_its_run_writes(exports, images, tmp_path):
    run, path = exports["geopose"]
    common = ["--images", images, "--scalar", "gsd=0.5", "--tta", "d2"]
    code, _, err = podium("predict-geopose", "--run", run, *common, "--out", tmp_path / "r")
    assert code == 0, err
    stats = run.parent / "stats.json"  # the run's normalize file: the export holds its numbers
    stats.rename(tmp_path / "away.json")
    try:
        code, _, err = podium("predict-geopose", "--model", path, *common, "--out", tmp_path / "m")
    finally:
        (tmp_path / "away.json").rename(stats)
    assert code == 0, err
    numbers = {"direction_x": 6, "direction_y": 6, "angle": 6, "scale": 6}
    expected = rows(tmp_path / "r" / "predictions.csv")
    assert_rows_close(rows(tmp_path / "m" / "predictions.csv"), expected, numbers)
    for name in ("a", "b"):
        for suffix in ("AGL", "MAG"):
            reference = tifffile.imread(tmp_path / "r" / f"{name}_{suffix}.tif")
            got = tifffile.imread(tmp_path / "m" / f"{name}_{suffix}.tif")
            assert got.shape == reference.shape == ((150, 206) if name == "a" else (97, 120))
            assert np.abs(got - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


def test_boxes_model_writes_what_its_run_writes(exports, images, tmp_path):
    run, path = exports["boxes"]
    common = ["--images", images, "--tta", "d4"]
    code, _, err = podium("predict-boxes", "--run", run, *common, "--out", tmp_path / "r.csv")
    assert code == 0, err
    code, _, err = podium("predict-boxes", "--model", path, *common, "--out", tmp_path / "m.csv")
    assert code == 0, err
    numbers = {"score": 6, **{key: 3 for key in ("x1", "y1", "x2", "y2")}}
    assert_rows_close(rows(tmp_path / "m.csv"), rows(tmp_path / "r.csv"), numbers)


@pytest.mark.parametrize("task", TASK_MODELS)
def test_what_needs_the_run_or_the_other_source_is_refused(exports, images, task, tmp_path):
    run, path = exports[task]
    command, out = f"predict-{task}", tmp_path / "out.csv"
    split = RUN_DATA_FLAGS[task]
    cases = [
        ([command, "--model", path, split, "valid"], [split, "--images", "--run"]),
        ([command, "--images", images], ["--run", "--model", "neither"]),
        ([command, "--run", run, "--model", path, "--images", images], ["--run", "both"]),
        ([command, "--model", path, "--checkpoint", "last", "--images", images], ["--checkpoint"]),
        ([command, "--run", run, "--threads", 2, "--images", images], ["--threads", "--model"]),
    ]
    for argv, named in cases:
        code, _, err = podium(*argv, "--out", out)
        assert code == 1 and len(err.strip().splitlines()) == 1, (argv, err)
        assert all(word in err for word in named), (argv, err)
        assert not out.exists()
    other = "boxes" if task != "boxes" else "centernet"
    code, _, err = podium(f"predict-{other}", "--model", path, "--images", images, "--out", out)
    assert code == 1 and str(path) in err and f"a {task} run" in err and f"a {other} export" in err
    code, _, err = podium(
        "predict", "--model", path, "--run", run, "--images", images, "--out", out
    )
    assert code == 1 and "one run or model of a task at a time" in err
    # the segmentation pipeline, given the file in an inference YAML, names the task's command
    config = tmp_path / "infer.yml"
    config.write_text(yaml.safe_dump({"models": [{"onnx": str(path)}], "data": str(images)}))
    code, _, err = podium("predict", "--config", config, "--out", tmp_path / "seg")
    assert code == 1 and f"podium predict-{task} --model {path}" in err
    assert not out.exists() and not list(tmp_path.glob("seg/**/*.png"))


@pytest.mark.parametrize("task", TASK_MODELS)
def test_an_export_lacking_a_setting_names_it(exports, images, task, tmp_path):
    """The settings an export must hold are the keys of its task's `predictor_settings`, the
    same for the run's config and an empty one; a file without one of them says which."""
    settings = importlib.import_module(f"podium.tasks.{task}.predict").predictor_settings
    run, path = exports[task]
    meta = read_file_metadata(path)
    keys = list(meta["reading"])
    assert keys == list(settings(load_run_config(run))) == list(settings({}))
    for key in keys:
        older = tmp_path / f"without_{key}.onnx"
        shutil.copy(path, older)
        write_metadata(
            older, {**meta, "reading": {k: meta["reading"][k] for k in keys if k != key}}
        )
        code, _, err = podium(
            f"predict-{task}", "--model", older, "--images", images, "--out", tmp_path / "o"
        )
        assert code == 1 and f"{older} lacks {key!r} in its metadata podium.reading" in err, err
        assert not (tmp_path / "o").exists()
