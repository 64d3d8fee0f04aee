"""Config files as YAML text for the report, with every secret-looking value masked.

podium refuses credentials in configs at run time (`podium.loggers.checks`), so a run's config
should hold none; the report masks them anyway, with the same rule the trackers use
(`api_token`, `password`, `*_secret`, ... → `***`) plus `user:password@` in URIs. The
environment Catalyst saves (`configs/_environment.json`) is never read.
"""

import json
import re
from pathlib import Path
from typing import Any, Optional

import yaml

from podium.loggers._params import SCRUBBED, scrubbed

__all__ = ["masked", "config_yaml", "file_as_yaml"]

_URI_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def masked(value: Any) -> Any:
    """Plain data with secret-looking keys and URI credentials replaced by `***`."""
    return _mask_uris(scrubbed(value))


def _mask_uris(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask_uris(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_uris(item) for item in value]
    if isinstance(value, str):
        return _URI_CREDENTIALS.sub(lambda m: f"{m.group(1)}{SCRUBBED}@", value)
    return value


def config_yaml(config: Any) -> str:
    """The (masked) config as block YAML, keys in their original order."""
    return yaml.safe_dump(
        masked(config), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


def file_as_yaml(path: Path) -> Optional[str]:
    """A JSON or YAML file re-dumped as masked YAML; None if it does not parse."""
    try:
        text = Path(path).read_text()
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return config_yaml(data)
