"""Checks of podium's own config blocks, so a typo fails at once with one clear message.

Catalyst ignores keys it does not know, so a misspelled stage key would silently do nothing;
the top-level and stage keys are checked here, with a "did you mean" suggestion. (The keys
of `model` and `data` are checked against their callables in `podium.targets`.)
"""

from typing import Any, Mapping

from podium.errors import PodiumError, check_keys
from podium.loggers import check_logger_config
from podium.runners.value_checks import check_logdir, check_stage_values

TOP_LEVEL_KEYS = ["args", "runner", "engine", "model", "loggers", "stages", "data", "init_from"]
# Catalyst 21.12 reads these from a stage; podium adds `data`, `freeze_encoder`, `init_from`.
STAGE_KEYS = [
    "num_epochs",
    "loaders",
    "criterion",
    "optimizer",
    "scheduler",
    "callbacks",
    "data",
    "freeze_encoder",
    "init_from",
]


def check_config(config: Mapping[str, Any]) -> None:
    """Top-level and stage keys; keys starting with `_` are free (YAML anchors live there)."""
    check_keys([k for k in config if not str(k).startswith("_")], TOP_LEVEL_KEYS, "the config")
    stages = config.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise PodiumError("the config needs a `stages:` mapping with at least one stage")
    for name, stage in stages.items():
        if not isinstance(stage, Mapping):
            raise PodiumError(f"stages/{name} must be a mapping, got {type(stage).__name__}")
        keys = [k for k in stage if not str(k).startswith("_")]
        check_keys(keys, STAGE_KEYS, f"stages/{name}")
        check_stage_values(name, stage)
    check_logger_config(config)  # secrets in loggers: refused before configs/ is written
    check_logdir(config)
