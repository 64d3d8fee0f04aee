"""`OptunaPruningCallback` in a multi-stage config (frozen encoder, then unfrozen).

Catalyst 21.12 reports each epoch's score at `step=runner.stage_epoch_step`, which starts again
at 1 in every stage: optuna ignores the second stage's reports ("step 1 is already reported")
and the pruner compares its epochs with the first stage's. Each stage also builds a new
callback, so the trial's score (`trial.best_score`, what `catalyst-dl tune` optimises) was the
best epoch of the last stage only. The fix reports at `runner.global_epoch_step` and keeps the
trial's best over every stage. A single-stage config reports exactly as before.
"""

import optuna
from catalyst.callbacks.optuna import OptunaPruningCallback

__all__ = ["apply", "original_on_epoch_end"]

original_on_epoch_end = OptunaPruningCallback.on_epoch_end


def _on_epoch_end(self, runner) -> None:
    score = runner.epoch_metrics[self.loader_key][self.metric_key]
    best = getattr(self.trial, "best_score", None)  # the trial's best so far, any stage
    self.best_score = score if best is None or self.is_better(score, best) else best
    self.trial.best_score = self.best_score
    self.trial.report(score, step=runner.global_epoch_step)
    if self.trial.should_prune():
        raise optuna.TrialPruned(
            f"Trial was pruned at epoch {runner.global_epoch_step} "
            f"(stage {runner.stage_key}, epoch {runner.stage_epoch_step})."
        )


def apply() -> None:
    OptunaPruningCallback.on_epoch_end = _on_epoch_end
