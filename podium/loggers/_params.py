"""The resolved config as tracking parameters: plain types, flat keys, no secrets.

Catalyst hands loggers the config as nested OrderedDicts (`runner.hparams`); tracking servers
want plain nested dicts (neptune) or flat `a/b/c` string keys (MLflow). Keys that look like
credentials (`api_token`, `password`, `*_secret`, ...) are replaced by `***` on the way out,
so a secret that slipped into some other block of a config is never uploaded.
"""

import json
import re
from typing import Any, Dict, Mapping

__all__ = ["SCRUBBED", "is_secret_key", "to_plain", "scrubbed", "flatten"]

SCRUBBED = "***"
_SECRET = re.compile(r"(^|_)(token|password|passwd|secret|api_?key|credentials?)($|_)")


def is_secret_key(key: Any) -> bool:
    """True for key names that hold credentials: api_token, password, aws_secret, api_key, ...
    (not for `input_key`, `loss_key` or `tokenizer`)."""
    return bool(_SECRET.search(str(key).lower().replace("-", "_")))


def to_plain(value: Any) -> Any:
    """OrderedDicts → dicts with str keys, tuples → lists, other objects → str."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def scrubbed(value: Any) -> Any:
    """`to_plain(value)` with the value of every secret-looking key replaced by `***`."""
    if isinstance(value, Mapping):
        return {str(k): SCRUBBED if is_secret_key(k) else scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v) for v in value]
    return to_plain(value)


def flatten(config: Mapping[str, Any], max_length: int = 6000) -> Dict[str, str]:
    """{"model/encoder": "resnet18", "stages/train/optimizer/lr": "0.0005", ...}, scrubbed.

    Mappings nest with `/`; lists become compact JSON (a transform pipeline is one parameter,
    not dozens); values longer than `max_length` (MLflow's limit) are cut, ending with `...`.
    """
    flat: Dict[str, str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                visit(f"{prefix}/{key}" if prefix else str(key), item)
            return
        if isinstance(value, (list, dict)):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        if len(text) > max_length:
            text = text[: max_length - 3] + "..."
        flat[prefix] = text

    visit("", scrubbed(config))
    return flat
