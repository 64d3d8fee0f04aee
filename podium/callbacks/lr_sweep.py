"""`LRSweepCallback`: the learning-rate range test of `podium lr-find` (podium/cli/lr_find.py),
one LR per train batch, the loss recorded after it."""

import math
from typing import Dict, List, Optional, Sequence

import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder, IOptimizerCallback

__all__ = ["LRSweepCallback"]


class LRSweepCallback(Callback):
    """Sets the LR of every parameter group before each train batch, records the loss
    after it, and stops the stage after the last LR or when the loss diverges."""

    def __init__(
        self,
        lrs: Sequence[float],
        beta: float = 0.98,
        divergence: float = 4.0,
        loss_key: Optional[str] = None,
    ):
        super().__init__(order=CallbackOrder.External, node=CallbackNode.all)
        self.lrs = list(lrs)
        self.beta = beta
        self.divergence = divergence
        self.loss_key = loss_key
        self.records: List[Dict[str, float]] = []
        self.stop_reason = ""
        self._average = 0.0
        self._best = math.inf

    def on_stage_start(self, runner) -> None:
        if self.loss_key is None:  # the loss the OptimizerCallback minimises
            for callback in runner.callbacks.values():
                if isinstance(callback, IOptimizerCallback) and hasattr(callback, "metric_key"):
                    self.loss_key = callback.metric_key
                    break
            else:
                self.loss_key = getattr(runner, "_loss_key", None) or "loss"

    def _optimizers(self, runner):
        optimizer = runner.optimizer
        return list(optimizer.values()) if isinstance(optimizer, dict) else [optimizer]

    @property
    def done(self) -> bool:
        return bool(self.stop_reason)

    def on_batch_start(self, runner) -> None:
        if not runner.is_train_loader or self.done:
            return
        lr = self.lrs[len(self.records)]
        for optimizer in self._optimizers(runner):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_batch_end(self, runner) -> None:
        if not runner.is_train_loader or self.done:
            return
        step = len(self.records)
        loss = float(torch.as_tensor(runner.batch_metrics[self.loss_key]).detach())
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta ** (step + 1))
        self.records.append(
            {"step": step, "lr": self.lrs[step], "loss": loss, "smoothed_loss": smoothed}
        )
        if not math.isfinite(smoothed):
            self.stop_reason = f"loss is {loss} at step {step}"
        elif step > 0 and smoothed > self.divergence * self._best:
            self.stop_reason = f"smoothed loss > {self.divergence:g}× its best at step {step}"
        elif len(self.records) == len(self.lrs):
            self.stop_reason = f"all {len(self.lrs)} steps done"
        self._best = min(self._best, smoothed) if math.isfinite(smoothed) else self._best
        if self.done:
            runner.need_early_stop = True  # ends this loader...

    def on_epoch_end(self, runner) -> None:
        if self.done:
            runner.need_early_stop = True  # ...and the stage
