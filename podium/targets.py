"""`_target_` blocks of podium's own config sections: resolved, checked and *called*.

hydra-slayer (behind Catalyst's registry) turns a `_target_` that names a function into a
`functools.partial` instead of calling it, and reports a misspelled argument as a bare
TypeError from deep inside object creation. podium's blocks (`model`, `data`) go through
`call_target` instead: the callable is found, every key is checked against its signature
(with a "did you mean"), and it is called. A factory that picks the real builder by a key of
its block (`podium.models.create_model` by `name`) carries `resolve_block(block) -> (builder,
the block's keys for it)`, and those keys are checked against the builder.
"""

import importlib
import inspect
from copy import deepcopy
from typing import Any, Callable, List, Mapping, Optional

import hydra_slayer

from podium.errors import PodiumError, did_you_mean

__all__ = [
    "resolve_target",
    "accepted_keys",
    "check_call_params",
    "call_target",
    "check_targets",
    "moved_attribute",
    "SAFE_TARGET_PACKAGES",
]


def resolve_target(target: Any, where: str) -> Callable:
    """The callable a `_target_` names, or a PodiumError saying it cannot be found."""
    if not isinstance(target, str) or not target:
        raise PodiumError(f"{where} needs `_target_: full.dotted.path` (got {target!r})")
    try:
        return hydra_slayer.get_factory(target)
    except Exception as error:  # LookupError / ImportError / AttributeError variants
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PodiumError(f'{where}/_target_ "{target}" cannot be imported: {detail}') from None


def moved_attribute(package: str, name: str, moved: Mapping[str, str]) -> Any:
    """`package.name` of a name that moved into `podium/tasks`, taken from its old module (which
    re-exports it): a package's `__getattr__`, so that `_target_: podium.losses.CenterNetFocalLoss`
    of an older config still resolves, without the package importing the task up front."""
    if name not in moved:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(moved[name]), name)


def accepted_keys(factory: Callable) -> Optional[List[str]]:
    """Keyword names the factory accepts; None when it takes **kwargs or has no signature."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_call_params(factory: Callable, params: Mapping[str, Any], where: str) -> None:
    """Reject keys the factory does not accept (unless it takes **kwargs)."""
    accepted = accepted_keys(factory)
    if accepted is None:
        return
    for key in params:
        if key not in accepted:
            name = getattr(factory, "__qualname__", str(factory))
            raise PodiumError(
                f'unknown key "{key}" in {where}{did_you_mean(key, accepted)}; '
                f"{name} accepts: {', '.join(accepted)}"
            )


def call_target(params: Mapping[str, Any], where: str) -> Any:
    """Call `params["_target_"]` with the other keys, after checking them."""
    if not isinstance(params, Mapping) or "_target_" not in params:
        got = f"keys {', '.join(map(str, params))}" if isinstance(params, Mapping) else repr(params)
        raise PodiumError(
            f"the config needs `{where}: {{_target_: full.dotted.name, ...}}` (got {got}); "
            f"expected a block whose _target_ names the builder to call"
        )
    params = deepcopy(dict(params))
    factory = resolve_target(params.pop("_target_"), where)
    check_call_params(factory, params, where)
    return factory(**params)


# With PODIUM_SAFE_TARGETS=1 a config may only name callables of these packages.
SAFE_TARGET_PACKAGES = (
    "torch",
    "catalyst",
    "timm",
    "pytorch_toolbelt",
    "albumentations",
    "podium",
    "optuna",
)


def safe_targets_only() -> bool:
    import os

    return os.environ.get("PODIUM_SAFE_TARGETS", "0") not in ("", "0")


# Keys Catalyst's config runner takes out of an optimizer block before calling its `_target_`.
CATALYST_OPTIMIZER_KEYS = ("lr_linear_scaling", "layerwise_params", "no_bias_weight_decay")


def check_targets(config: Any, where: str = "") -> None:
    """Every `_target_` in a config resolves (else: the key path and a "did you mean"), and
    its block's keys are arguments it accepts (else: the key and a "did you mean" — Catalyst
    would fail only when the stage starts, with a traceback, after writing the run directory).

    A config is code: `_target_` may name any importable callable. With PODIUM_SAFE_TARGETS=1
    only the packages in SAFE_TARGET_PACKAGES (and Catalyst's registered short names) are
    allowed, and the check runs before anything is imported.
    """
    if isinstance(config, Mapping):
        if "_target_" in config:
            factory = _check_target(
                config["_target_"], f"{where}/_target_" if where else "_target_"
            )
            if not where.startswith("loggers/"):  # podium.loggers checks these (secrets first)
                _check_block_keys(factory, config, where or "the config")
        for key, value in config.items():
            if key != "_target_":
                check_targets(value, f"{where}/{key}" if where else str(key))
    elif isinstance(config, (list, tuple)):
        for index, value in enumerate(config):
            check_targets(value, f"{where}[{index}]")


def _check_target(target: Any, path: str) -> None:
    from catalyst.registry import REGISTRY

    if not isinstance(target, str) or not target:
        raise PodiumError(f"{path} must be a full dotted name, got {target!r}")
    dotted = "." in target
    if safe_targets_only() and dotted and target.split(".")[0] not in SAFE_TARGET_PACKAGES:
        raise PodiumError(
            f'{path} "{target}" is not allowed with PODIUM_SAFE_TARGETS=1 (allowed '
            f"packages: {', '.join(SAFE_TARGET_PACKAGES)}); configs are code: "
            "run this one only if you trust it"
        )
    try:  # dotted names are imported; short ones are Catalyst's registered names
        return REGISTRY.get(target)
    except Exception:  # LookupError / ImportError / AttributeError, depending on what is wrong
        raise PodiumError(f'{path} "{target}" cannot be imported{_suggestion(target)}') from None


def _check_block_keys(factory: Any, block: Mapping, where: str) -> None:
    """Keys of a `_target_` block (but `_`-keys, hydra-slayer's and Catalyst's) are accepted."""
    import torch

    keys = [k for k in block if not str(k).startswith("_")]
    resolve = getattr(factory, "resolve_block", None)
    if callable(resolve):  # a factory that picks its builder by a key (create_model: `name`)
        factory, params = resolve(block)
        keys = list(params)
    if isinstance(factory, type) and issubclass(factory, torch.optim.Optimizer):
        keys = [k for k in keys if k not in CATALYST_OPTIMIZER_KEYS]
    check_call_params(factory, dict.fromkeys(keys), where)


def _suggestion(target: str) -> str:
    import importlib

    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return f" (no module {module_name!r})" if module_name else ""
    hint = did_you_mean(name, [n for n in dir(module) if not n.startswith("_")])
    return hint or f" (no {name!r} in {module_name})"
