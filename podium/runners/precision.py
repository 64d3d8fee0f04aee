"""PrecisionForward: a supervised runner's forward pass in its engine's precision.

With podium's engines (`engine.precision`, podium.models.precision.Precision) the model runs
under autocast on inputs in the engine's memory format, and its outputs come back as float32:
the loss and metric callbacks that follow compute in fp32. Catalyst's own `engine.autocast()`
(around the whole batch, callbacks and backward included) stays a no-op for these engines.
"""

from podium.models.precision import Precision

__all__ = ["PrecisionForward"]


class PrecisionForward:
    """Mixin before Catalyst's (Supervised)Runner: `forward` through `engine.precision`."""

    def forward(self, batch, **kwargs):
        precision: Precision = getattr(self.engine, "precision", None)
        if precision is None or precision.is_default:
            return super().forward(batch, **kwargs)
        keys = [self._input_key] if isinstance(self._input_key, str) else self._input_key
        return precision.forward(super().forward, precision.inputs(batch, keys), **kwargs)
