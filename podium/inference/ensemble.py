"""Averaging the probabilities of several models or folds into one.

    average_probabilities([p1, p2, p3], weights=[2, 1, 1], method="geometric")
    Ensemble.from_config({"method": "power", "power": 2.0})([p1, p2], weights=None)

Inputs are numpy arrays or torch tensors of one shape (C×H×W or B×C×H×W) holding probabilities
in [0, 1]; the result is a torch tensor (on the first tensor's device) if any input is one,
else a numpy array. Weights (default: equal) must be >= 0 and are divided by their sum; a
model of weight 0 is left out. With w the normalised weights:

- `mean`:      Σ w_i p_i                         the usual choice.
- `geometric`: exp(Σ w_i log max(p_i, eps))      one confident "no" pulls the pixel down hard;
               eps (1e-7) keeps a model's exact 0 from turning into -inf / NaN.
- `power`:     Σ w_i p_i ** power                Kaggle's power averaging / temperature
               sharpening: power > 1 lets confident models count more. The result is not on
               the inputs' probability scale (p = 0.7 everywhere gives 0.49 for power 2), so
               tune thresholds on the ensembled maps (`podium tune-postprocess`).

No re-normalisation by default. For sigmoid outputs (binary, multi-label) channels are
independent, so dividing by their sum would be wrong; for softmax outputs the geometric and
power means no longer sum to 1 over the classes, but the argmax — all a multi-class mask
uses — is unchanged by dividing every class of a pixel by the same sum. The function cannot
tell the two apart, so re-normalising is opt-in: `normalize=True` divides by the sum over the
channel axis, for softmax outputs whose probabilities are thresholded or written to disk.
"""

from typing import Mapping, Optional, Sequence

import numpy as np

from podium.errors import PodiumError, check_keys
from podium.validation import check_choice, check_number, is_number

__all__ = ["METHODS", "Ensemble", "average_presence", "average_probabilities"]

METHODS = ("mean", "geometric", "power")
CONFIG_KEYS = ("method", "power", "normalize")
EPS = 1e-7


def average_probabilities(
    probabilities: Sequence,
    weights: Optional[Sequence[float]] = None,
    method: str = "mean",
    power: float = 1.0,
    normalize: bool = False,
    eps: float = EPS,
):
    """Weighted mean / geometric mean / mean of p**power of several probability maps."""
    method, power = _check_method(method, power)
    arrays = _as_arrays(list(probabilities))
    weights = _check_weights(weights, len(arrays))
    pairs = [(w / sum(weights), p) for w, p in zip(weights, arrays) if w > 0]
    if method == "mean":
        result = _weighted_sum(pairs)
    elif method == "power":
        result = _weighted_sum([(w, p**power) for w, p in pairs])
    else:
        log = _backend(arrays[0]).log
        result = _backend(arrays[0]).exp(
            _weighted_sum([(w, log(p.clip(min=eps))) for w, p in pairs])
        )
    if normalize:
        if result.shape[-3] < 2:
            raise PodiumError(
                "ensemble normalize: true needs softmax outputs (2 or more channels); got 1 channel"
            )
        total = result.sum(-3)[..., None, :, :]  # same call for numpy (axis) and torch (dim)
        result = result / total.clip(min=eps)
    return result


