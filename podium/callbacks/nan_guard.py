"""NanGuardCallback: stop at the first non-finite loss, saying where and in which term.

    callbacks:
      nan_guard:
        _target_: podium.callbacks.nan_guard.NanGuardCallback
        batch_keys: [image, logits]     # optional: also say which of these are non-finite

After the loss terms are computed and summed and before the optimizer step (so the weights are
never updated with a NaN), every `loss*` key of `runner.batch_metrics` (`loss`, `loss_bce`,
`loss_dice`, ...) is checked; the first non-finite one stops the run with a `PodiumError`,
printed by podium's excepthook as one line:

    podium: error: non-finite loss in stage train, epoch 3 of 40, loader train, batch 7 of 15:
    loss_dice=nan, loss=nan (finite: loss_bce=0.6931); samples: img_004, img_017;
    logits: non-finite in samples img_017

(without a `name` key in the batch, the samples are named by their index in the batch).

Under fp16 (an engine with an enabled GradScaler) an overflow is not an error: gradients too
large for float16 only make the scaler skip that step (counted by the OptimizerCallback as
`skipped_steps`) and lower its scale. The guard still stops on a non-finite loss (the loss is
computed in float32, so it is a real one, and the message says so), and when the scale has
fallen below `min_scale`: then the gradients are non-finite at every scale, not an overflow.
"""

import math
from typing import List, Optional, Sequence

import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

from podium.callbacks.optimizer import enabled_scaler
from podium.errors import PodiumError
from podium.validation import check_number

__all__ = ["NanGuardCallback"]

_MAX_NAMES = 8


def _value(value) -> Optional[float]:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return float("nan") if not bool(torch.isfinite(value.detach()).all()) else 0.0
        return float(value.detach())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_NAMES])
    more = len(items) - _MAX_NAMES
    return f"{shown}, ... ({more} more)" if more > 0 else shown


class NanGuardCallback(Callback):
    """Raises PodiumError when a `loss*` batch metric is NaN or infinite.

    Args:
        prefix: which batch metrics are checked (every key starting with it; default `loss`).
        loaders: loader names to check (default: all; a NaN valid loss also means trouble).
        name_key: batch key of the sample names (listed in the message when present).
        batch_keys: batch keys (inputs, outputs) reported as finite or not, per sample.
        min_scale: fp16 only: stop when the GradScaler's scale falls below this.
    """

    def __init__(
        self,
        prefix: str = "loss",
        loaders: Optional[Sequence[str]] = None,
        name_key: str = "name",
        batch_keys: Optional[Sequence[str]] = None,
        min_scale: float = 2.0**-10,
    ):
        # after the loss terms (metric, 20) and their sum (metric aggregation, 40),
        # before the optimizer callback (60) steps
        super().__init__(order=CallbackOrder.MetricAggregation + 10, node=CallbackNode.all)
        self.prefix = str(prefix)
        self.loaders = (
            [loaders]
            if isinstance(loaders, str)
            else (list(loaders) if loaders is not None else None)
        )
        self.name_key = name_key
        self.batch_keys = list(batch_keys or [])
        self.min_scale = check_number(min_scale, "NanGuardCallback: min_scale", "> 0", "> 0")

    def on_batch_end(self, runner) -> None:
        if self.loaders is not None and runner.loader_key not in self.loaders:
            return
        values = {}
        for key, value in runner.batch_metrics.items():
            if str(key).startswith(self.prefix):
                number = _value(value)
                if number is not None:
                    values[str(key)] = number
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise PodiumError(self._message(runner, values, bad))
        scaler = enabled_scaler(getattr(runner, "engine", None))
        if scaler is not None and runner.is_train_loader and scaler.get_scale() < self.min_scale:
            raise PodiumError(
                f"fp16: the gradient scale fell to {scaler.get_scale():.3g} (below min_scale "
                f"{self.min_scale:.3g}) in {self._where(runner)}: the gradients are non-finite "
                f"at every scale, not an fp16 overflow; check the model and data, or train with "
                f"engine/precision bf16 or fp32"
            )

    def _sample_names(self, runner) -> List[str]:
        batch = runner.batch
        names = batch.get(self.name_key) if isinstance(batch, dict) else None
        if names is None:
            return [f"#{i}" for i in range(int(getattr(runner, "batch_size", 0) or 0))]
        return [str(n) for n in names]

    def _where(self, runner) -> str:
        where = (
            f"stage {runner.stage_key}, epoch {runner.stage_epoch_step} of "
            f"{runner.stage_epoch_len}, loader {runner.loader_key}, "
            f"batch {runner.loader_batch_step} of {runner.loader_batch_len}"
        )
        engine = getattr(runner, "engine", None)
        if engine is not None and getattr(engine, "is_ddp", False):
            where += f" (rank {engine.rank})"
        return where

    def _message(self, runner, values, bad) -> str:
        where = self._where(runner)
        terms = ", ".join(f"{k}={v}" for k, v in bad.items())
        good = {k: v for k, v in values.items() if k not in bad}
        message = f"non-finite loss in {where}: {terms}"
        if good:
            message += " (finite: " + ", ".join(f"{k}={v:.4g}" for k, v in good.items()) + ")"
        if enabled_scaler(getattr(runner, "engine", None)) is not None:
            message += " (computed in float32: a real non-finite loss, not an fp16 overflow)"
        names = self._sample_names(runner)
        if self.name_key and isinstance(runner.batch, dict) and self.name_key in runner.batch:
            message += f"; samples: {_names(names)}"
        for key in self.batch_keys:
            tensor = runner.batch.get(key) if isinstance(runner.batch, dict) else None
            if not isinstance(tensor, torch.Tensor):
                continue
            tensor = tensor.detach()
            if tensor.ndim == 0 or not tensor.is_floating_point():
                continue
            finite = torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(dim=1).cpu()
            rows = [i for i, ok in enumerate(finite.tolist()) if not ok]
            if rows:
                labels = [names[i] if i < len(names) else f"#{i}" for i in rows]
                message += f"; {key}: non-finite in samples {_names(labels)}"
            else:
                message += f"; {key}: finite"
        return message
