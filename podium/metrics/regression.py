"""R2 (coefficient of determination) from sums, overall and averaged per group.

R2 = 1 - SS_res / SS_tot with SS_res = Σ(y - ŷ)², SS_tot = Σy² - (Σy)² / n: the state holds
n, Σy, Σy², Σ(y - ŷ)² (float64) per group and output, so it sums exactly across DDP ranks and
the reduced R2 equals the single-process one.

- **Groups** (`group` in `update`, one key per sample, e.g. the city): R2 is computed per group,
  then averaged over the groups that received data — the Overhead Geopose Challenge metric.
  Without groups everything is one group. Group keys are any hashable values (str / int); they
  need not be known in advance (ranks agree on the union before the sum).
- **Outputs**: `multioutput="flatten"` (default) pools every value of a sample (pixels of a
  height map, all coordinates) into one R2 = sklearn `r2_score(y.ravel(), p.ravel())`;
  `"uniform"` treats dim 1 as outputs, computes one R2 per output and averages them = sklearn
  `r2_score(Y, P)` with its default `multioutput="uniform_average"` on (samples, outputs).
- **Constant target** (SS_tot == 0, or below 1e-12 · Σy² — rounding of a constant): R2 = 1.0
  if the predictions are perfect (SS_res == 0) else 0.0, as sklearn's `force_finite=True`.
- Values whose target equals `ignore_value` (NaN allowed) are left out.
"""

from typing import Any, Dict, Hashable, List, Optional, Sequence

import numpy as np
import torch

from podium.errors import PodiumError
from podium.metrics.base import Accumulator, as_tensor
from podium.metrics.segmentation import _valid

__all__ = ["R2Score", "r2_from_sums"]

MULTIOUTPUT = ("flatten", "uniform")
FIELDS = ("n", "sum_y", "sum_y2", "sum_res2")
CONSTANT_TOLERANCE = 1e-12