class Ensemble:
    """`callable(list_of_probabilities, weights=None)` configured from an `ensemble:` block."""

    def __init__(self, method: str = "mean", power: float = 1.0, normalize: bool = False):
        self.method, self.power = _check_method(method, power)
        if not isinstance(normalize, (bool, np.bool_)):
            raise PodiumError(f"ensemble normalize must be true or false, got {normalize!r}")
        self.normalize = bool(normalize)

    @classmethod
    def from_config(cls, config: Optional[Mapping]) -> "Ensemble":
        """Keys: `method` (mean | geometric | power), `power` (method power), `normalize`."""
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise PodiumError(
                f"ensemble must be a mapping with keys {', '.join(CONFIG_KEYS)}, got {config!r}"
            )
        check_keys(config.keys(), CONFIG_KEYS, "ensemble")
        return cls(
            config.get("method", "mean"), config.get("power", 1.0), config.get("normalize", False)
        )

    def __call__(self, probabilities: Sequence, weights: Optional[Sequence[float]] = None):
        return average_probabilities(
            probabilities, weights, self.method, self.power, self.normalize
        )

    def __repr__(self) -> str:
        extra = f", power={self.power}" if self.method == "power" else ""
        return f"Ensemble(method={self.method!r}{extra}, normalize={self.normalize})"


def average_presence(per_model: Sequence[Optional[np.ndarray]], weights) -> Optional[np.ndarray]:
    """The weighted mean presence of the models that have a presence head (None: no model)."""
    found = [(p, w) for p, w in zip(per_model, weights) if p is not None]
    if not found:
        return None
    return np.average(np.stack([p for p, _ in found]), axis=0, weights=[w for _, w in found])


def _check_method(method, power):
    check_choice(method, METHODS, "ensemble method")
    check_number(power, "ensemble power", "> 0", finite=True)
    if method != "power" and power != 1:
        raise PodiumError(
            f"ensemble power {power} is only used by method power, but method is {method}; "
            "set method: power or drop power"
        )
    return method, float(power)


def _check_weights(weights, count: int) -> list:
    if weights is None:
        return [1.0] * count
    weights = list(weights)
    if len(weights) != count:
        raise PodiumError(
            f"ensemble weights list {len(weights)} values {weights} for {count} models; "
            "expected one weight per model"
        )
    for w in weights:
        if not is_number(w, finite=True) or w < 0:
            raise PodiumError(f"ensemble weights must be numbers >= 0, got {weights}")
    if sum(weights) <= 0:
        raise PodiumError(
            f"ensemble weights {weights} sum to 0; expected at least one positive weight"
        )
    return [float(w) for w in weights]


def _is_tensor(array) -> bool:
    return type(array).__module__.startswith("torch")


def _backend(array):
    if _is_tensor(array):
        import torch

        return torch
    return np


def _as_arrays(arrays: list) -> list:
    """Same-shape float arrays in [0, 1]; all torch (on the first tensor's device) if any is."""
    if not arrays:
        raise PodiumError("ensemble needs at least one probability map; got none")
    tensor = next((p for p in arrays if _is_tensor(p)), None)
    if tensor is not None:
        import torch

        arrays = [torch.as_tensor(p, device=tensor.device) for p in arrays]
    else:
        arrays = [np.asarray(p) for p in arrays]
    shape = tuple(arrays[0].shape)
    if len(shape) not in (3, 4):
        raise PodiumError(f"ensemble inputs must be C×H×W or B×C×H×W, got shape {shape}")
    for i, p in enumerate(arrays):
        if tuple(p.shape) != shape:
            raise PodiumError(
                f"ensemble inputs differ in shape: model 1 gives {shape}, "
                f"model {i + 1} gives {tuple(p.shape)}; expected one shape"
            )
        floating = (
            p.is_floating_point() if tensor is not None else np.issubdtype(p.dtype, np.floating)
        )
        if not floating:
            raise PodiumError(
                f"ensemble input {i + 1} has dtype {p.dtype}; "
                "expected float probabilities in [0, 1]"
            )
        if p.shape and min(p.shape) > 0:
            low, high = float(p.min()), float(p.max())
            if not (0.0 <= low and high <= 1.0):
                raise PodiumError(
                    f"ensemble input {i + 1} has values {low:g}..{high:g}; "
                    "expected probabilities in [0, 1] (logits? apply sigmoid/softmax first)"
                )
    return arrays


def _weighted_sum(pairs):
    total = None
    for weight, array in pairs:
        total = array * weight if total is None else total + array * weight
    return total
