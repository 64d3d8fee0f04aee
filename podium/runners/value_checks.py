"""Values Catalyst reads from a config without checking them: one clear line instead of a
traceback from deep inside a training loop.

Catalyst passes `num_epochs`, the loader sizes and the optimizer's `lr` straight on: a string
there fails as `'<' not supported between 'int' and 'str'` at the first epoch, after the run
directory was written (e.g. a quoted `lr: "1e-3"`, or an override `--.../lr=1e-3:str`).
`args/logdir` must be a folder that can be made.
"""

from typing import Any, Iterator, Mapping, Tuple

from podium.errors import PodiumError, check_output_folder

__all__ = ["check_stage_values", "check_logdir"]


def _whole(value: Any, key: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PodiumError(f"{key} must be a whole number >= {minimum}, got {value!r}")


def _positive_number(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (a string: write the number unquoted in YAML, or override it with :float)"
            except ValueError:
                pass
        raise PodiumError(f"{key} must be a number > 0, got {value!r}{hint}")


def _optimizer_blocks(block: Any, where: str) -> Iterator[Tuple[str, Mapping]]:
    """The optimizer block, or each optimizer of a `_key_value` block."""
    if not isinstance(block, Mapping):
        return
    if "_target_" in block:
        yield where, block
    elif block.get("_key_value"):
        for name, inner in block.items():
            if not str(name).startswith("_") and isinstance(inner, Mapping):
                yield f"{where}/{name}", inner


def check_stage_values(name: str, stage: Mapping[str, Any]) -> None:
    """num_epochs, loaders (batch_size, num_workers), freeze_encoder, callbacks, optimizer lr."""
    where = f"stages/{name}"
    if "num_epochs" in stage:
        _whole(stage["num_epochs"], f"{where}/num_epochs", 0)
    if "freeze_encoder" in stage and not isinstance(stage["freeze_encoder"], bool):
        raise PodiumError(
            f"{where}/freeze_encoder must be true or false, got {stage['freeze_encoder']!r}"
        )
    loaders = stage.get("loaders")
    if loaders is None:
        raise PodiumError(
            f"{where} has no `loaders:` block; expected e.g. loaders: "
            "{batch_size: 8, num_workers: 0}"
        )
    if loaders is not None:
        if not isinstance(loaders, Mapping):
            raise PodiumError(
                f"{where}/loaders must be a mapping like {{batch_size: 8}}, got {loaders!r}"
            )
        blocks = [(f"{where}/loaders", loaders)]
        for loader, params in (loaders.get("loaders_params") or {}).items():
            if isinstance(params, Mapping):
                blocks.append((f"{where}/loaders/loaders_params/{loader}", params))
        for path, params in blocks:
            for key, minimum in (("batch_size", 1), ("num_workers", 0)):
                if key in params:
                    _whole(params[key], f"{path}/{key}", minimum)
    callbacks = stage.get("callbacks") or {}
    if not isinstance(callbacks, Mapping):
        raise PodiumError(
            f"{where}/callbacks must be a mapping of name: {{_target_: ...}}, got {callbacks!r}"
        )
    for key, params in callbacks.items():
        if not isinstance(params, Mapping) or "_target_" not in params:
            raise PodiumError(
                f"{where}/callbacks/{key} must be a block like {{_target_: catalyst.callbacks."
                f"CheckpointCallback, ...}}, got {params!r}"
            )
    for path, optimizer in _optimizer_blocks(stage.get("optimizer"), f"{where}/optimizer"):
        if "lr" in optimizer:
            _positive_number(optimizer["lr"], f"{path}/lr")


def check_logdir(config: Mapping[str, Any]) -> None:
    """args/logdir is a folder, or can be created (checked before Catalyst writes into it)."""
    args = config.get("args")
    logdir = args.get("logdir") if isinstance(args, Mapping) else None
    if logdir is None:
        return
    if not isinstance(logdir, str) or not logdir:
        raise PodiumError(f"args/logdir must be a folder path, got {logdir!r}")
    check_output_folder(logdir, "args/logdir")
