"""Rebuild a trained model from a run directory or a checkpoint file.

A run directory written by `catalyst-dl run` holds `configs/_config.json` (the resolved config,
dumped by Catalyst) and `checkpoints/{best,last}.pth`. Checkpoints are loaded with
`weights_only=True`: a checkpoint is data, never code. The model is rebuilt from the run's
`model:` block (old `_target_`s such as `podium.models.build_segmentation_model` still build
it) with `pretrained: false`: the checkpoint holds every weight.
"""

import json
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from podium import checkpoints
from podium.errors import PodiumError
from podium.targets import call_target

__all__ = ["load_run_config", "run_data_config", "load_state_dict", "load_model"]

CONFIG_PATH = Path("configs") / "_config.json"


def load_run_config(run_dir: Path) -> Dict[str, Any]:
    """The resolved config Catalyst saved into the run directory."""
    path = Path(run_dir) / CONFIG_PATH
    if not path.is_file():
        raise PodiumError(
            f"{run_dir} is not a podium run directory: {path} is missing "
            f"(expected the folder `catalyst-dl run` wrote, with configs/ and checkpoints/)"
        )
    with open(path) as file:
        return json.load(file)


def run_data_config(run_config: Dict[str, Any]) -> Dict[str, Any]:
    """The `data:` block that validated the run's checkpoints: top level + the last stage's overrides."""
    data = deepcopy(run_config.get("data") or {})
    stages = run_config.get("stages") or {}
    if stages:
        last = list(stages.values())[-1] or {}
        data.update(deepcopy(last.get("data") or {}))
    return data


def resolve_checkpoint(run_dir: Optional[Path], checkpoint: str) -> Path:
    """`best` / `last` inside a run directory, or a path to a .pth file."""
    if run_dir is not None and checkpoint in ("best", "last"):
        path = Path(run_dir) / "checkpoints" / f"{checkpoint}.pth"
    else:
        path = Path(checkpoint)
    if not path.is_file():
        raise PodiumError(
            f"checkpoint {path} does not exist; expected best, last (with a run directory) "
            f"or the path of a .pth file"
        )
    return path


def load_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Model weights from a Catalyst checkpoint (`model_state_dict`) or a bare state dict."""
    return checkpoints.model_weights(path)


def _model_name(model_config: Dict[str, Any]) -> str:
    """`_target_`, with the registered name for `create_model` blocks."""
    name = model_config.get("name")
    return f"{model_config['_target_']} ({name})" if name else str(model_config["_target_"])


def load_model(
    run_dir: Optional[Path] = None,
    checkpoint: str = "best",
    model_config: Optional[Dict[str, Any]] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model in eval mode with the checkpoint's weights, the run's config)."""
    config = load_run_config(run_dir) if run_dir is not None else {}
    model_config = model_config or config.get("model")
    if isinstance(model_config, dict) and model_config.get("pretrained"):
        # the checkpoint replaces every weight: no pretrained weights needed (nor their file)
        model_config = {**model_config, "pretrained": False}
    model = call_target(model_config, "model")
    path = resolve_checkpoint(run_dir, checkpoint)
    state_dict = load_state_dict(path)
    model_keys, checkpoint_keys = set(model.state_dict()), set(state_dict)
    missing, unexpected = model_keys - checkpoint_keys, checkpoint_keys - model_keys
    if missing or unexpected:
        raise PodiumError(
            f"checkpoint {path} does not fit the model {_model_name(model_config)}: "
            f"{len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:  # same keys, other shapes (e.g. another num_classes)
        lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise PodiumError(f"checkpoint {path} does not fit the model: {lines[:2]}") from None
    return model.eval(), config
