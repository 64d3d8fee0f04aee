"""State of Catalyst's stateful callbacks, for resuming a run mid-stage.

Catalyst 21.12 callbacks that count across epochs keep their counters in plain attributes and
have no `state_dict()`, and its own resume restores none of them: a resumed stage forgets how
many epochs Dice has stalled (`EarlyStoppingCallback` waits `patience` epochs more than an
uninterrupted run would) and which score was the best (`CheckpointCallback` overwrites
`best.pth` with the first resumed epoch, however bad). These two functions read and write
those attributes; podium's `CheckpointCallback` saves them into every full checkpoint and the
runner puts them back.

Covered: `IEpochMetricHandlerCallback` (the best score; `EarlyStoppingCallback` also its
count of epochs without improvement) and `CheckpointCallback` (best score and its top-N list).
Other Catalyst callbacks keep nothing from one epoch to the next (metrics and timers restart
at each loader; scheduler state lives in `runner.scheduler`, saved by Catalyst).
"""

from typing import Any, Dict, Optional

from catalyst.callbacks.checkpoint import CheckpointCallback
from catalyst.callbacks.misc import EarlyStoppingCallback, IEpochMetricHandlerCallback

__all__ = ["catalyst_callback_state", "load_catalyst_callback_state"]


def _number(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _records(records) -> list:
    """CheckpointCallback's top-N list as plain data (loadable with weights_only=True)."""
    plain = []
    for score, path, stage, epoch, metrics in records:
        metrics = {
            str(loader): {str(k): float(v) for k, v in values.items()}
            for loader, values in dict(metrics).items()
            if isinstance(values, dict)
        }
        plain.append((float(score), str(path), str(stage), int(epoch), metrics))
    return plain


def catalyst_callback_state(callback) -> Optional[Dict[str, Any]]:
    """The counters of a stateful Catalyst callback, or None if it keeps none."""
    if isinstance(callback, CheckpointCallback):
        return {
            "best_score": _number(callback.best_score),
            "top_best_metrics": _records(callback.top_best_metrics),
        }
    if isinstance(callback, IEpochMetricHandlerCallback):
        state = {"best_score": _number(callback.best_score)}
        if isinstance(callback, EarlyStoppingCallback):
            state["num_no_improvement_epochs"] = int(callback.num_no_improvement_epochs)
        return state
    return None


def load_catalyst_callback_state(callback, state: Dict[str, Any]) -> bool:
    """Put back what `catalyst_callback_state` returned; False if the callback keeps none."""
    if isinstance(callback, CheckpointCallback):
        callback.best_score = state["best_score"]
        callback.top_best_metrics = [tuple(record) for record in state["top_best_metrics"]]
        return True
    if isinstance(callback, IEpochMetricHandlerCallback):
        callback.best_score = state["best_score"]
        if isinstance(callback, EarlyStoppingCallback):
            callback.num_no_improvement_epochs = int(state["num_no_improvement_epochs"])
        return True
    return False
