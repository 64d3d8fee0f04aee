"""Mask files of a prediction run: probabilities → 0/255 or class-index PNGs; extra writers.

Written atomically through `podium.files` (temp file beside the target, then a rename), like
every output: a failed write leaves the mask of an earlier prediction whole.

Extra writers (the inference YAML's `writers:` list, each `{_target_: dotted.Class, …}`) turn
each image's probabilities into outputs of their own, e.g. instance label maps
(`podium.tasks.instances.predict.InstanceWriter`). A writer has:

    key                                  its block in metrics.json
    open(out, root)                      once per process: output folder, data folder
    add(name, probabilities) -> dict     per image (C×H×W float32 at the original size): its
                                         files, and per-image numbers (or None)
    summary(per_image) -> dict           rank 0, after the per-image dicts of every rank are
                                         merged: dataset-level numbers from them
"""

from pathlib import Path
from typing import Any, List, Mapping, Sequence

import numpy as np

from podium.errors import PodiumError
from podium.files import write_image
from podium.targets import call_target, check_call_params, check_targets, resolve_target

__all__ = ["to_mask", "write_mask", "check_writers", "build_writers"]


def to_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """C×H×W probabilities → H×W mask: 0/255 for one class, class indices otherwise."""
    if probability.shape[0] == 1:
        return ((probability[0] > threshold) * 255).astype(np.uint8)
    return probability.argmax(axis=0).astype(np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    write_image(path, mask)


def check_writers(specs) -> List[dict]:
    """The `writers:` list checked without building anything: every `_target_` imports, keys fit."""
    if specs is None:
        return []
    if not isinstance(specs, Sequence) or isinstance(specs, (str, bytes)):
        raise PodiumError(f"writers must be a list of {{_target_: ...}} blocks, got {specs!r}")
    checked = []
    for index, spec in enumerate(specs):
        where = f"writers[{index}]"
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise PodiumError(
                f"{where} must be a mapping with _target_: dotted.Class, got {spec!r}"
            )
        check_targets(dict(spec), where)  # PODIUM_SAFE_TARGETS applies here too
        factory = resolve_target(spec["_target_"], where)
        check_call_params(factory, {k: v for k, v in spec.items() if k != "_target_"}, where)
        checked.append(dict(spec))
    return checked


def build_writers(specs) -> List[Any]:
    """The writer objects of a checked `writers:` list."""
    return [call_target(spec, f"writers[{i}]") for i, spec in enumerate(specs or [])]
