"""Tasks beyond plain segmentation, one folder each; segmentation is the core of the package.

    podium/tasks/<task>/
        data.py       a `data: {_target_: …}` builder returning {loader name: dataset}
        model.py      a `model: {_target_: …}` builder; the model returns a dict of named outputs
        loss.py, metrics.py, callbacks.py   what its training needs beyond the core's
        predict.py    a `podium.inference.task_predictor.TaskPredictor`: run → outputs, and
                      `predictor_settings(config)`: what it reads from the run (export metadata)
        cli.py        `register(subparsers)`: its `podium predict-<task>` (`podium.tasks.command`)
        __init__.py   its public names, and MODELS: the model builders whose runs are its own

Adding a task = such a folder + its name in TASKS below. A task whose model is a segmentation
model and whose outputs come from a writer of the segmentation `podium predict` (`writers:` in
the inference YAML), such as instances/, goes in SEGMENTATION_TASKS instead: it has no command
or MODELS of its own. A task may import the core packages (not `podium.cli`); the core imports
no task, but for this registry (`podium.cli`) and the old module paths that re-export what moved
here. `podium predict --run RUN` runs the command of the task whose MODELS hold the builder of
RUN's model (its `create_model` name, or an older `_target_`); `podium predict --model FILE`
the command of the task whose run FILE exports (its metadata `podium.task`).
"""

import importlib
import json
from typing import Any, Dict, Mapping, Optional

from podium.errors import PodiumError

__all__ = [
    "COMMANDS",
    "SEGMENTATION_TASKS",
    "TASKS",
    "import_all",
    "instance_tuning",
    "predictor_settings",
    "register_command",
    "task_of_export",
    "task_of_run",
]

TASKS = (
    "centernet",
    "geopose",
    "boxes",
)
SEGMENTATION_TASKS = ("instances",)

# task: (its command's older names, its help): the one place they are written, so that
# `podium --help` lists the commands without importing a task (podium.cli.main.Listed)
COMMANDS = {
    "centernet": (
        (),
        "CenterNet heatmaps: boxes and scores per image (CSV), mAP on the run's deepforest tiles",
    ),
    "geopose": (
        (),
        "Geopose: height and flow maps, flow direction and scale per image (+ R2 on synthetic "
        "scenes)",
    ),
    "boxes": (
        ("predict-detector",),
        "Classifier + box regression: score and box per image (CSV, image pixels)",
    ),
}


def import_all() -> None:
    """Import every task (a task's model registers itself: `podium.models.create_model(name)`)."""
    for name in TASKS:
        importlib.import_module(f"podium.tasks.{name}")


def register_command(subparsers, name: str) -> None:
    """The task `name`'s `podium predict-<name>` (importing that task only)."""
    importlib.import_module(f"podium.tasks.{name}.cli").register(subparsers)


def instance_tuning():
    """podium.tasks.instances.tune (`tune_instances`, `METRICS`): what `podium tune-postprocess
    --instances` runs on the instance writer's settings."""
    return importlib.import_module("podium.tasks.instances.tune")


def task_of_run(run_dir) -> Optional[str]:
    """The task whose MODELS built the run's model; None for any other run (segmentation) and
    for a folder that is not a readable run (the segmentation command then says what is wrong)."""
    from podium.inference.checkpoint import load_run_config  # torch: only when asked
    from podium.targets import resolve_target

    try:
        block = load_run_config(run_dir).get("model") or {}
        factory = resolve_target(block.get("_target_"), "model")
        resolve = getattr(factory, "resolve_block", None)  # create_model: the builder of `name`
        builder = resolve(block)[0] if callable(resolve) else factory
    except (PodiumError, OSError, json.JSONDecodeError, AttributeError):
        return None
    for name in TASKS:
        if builder in importlib.import_module(f"podium.tasks.{name}").MODELS:
            return name
    return None


def task_of_export(path) -> Optional[str]:
    """The task whose run the ONNX file at `path` exports (its metadata `podium.task`, read
    without an onnxruntime session: the command opens the one it predicts with); None for a
    segmentation export and for a file that is not one of podium export (the segmentation
    command then says what is wrong)."""
    from podium.inference.onnx_metadata import read_file_metadata

    try:
        task = read_file_metadata(path)["task"]
    except PodiumError:
        return None
    return task if task in TASKS else None


def predictor_settings(task: str, config: Mapping[str, Any]) -> Dict[str, Any]:
    """What `task`'s predictor reads from a run's config (its predict.py `predictor_settings`):
    `podium export` stores it as the file's metadata `reading`, so the file predicts alone."""
    return importlib.import_module(f"podium.tasks.{task}.predict").predictor_settings(config)