def r2_from_sums(n, sum_y, sum_y2, sum_res2) -> np.ndarray:
    """R2 from sums (any matching array shape); NaN where n == 0."""
    n, sum_y, sum_y2, sum_res2 = (
        np.asarray(x, dtype=np.float64) for x in (n, sum_y, sum_y2, sum_res2)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_tot = sum_y2 - sum_y * sum_y / np.where(n > 0, n, 1)
        constant = ss_tot <= CONSTANT_TOLERANCE * np.abs(sum_y2)
        r2 = 1.0 - sum_res2 / np.where(constant, 1.0, ss_tot)
        r2 = np.where(constant, np.where(sum_res2 == 0, 1.0, 0.0), r2)
    return np.where(n > 0, r2, np.nan)


def _sort_key(key: Hashable):
    return (type(key).__name__, key)


class R2Score(Accumulator):
    """R2 accumulator; `compute()` gives the group mean, the pooled value and each group's."""

    def __init__(self, multioutput: str = "flatten", ignore_value: Optional[float] = None):
        if multioutput not in MULTIOUTPUT:
            raise PodiumError(
                f'unknown multioutput "{multioutput}"; expected one of: {", ".join(MULTIOUTPUT)}'
            )
        self.multioutput = multioutput
        self.ignore_value = ignore_value
        super().__init__()

    def reset(self) -> None:
        self.state = None
        self.groups: List[Hashable] = []
        self.num_outputs: Optional[int] = None

    # ---------------------------------------------------------------- layout
    def _layout(self) -> Any:
        return None if self.state is None else (tuple(self.groups), self.num_outputs)

    def _conform(self, layouts: List[Any]) -> None:
        known = [layout for layout in layouts if layout is not None]
        if not known:
            return
        outputs = {num_outputs for _, num_outputs in known}
        if len(outputs) > 1:
            raise ValueError(f"R2Score: number of outputs differs across ranks: {sorted(outputs)}")
        groups = sorted({g for keys, _ in known for g in keys}, key=_sort_key)
        num_outputs = outputs.pop()
        old = self.state or {}
        index = {g: i for i, g in enumerate(self.groups)}
        self.state = {}
        for name in FIELDS:
            value = torch.zeros(len(groups), num_outputs, dtype=torch.float64)
            for row, g in enumerate(groups):
                if g in index:
                    value[row] = old[name][index[g]]
            self.state[name] = value
        self.groups, self.num_outputs = groups, num_outputs

    def _rows(self, keys: Sequence[Hashable]) -> torch.Tensor:
        index = {g: i for i, g in enumerate(self.groups)}
        new = [g for g in dict.fromkeys(keys) if g not in index]
        if new:
            self._conform(
                [self._layout() or ((), self.num_outputs), (tuple(new), self.num_outputs)]
            )
            index = {g: i for i, g in enumerate(self.groups)}
        return torch.tensor([index[g] for g in keys], dtype=torch.long)

    # ---------------------------------------------------------------- update
    def update(
        self, outputs: torch.Tensor, targets: torch.Tensor, group: Optional[Any] = None
    ) -> None:
        """outputs, targets: (B, ...) of equal size; group: None or one key per sample (B,)."""
        outputs, targets = as_tensor(outputs), as_tensor(targets).to(as_tensor(outputs).device)
        if outputs.numel() != targets.numel():
            raise PodiumError(
                f"R2: outputs {tuple(outputs.shape)} and "
                f"targets {tuple(targets.shape)} differ in size"
            )
        batch = targets.shape[0] if targets.ndim else 1
        if self.multioutput == "uniform" and targets.ndim >= 2:
            shape = (batch, targets.shape[1], -1)
        else:
            shape = (batch, 1, -1)
        y = targets.reshape(shape).to(torch.float64)
        p = outputs.reshape(shape).to(torch.float64)
        valid = _valid(y, self.ignore_value)
        y = torch.where(valid, y, 0.0)
        p = torch.where(valid, p, 0.0)
        per_sample = {  # (B, K)
            "n": valid.sum(dim=-1).to(torch.float64),
            "sum_y": y.sum(dim=-1),
            "sum_y2": (y * y).sum(dim=-1),
            "sum_res2": ((y - p) ** 2).sum(dim=-1),
        }
        num_outputs = y.shape[1]
        if self.num_outputs is None:
            self.num_outputs = num_outputs
        elif num_outputs != self.num_outputs:
            raise PodiumError(f"R2: {num_outputs} outputs, earlier batches had {self.num_outputs}")
        if group is None:
            keys = [None] * batch
        else:
            keys = (
                group.detach().cpu().reshape(-1).tolist()
                if isinstance(group, torch.Tensor)
                else list(np.asarray(group).reshape(-1).tolist())
            )
            if len(keys) != batch:
                raise PodiumError(f"R2: {len(keys)} group keys for a batch of {batch}")
        rows = self._rows(keys)
        for name, value in per_sample.items():
            self.state[name].index_add_(0, rows, value.cpu())

    # ---------------------------------------------------------------- compute
    def compute(self) -> Dict[str, Any]:
        """{"r2": mean over groups of the group R2, "pooled": R2 of all data together,
        "groups": {key: R2}, "per_output": (K,) pooled R2 per output}; NaN while empty."""
        nan = float("nan")
        if self.state is None:
            return {"r2": nan, "pooled": nan, "groups": {}, "per_output": np.array([])}
        s = {k: v.numpy() for k, v in self.state.items()}
        per_group_output = r2_from_sums(s["n"], s["sum_y"], s["sum_y2"], s["sum_res2"])  # (G, K)
        pooled_output = r2_from_sums(*(s[f].sum(axis=0) for f in FIELDS))  # (K,)
        group_r2 = np.array([_mean(row) for row in per_group_output])
        groups = {g: float(v) for g, v in zip(self.groups, group_r2)}
        return {
            "r2": _mean(group_r2),
            "pooled": _mean(pooled_output),
            "groups": groups,
            "per_output": pooled_output,
        }

    def compute_key_value(self, prefix: str = "", log_groups: bool = True) -> Dict[str, float]:
        """`{prefix}r2`; with groups also `{prefix}r2/_pooled` and `{prefix}r2/<group>`."""
        result = self.compute()
        out = {f"{prefix}r2": result["r2"]}
        grouped = [g for g in result["groups"] if g is not None]
        if grouped:
            out[f"{prefix}r2/_pooled"] = result["pooled"]
            if log_groups:
                for g in grouped:
                    out[f"{prefix}r2/{g}"] = result["groups"][g]
        return out


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
