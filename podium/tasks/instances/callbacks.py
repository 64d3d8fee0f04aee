"""Object F1 and DSB2018 AP during training (valid loaders), reduced exactly under DDP.

    callbacks:
      instances:
        _target_: podium.tasks.instances.callbacks.InstanceMetricsCallback
        input_key: probs            # sigmoid(logits): body, border, contact
        target_key: instances       # the ids InstanceTargetDataset yields
        loaders: valid              # watershed on every train batch would only cost time
        seed_threshold: 0.7
        mask_threshold: 0.5

Logs `object_f1` and `ap` (podium.tasks.instances.metrics) on the loaders it runs on.
"""

from typing import Sequence, Union

from podium.callbacks.metrics import AccumulatorCallback
from podium.tasks.instances.metrics import InstanceScores
from podium.tasks.instances.watershed import InstanceSettings

__all__ = ["InstanceMetricsCallback"]


class InstanceMetricsCallback(AccumulatorCallback):
    """Probabilities → instance labels (watershed.py) → `object_f1`, `ap` at loader end."""

    def __init__(
        self,
        input_key: str = "probs",
        target_key: str = "instances",
        loaders: Union[str, Sequence[str]] = "valid",
        method: str = "watershed",
        seed_threshold: float = 0.7,
        mask_threshold: float = 0.5,
        min_size: int = 0,
        channel: int = 0,
        prefix: str = "",
    ):
        settings = InstanceSettings(method, seed_threshold, mask_threshold, min_size, channel)
        super().__init__(InstanceScores(settings), input_key, target_key, prefix=prefix)
        self.loaders = [loaders] if isinstance(loaders, str) else list(loaders)

    def _active(self, runner) -> bool:
        return runner.loader_key in self.loaders

    def on_loader_start(self, runner) -> None:
        if self._active(runner):
            super().on_loader_start(runner)

    def on_batch_end(self, runner) -> None:
        if self._active(runner):
            super().on_batch_end(runner)

    def on_loader_end(self, runner) -> None:
        if self._active(runner):
            super().on_loader_end(runner)
