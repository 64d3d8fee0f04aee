"""`_target_` blocks of podium's own config sections: resolved, checked and *called*.

hydra-slayer (behind Catalyst's registry) turns a `_target_` that names a function into a
`functools.partial` instead of calling it, and reports a misspelled argument as a bare
TypeError from deep inside object creation. podium's blocks (`model`, `data`) go through
`call_target` instead: the callable is found, every key is checked against its signature
(with a "did you mean"), and it is called.
"""
import inspect
from copy import deepcopy
from typing import Any, Callable, List, Mapping, Optional

import hydra_slayer

from podium.errors import PodiumError, did_you_mean

__all__ = ["resolve_target", "accepted_keys", "check_call_params", "call_target"]


def resolve_target(target: Any, where: str) -> Callable:
    """The callable a `_target_` names, or a PodiumError saying it cannot be found."""
    if not isinstance(target, str) or not target:
        raise PodiumError(f"{where} needs `_target_: full.dotted.path` (got {target!r})")
    try:
        return hydra_slayer.get_factory(target)
    except Exception as error:  # LookupError / ImportError / AttributeError variants
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PodiumError(f'{where}/_target_ "{target}" cannot be imported: {detail}') from None


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
        raise PodiumError(f"the config needs `{where}: {{_target_: ...}}`")
    params = deepcopy(dict(params))
    factory = resolve_target(params.pop("_target_"), where)
    check_call_params(factory, params, where)
    return factory(**params)
