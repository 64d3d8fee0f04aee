"""Checks of the `loggers:` block, run with the other config checks before anything is written.

`catalyst-dl run` copies the YAML files and the resolved config into `<logdir>/configs/`
before the first logger exists, so a secret in a logger block must be refused there, at
config time: podium never scrubs a config file after the fact. podium's own loggers are also
built once here (they connect to nothing in `__init__`), so a wrong mode, a misspelled key or
a missing environment variable fails at once with one line.
"""

import re
from typing import Any, Mapping, Optional

from podium.errors import PodiumError
from podium.loggers._params import is_secret_key
from podium.targets import check_call_params, resolve_target

__all__ = ["check_logger_config", "find_secret", "BROKEN_CATALYST_LOGGERS"]

# user:password@ (or a bare token@) in a URI
_URI_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]+@", re.IGNORECASE)
_ENVIRONMENT_HINT = (
    "set it in the environment instead: NEPTUNE_API_TOKEN (and NEPTUNE_PROJECT) for neptune; "
    "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for MLflow"
)
# catalyst 21.12's NeptuneLogger calls neptune.init, removed in neptune 1.0
BROKEN_CATALYST_LOGGERS = (
    "NeptuneLogger",
    "catalyst.loggers.NeptuneLogger",
    "catalyst.loggers.neptune.NeptuneLogger",
    "catalyst.dl.NeptuneLogger",
)


def find_secret(value: Any, where: str) -> Optional[str]:
    """The config path of the first credential in `value` (a secret-looking key with a value,
    or a URI with `user:password@`), or None. Never returns the secret itself."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}/{key}"
            if is_secret_key(key) and item not in (None, ""):
                return path
            found = find_secret(item, path)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_secret(item, f"{where}/{index}")
            if found:
                return found
    elif isinstance(value, str) and _URI_CREDENTIALS.match(value.strip()):
        return f"{where} (credentials in a URI)"
    return None


def check_logger_config(config: Mapping[str, Any]) -> None:
    """Refuse secrets in `loggers:` and build podium's loggers once to validate them."""
    from podium.loggers._base import TrackingLogger

    loggers = config.get("loggers")
    if loggers is None:
        return
    if not isinstance(loggers, Mapping):
        raise PodiumError(f"loggers must be a mapping of name: {{_target_: ...}}, got {loggers!r}")
    for name, params in loggers.items():
        where = f"loggers/{name}"
        secret = find_secret(params, where)
        if secret:
            raise PodiumError(
                f"{secret}: secrets do not belong in a config (it is saved into the run directory "
                f"and uploaded to the tracker); remove it and {_ENVIRONMENT_HINT}"
            )
        if not isinstance(params, Mapping):
            continue  # null disables a logger of an earlier config file
        target = params.get("_target_")
        if target in BROKEN_CATALYST_LOGGERS:
            raise PodiumError(
                f"{where}/_target_: {target} is broken on neptune >= 1.0 (it calls the removed "
                "neptune.init); use podium.loggers.NeptuneLogger"
            )
        if not (isinstance(target, str) and target.startswith("podium.")):
            continue
        factory = resolve_target(target, where)
        if isinstance(factory, type) and issubclass(factory, TrackingLogger):
            arguments = {k: v for k, v in params.items() if k != "_target_"}
            for key in arguments:
                if key in factory.refused_keys:
                    raise PodiumError(
                        f"{where}/{key}: remove it from the config; {factory.refused_keys[key]}"
                    )
            check_call_params(factory, arguments, where)
            try:
                factory(**arguments)  # validates values and environment; connects nothing
            except PodiumError as error:
                message = str(error)
                prefix = f"{factory.__name__} (loggers:)"
                raise PodiumError(
                    message.replace(prefix, where, 1) if message.startswith(prefix) else message
                ) from None
