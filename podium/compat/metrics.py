"""Detach before turning batch metrics into Python floats.

The loss that CriterionCallback (and MetricAggregationCallback) store in `runner.batch_metrics`
still carries its graph; `FunctionalBatchMetric.update` (the loss average), TensorboardLogger's
batch scalars and TqdmCallback call `float()` on it, which makes torch warn "Converting a tensor
with requires_grad=True to a scalar may lead to unexpected behavior". The values stay tensors
with grad for the backward pass; only the copies handed to meters/loggers are detached.
"""

from typing import Any, Dict

import torch

from catalyst.callbacks.misc import TqdmCallback
from catalyst.core.runner import IRunner
from catalyst.metrics._functional_metric import FunctionalBatchMetric

__all__ = ["detached", "apply", "ORIGINALS"]

ORIGINALS = {
    (FunctionalBatchMetric, "update"): FunctionalBatchMetric.update,
    (IRunner, "log_metrics"): IRunner.log_metrics,
    (TqdmCallback, "on_batch_end"): TqdmCallback.on_batch_end,
}


def detached(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """A shallow copy of `metrics` with tensors detached."""
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}


def _update(self, batch_size: int, *args, **kwargs) -> torch.Tensor:
    value = self.metric_fn(*args, **kwargs)
    scalar = value.detach() if isinstance(value, torch.Tensor) else value
    self.additive_metric.update(float(scalar), batch_size)
    return value


def _log_metrics(self, *args, **kwargs) -> None:
    if isinstance(kwargs.get("metrics"), dict):
        kwargs["metrics"] = detached(kwargs["metrics"])
    for logger in self.loggers.values():
        logger.log_metrics(*args, **kwargs, **self._log_defaults)


def _tqdm_on_batch_end(self, runner: "IRunner") -> None:
    metrics = {k: float(v) for k, v in detached(runner.batch_metrics).items()}
    self.tqdm.set_postfix(
        **{k: f"{v:3.3f}" if v > 1e-3 else f"{v:1.3e}" for k, v in sorted(metrics.items())}
    )
    self.tqdm.update()


def apply() -> None:
    for (owner, name), fn in zip(ORIGINALS, (_update, _log_metrics, _tqdm_on_batch_end)):
        setattr(owner, name, fn)
