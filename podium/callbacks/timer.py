"""ThroughputCallback: images per second of each loader, and where the time goes.

    callbacks:
      throughput:
        _target_: podium.callbacks.timer.ThroughputCallback
        data_time: true                # also time/data_s, time/model_s, time/data_fraction

Logged into the loader's metrics, hence the epoch metrics, the CSV (`train.csv`,
`valid.csv`) and TensorBoard:

- `images_per_s`: samples of the loader (all processes under DDP) / wall-clock seconds from
  the loader's start to its end (data loading, forward, loss, backward, optimizer step and the
  other callbacks included);
- `time/loader_s`: those seconds;
- with `data_time`: `time/data_s` (waiting for the DataLoader: from the end of one batch to
  the start of the next, the first batch's wait included), `time/model_s` (everything else:
  from the start of a batch to its end, forward to optimizer step) and `time/data_fraction` =
  data / (data + model). A large data fraction means the loaders, not the model, limit speed.

The callback runs last at batch end and at loader end (order after every Catalyst order), so
the optimizer step and metric callbacks count as model time. On CUDA, `synchronize: true`
waits for the GPU before each reading (exact split, slightly slower); without it, queued GPU
work is counted where the CPU next waits for it.
"""

import time
from typing import Optional, Sequence

import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

__all__ = ["ThroughputCallback"]


class ThroughputCallback(Callback):
    """Logs `{prefix}images_per_s` (and data vs model time) for every loader.

    Args:
        loaders: loader names to time (default: all).
        data_time: also log `time/data_s`, `time/model_s`, `time/data_fraction`.
        prefix: prepended to every key.
        synchronize: call `torch.cuda.synchronize()` before each reading (CUDA only).
    """

    def __init__(
        self,
        loaders: Optional[Sequence[str]] = None,
        data_time: bool = True,
        prefix: str = "",
        synchronize: bool = False,
    ):
        super().__init__(order=CallbackOrder.ExternalExtra + 100, node=CallbackNode.all)
        self.loaders = (
            [loaders]
            if isinstance(loaders, str)
            else (list(loaders) if loaders is not None else None)
        )
        self.data_time = bool(data_time)
        self.prefix = prefix or ""
        self.synchronize = bool(synchronize)
        self._reset()

    def _reset(self) -> None:
        self._start = None
        self._last = None
        self._batch_start = None
        self._data = 0.0
        self._model = 0.0
        self._samples = 0

    def _now(self) -> float:
        if self.synchronize and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _active(self, runner) -> bool:
        return self.loaders is None or runner.loader_key in self.loaders

    def on_loader_start(self, runner) -> None:
        self._reset()
        if self._active(runner):
            self._start = self._last = self._now()

    def on_batch_start(self, runner) -> None:
        if self._start is None:
            return
        now = self._now()
        self._data += now - self._last
        self._batch_start = now

    def on_batch_end(self, runner) -> None:
        if self._start is None:
            return
        now = self._now()
        self._model += now - self._batch_start
        self._last = now
        world = int(getattr(runner.engine, "world_size", 1) or 1)
        self._samples += int(runner.batch_size) * max(1, world)

    def on_loader_end(self, runner) -> None:
        if self._start is None:
            return
        elapsed = max(self._now() - self._start, 1e-9)
        metrics = {
            "images_per_s": self._samples / elapsed,
            "time/loader_s": elapsed,
        }
        if self.data_time:
            busy = self._data + self._model
            metrics.update(
                {
                    "time/data_s": self._data,
                    "time/model_s": self._model,
                    "time/data_fraction": self._data / busy if busy > 0 else 0.0,
                }
            )
        runner.loader_metrics.update({f"{self.prefix}{k}": v for k, v in metrics.items()})
        self._reset()
