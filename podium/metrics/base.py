"""Accumulators: metric state = a dict of float64 tensors of sums and counts.

Every metric in `podium.metrics` is an `Accumulator`:

- `update(...)` adds a batch's sums/counts to `state` (on the CPU, float64: integer counts are
  exact up to 2**53, so summing them across ranks loses nothing);
- `reduced()` returns a copy whose state is summed over all DDP ranks with one
  `torch.distributed.all_reduce` (identity outside DDP), so `reduced().compute()` on every rank
  equals `compute()` of one process that saw all the data;
- `compute()` turns the state into the metric values (a nested dict of floats / numpy arrays),
  `compute_key_value(prefix)` into the flat `{"name": float}` dict callbacks log;
- `merge(other)` adds another accumulator's state (e.g. per-fold → overall).

Accumulators whose layout is only known from the data (the number of classes when not given,
the groups of `R2Score`) agree on one layout across ranks before the sum (`_layout` /
`_conform`, exchanged with `all_gather_object`).
"""

import copy
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from podium.metrics._distributed import all_gather_object, all_reduce_sum, world_size

__all__ = ["Accumulator", "as_tensor"]


def as_tensor(value: Any) -> torch.Tensor:
    """A detached tensor from a tensor, numpy array or (nested) list."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(np.asarray(value))


class Accumulator:
    """Base class: `state` is a dict of float64 CPU tensors that sum over batches and ranks."""

    state: Optional[Dict[str, torch.Tensor]]
    #: True when the state's shapes are fixed at construction (no layout exchange needed)
    fixed_layout: bool = False

    def __init__(self) -> None:
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything added so far."""
        self.state = None

    def _init_state(self, **layout: Any) -> Dict[str, torch.Tensor]:
        """Zero state for a layout (subclasses)."""
        raise NotImplementedError

    def _add(self, name: str, value: torch.Tensor) -> None:
        self.state[name] += value.detach().to(device="cpu", dtype=torch.float64)

    # ------------------------------------------------------------------ layout across ranks
    def _layout(self) -> Any:
        """A picklable description of the state's shape (None while nothing was added)."""
        return None if self.state is None else {k: tuple(v.shape) for k, v in self.state.items()}

    def _conform(self, layouts: List[Any]) -> None:
        """Bring `state` to the layout all ranks agree on (default: identical shapes)."""
        known = [layout for layout in layouts if layout is not None]
        if not known:
            return
        if any(layout != known[0] for layout in known):
            raise ValueError(f"{type(self).__name__}: state layouts differ across ranks: {known}")
        if self.state is None:
            self.state = {
                k: torch.zeros(shape, dtype=torch.float64) for k, shape in known[0].items()
            }

    # ------------------------------------------------------------------ public
    def reduced(self) -> "Accumulator":
        """A copy with the state summed over every DDP rank (a plain copy outside DDP).

        Collective: under DDP every rank must call it (callbacks do, at loader end).
        """
        other = copy.deepcopy(self)
        if world_size() > 1:
            if not other.fixed_layout:
                other._conform(all_gather_object(other._layout()))
            if other.state is not None:
                other.state = all_reduce_sum(other.state)
        return other

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add `other`'s state to this one (same metric, same settings); returns self."""
        if other.state is None:
            return self
        self._conform([self._layout(), other._layout()])
        other = copy.deepcopy(other)
        other._conform([self._layout(), other._layout()])
        for name, value in other.state.items():
            self.state[name] += value
        return self

    def compute(self) -> Dict[str, Any]:
        raise NotImplementedError

    def compute_key_value(self, prefix: str = "") -> Dict[str, float]:
        raise NotImplementedError

    @property
    def empty(self) -> bool:
        """True while nothing was added."""
        return self.state is None
