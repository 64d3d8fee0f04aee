"""The tasks (podium/tasks): the registry and its folders, how `podium predict` finds the task of
a run, what every task predictor shares (podium/inference/task_predictor.py), and the old module
paths and `_target_`s, which still lead to the same objects."""

import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from podium import tasks
from podium.cli.main import build_parser
from podium.cli.predict import task_command
from podium.errors import PodiumError
from podium.inference.task_predictor import (
    TaskPredictor,
    load_run,
    run_split,
    trained_on,
    write_rows,
)
from podium.targets import check_targets, resolve_target
from podium.tasks.geopose.data import build_geopose_datasets

TASKS_FOLDER = Path(tasks.__file__).parent

# module left where a task's file used to be → where it went
OLD_MODULES = {
    "podium.models.centernet": "podium.tasks.centernet.model",
    "podium.models.geopose": "podium.tasks.geopose.model",
    "podium.models.detector": "podium.tasks.boxes.model",
    "podium.datasets.centernet": "podium.tasks.centernet.data",
    "podium.losses.centernet": "podium.tasks.centernet.loss",
    "podium.metrics.detection_map": "podium.tasks.centernet.metrics",
    "podium.callbacks.detection_map": "podium.tasks.centernet.callbacks",
    "podium.inference.centernet": "podium.tasks.centernet.predict",
    "podium.cli.centernet": "podium.tasks.centernet.cli",
    "podium.datasets.geopose": "podium.tasks.geopose.data",
    "podium.losses.geopose": "podium.tasks.geopose.loss",
    "podium.inference.geopose": "podium.tasks.geopose.predict",
    "podium.cli.geopose": "podium.tasks.geopose.cli",
    "podium.datasets.boxes": "podium.tasks.boxes.data",
    "podium.inference.detector": "podium.tasks.boxes.predict",
    "podium.cli.detector": "podium.tasks.boxes.cli",
}

# every `_target_` the shipped configs named before the move (and renamed names) → now
OLD_NAMES = {
    "podium.models.centernet.build_centernet": "podium.tasks.centernet.build_centernet",
    "podium.datasets.centernet.build_deepforest_tiles": (
        "podium.tasks.centernet.build_deepforest_tiles"
    ),
    "podium.losses.CenterNetFocalLoss": "podium.tasks.centernet.CenterNetFocalLoss",
    "podium.callbacks.DetectionMAPCallback": "podium.tasks.centernet.DetectionMAPCallback",
    "podium.metrics.DetectionMAP": "podium.tasks.centernet.DetectionMAP",
    "podium.models.geopose.build_geopose_model": "podium.tasks.geopose.build_geopose_model",
    "podium.datasets.geopose.build_geopose_datasets": "podium.tasks.geopose.build_geopose_datasets",
    "podium.losses.HuberCosLoss": "podium.tasks.geopose.HuberCosLoss",
    "podium.models.detector.build_box_classifier": "podium.tasks.boxes.build_boxes_model",
    "podium.models.detector.BoxClassifier": "podium.tasks.boxes.BoxesModel",
    "podium.datasets.boxes.build_deepforest_datasets": (
        "podium.tasks.boxes.build_deepforest_datasets"
    ),
    "podium.inference.detector.BoxPredictor": "podium.tasks.boxes.BoxesPredictor",
    "podium.inference.detector.load_box_predictor": "podium.tasks.boxes.load_boxes_predictor",
    "podium.datasets.boxes.split_region": "podium.datasets.deepforest.split_region",
    "podium.datasets.boxes.IMAGENET_NORMALIZE": "podium.datasets.normalize.IMAGENET_NORMALIZE",
}


# ---------------------------------------------------------------- registry and old paths


def test_every_task_folder_is_registered_with_models_and_a_command():
    folders = sorted(p.name for p in TASKS_FOLDER.iterdir() if (p / "__init__.py").is_file())
    assert sorted(tasks.TASKS + tasks.SEGMENTATION_TASKS) == folders
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in tasks.TASKS:
        package = importlib.import_module(f"podium.tasks.{name}")
        assert package.MODELS and all(callable(builder) for builder in package.MODELS), name
        assert f"predict-{name}" in commands
    assert commands["predict-detector"] is commands["predict-boxes"]  # the old name


def _commands(parser):
    """{command: (its parser's prog, the help `podium --help` lists)} of `podium`'s parser."""
    action = parser._subparsers._group_actions[0]
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return {name: (sub.prog, helps.get(name)) for name, sub in action.choices.items()}


