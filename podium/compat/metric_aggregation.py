"""`MetricAggregationCallback(mode="weighted_mean")`: the weighted mean it promises.

Catalyst 21.12 computes the weight sum as `sum(metrics.items())`, a TypeError in the
constructor, so the documented mode cannot be used at all. Past that line it would still be
wrong: `_get_metrics_list` applies the weights only for "weighted_sum", so "weighted_mean" would
return the plain sum of the metrics. The fix normalises the weights and runs the callback as
"weighted_sum": Σ (wᵢ / Σw) · mᵢ. Weights that sum to zero are a one-line error.
"""

from typing import Mapping

from catalyst.callbacks.metric_aggregation import MetricAggregationCallback

from podium.errors import PodiumError

__all__ = ["apply", "original_init"]

original_init = MetricAggregationCallback.__init__


def _init(self, metric_key, metrics=None, mode="mean", scope="batch", multiplier=1.0):
    if mode == "weighted_mean" and isinstance(metrics, Mapping):
        total = sum(float(weight) for weight in metrics.values())
        if total == 0:
            raise PodiumError(
                f"MetricAggregationCallback {metric_key}: the weights of `metrics` sum to 0 "
                f"({dict(metrics)}); expected weights with a non-zero sum for mode weighted_mean"
            )
        metrics, mode = (
            {key: float(weight) / total for key, weight in metrics.items()},
            "weighted_sum",
        )
    original_init(self, metric_key, metrics=metrics, mode=mode, scope=scope, multiplier=multiplier)


def apply() -> None:
    MetricAggregationCallback.__init__ = _init
