"""Which logged keys are curves, which are per-class values, which are timings.

Catalyst and podium's metric callbacks log a metric `X` beside `X/_macro`, `X/_micro`,
`X/_weighted` (aggregates), `X/<class name>` (per class or group: `dice/person`, `r2/ATL`) and,
for losses, `X/mean` and `X/std`. Throughput (`images_per_s`, `time/...`) goes to the timings.
"""

from typing import Dict, List, Sequence

__all__ = ["TIMING_KEYS", "is_timing", "curve_keys", "families"]

TIMING_KEYS = ("images_per_s", "time/loader_s", "time/data_s", "time/model_s", "time/data_fraction")
_NOT_CURVES = ("step", "momentum")


def is_timing(key: str) -> bool:
    return key == "images_per_s" or key.startswith("time/")


def _member(key: str, present) -> bool:
    """`X/<anything>` while `X` itself is logged."""
    base, slash, _ = key.rpartition("/")
    return bool(slash) and base in present


def curve_keys(keys: Sequence[str]) -> List[str]:
    """One figure each: loss first, the other loss terms, the metrics, `lr` last."""
    present = set(keys)
    chosen = [
        k
        for k in dict.fromkeys(keys)
        if k not in _NOT_CURVES and not is_timing(k) and not _member(k, present)
    ]
    return sorted(
        chosen, key=lambda k: (k != "loss", not k.startswith("loss"), k in ("lr", "grad_norm"), k)
    )


def families(keys: Sequence[str]) -> Dict[str, Dict[str, List[str]]]:
    """`{X: {"classes": [names], "aggregates": ["_macro", ...]}}` for every X with members
    other than `mean` / `std` (losses are not families)."""
    present = set(keys)
    out: Dict[str, Dict[str, List[str]]] = {}
    for key in keys:
        if not _member(key, present):
            continue
        base, _, suffix = key.rpartition("/")
        if suffix in ("mean", "std"):
            continue
        entry = out.setdefault(base, {"classes": [], "aggregates": []})
        entry["aggregates" if suffix.startswith("_") else "classes"].append(suffix)
    return out