def test_the_command_list_matches_the_commands_and_imports_none_of_them():
    """`podium --help` lists every command from podium.cli.main.SUBCOMMANDS / tasks.COMMANDS,
    not from their modules: the same names, aliases and help as the modules register (with the
    tables' help and older names), and no torch, Catalyst or onnxruntime imported to print it."""
    full, light = build_parser(), build_parser("")
    assert _commands(light) == _commands(full)
    assert light.format_help() == full.format_help()
    for command in _commands(full):  # a command's own parser: its module's, the others listed
        assert _commands(build_parser(command)) == _commands(full)
    code = (
        "import sys; from podium.cli.main import build_parser; build_parser('').format_help(); "
        "print(sorted(m for m in ('torch', 'catalyst', 'cv2', 'onnxruntime', 'albumentations', "
        "'pytorch_toolbelt', 'neptune') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("old, new", OLD_MODULES.items())
def test_an_old_module_path_holds_the_moved_objects(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert new_module.__all__
    for name in new_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name), name


@pytest.mark.parametrize("old, new", OLD_NAMES.items())
def test_an_old_target_resolves_to_the_same_object(old, new):
    assert resolve_target(old, "model") is resolve_target(new, "model")


def test_a_config_naming_old_paths_passes_the_target_check():
    check_targets(
        {
            "model": {"_target_": "podium.models.detector.build_box_classifier", "box_grid": 2},
            "data": {"_target_": "podium.datasets.centernet.build_deepforest_tiles", "scale": 1},
            "criterion": {"_target_": "podium.losses.CenterNetFocalLoss", "alpha": 2.0},
            "callback": {"_target_": "podium.callbacks.DetectionMAPCallback", "top_k": 10},
        }
    )
    with pytest.raises(PodiumError, match='"podium.losses.CenterNetLoss" cannot be imported'):
        check_targets({"criterion": {"_target_": "podium.losses.CenterNetLoss"}})


def _run(folder: Path, model_target, data=None) -> Path:
    (folder / "configs").mkdir(parents=True)
    config = {"model": {"_target_": model_target}, "data": data or {}}
    (folder / "configs" / "_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "target, task",
    [
        ("podium.models.centernet.build_centernet", "centernet"),
        ("podium.tasks.centernet.build_centernet", "centernet"),
        ("podium.models.geopose.build_geopose_model", "geopose"),
        ("podium.models.detector.build_box_classifier", "boxes"),
        ("podium.tasks.boxes.build_boxes_model", "boxes"),
        ("podium.models.build_segmentation_model", None),
        ("no.such.builder", None),
    ],
)
def test_the_task_of_a_run_is_its_model_builder(tmp_path, target, task):
    run = str(_run(tmp_path / "run", target))
    assert tasks.task_of_run(run) == task
    command = None if task is None else f"predict-{task}"
    assert task_command(["predict", "--run", run, "--out", "x"]) == command
    assert task_command(["predict", "--out", "x", f"--run-dir={run}"]) == command
    assert task_command(["report", "--run", run]) is None


def test_podium_predict_of_a_task_run_takes_one_run(tmp_path):
    boxes = str(_run(tmp_path / "boxes", "podium.tasks.boxes.build_boxes_model"))
    segmentation = str(_run(tmp_path / "seg", "podium.models.build_segmentation_model"))
    assert tasks.task_of_run(tmp_path / "missing") is None
    assert task_command(["predict", "--run", segmentation, "--run", segmentation]) is None
    with pytest.raises(PodiumError, match=r"is a boxes run: podium predict takes one run"):
        task_command(["predict", "--run", segmentation, "--run", boxes])


# ---------------------------------------------------------------- TaskPredictor and helpers


def test_write_rows_puts_the_given_columns_first_and_leaves_gaps_empty(tmp_path):
    rows = [{"name": "a", "score": 0.5, "image": "x.png"}, {"name": "b", "iou": 0.25}]
    path = write_rows(rows, tmp_path / "rows.csv", columns=("image", "name", "label"))
    assert path.read_text() == "image,name,score,iou\nx.png,a,0.5,\n,b,,0.25\n"
    assert list(csv.DictReader(open(path)))[1] == {
        "image": "",
        "name": "b",
        "score": "",
        "iou": "0.25",
    }
    empty = write_rows([], tmp_path / "empty.csv", columns=("image", "name"))
    assert empty.read_text() == "image,name\n"


def test_run_split_rebuilds_the_runs_own_split_by_any_path_of_its_builder():
    data = {
        "_target_": "podium.datasets.geopose.build_geopose_datasets",  # the old path
        "image_size": 32,
        "num_train": 3,
        "num_valid": 2,
        "train_transforms": "never built",
        "valid_transforms": "never built",
    }
    assert trained_on(data, build_geopose_datasets)
    valid = run_split({"data": data}, build_geopose_datasets, "valid")
    expected = build_geopose_datasets(image_size=32, num_train=3, num_valid=2)["valid"]
    assert len(valid) == 2 and torch.equal(valid[1]["image"], expected[1]["image"])
    other = {"data": {"_target_": "podium.datasets.build_segmentation_datasets"}}
    with pytest.raises(PodiumError, match="was not trained on podium.tasks.geopose.data.build"):
        run_split(other, build_geopose_datasets, "valid")
    assert not trained_on({"_target_": "no.such.builder"}, build_geopose_datasets)


def test_task_predictor_checks_channels_and_reads_images(tmp_path):
    predictor = TaskPredictor(torch.nn.Identity(), channels=3, batch_size=2, device="cpu")
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(predictor.check_channels(rgba), rgba[..., :3])
    tensor = predictor.standardize(rgba)  # ImageNet's mean / std by default
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((rgba[..., :3] / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-5)
    with pytest.raises(PodiumError, match="grey.png has 1 channel"):
        predictor.check_channels(np.zeros((4, 4, 1)), "image grey.png")
    with pytest.raises(PodiumError, match="no images to predict"):
        predictor.read_images([])
    assert [len(b) for b in predictor.batches(list(range(5)))] == [2, 2, 1]


def test_load_run_refuses_another_tasks_run(tmp_path):
    run = _run(tmp_path / "run", "torch.nn.Linear")
    config = json.loads((run / "configs" / "_config.json").read_text())
    config["model"].update(in_features=2, out_features=1)
    (run / "configs" / "_config.json").write_text(json.dumps(config))
    (run / "checkpoints").mkdir()
    torch.save(torch.nn.Linear(2, 1).state_dict(), run / "checkpoints" / "best.pth")
    model, _, data, channels = load_run(run)
    assert isinstance(model, torch.nn.Linear) and data == {} and channels == 3
    with pytest.raises(PodiumError, match=r"not a Geopose run \(model torch.nn.Linear\); expected"):
        load_run(run, "best", lambda m: False, "Geopose", "geopose")
