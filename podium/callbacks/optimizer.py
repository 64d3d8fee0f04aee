"""OptimizerCallback: gradient accumulation that averages, and clipping once per step.

    callbacks:
      optimizer:
        _target_: podium.callbacks.optimizer.OptimizerCallback
        metric_key: loss
        accumulation_steps: 4          # one optimizer step per 4 batches (effective batch ×4)
        grad_clip: {mode: norm, max: 1.0}   # or {mode: value, max: 0.5}; norm_type: 2 default

A drop-in replacement for `catalyst.callbacks.OptimizerCallback` (same arguments, plus
`grad_clip`) that fixes three things Catalyst 21.12 gets wrong:

1. the loss is divided by the number of batches in the accumulation window, so accumulating
   k batches of size b takes the same step as one batch of size k·b (Catalyst sums the k
   gradients: with SGD the step is k times too large);
2. gradients are clipped once, on the accumulated gradient, right before the optimizer step
   (Catalyst clips after every backward, i.e. each partial sum);
3. the last window of a loader is stepped even when the number of batches is not a multiple of
   `accumulation_steps` (its loss is divided by its own size), and the count restarts with every
   loader (Catalyst leaves the remainder's gradients to leak into the next epoch's first step).

Logged: `grad_norm` (total L2 norm of the gradients — before clipping — at each optimizer
step) in the batch metrics, and `grad_norm` (mean over the loader's steps) plus `lr` /
`momentum` in the loader metrics, so they land in the CSV / TensorBoard logs (with
`model_key` / `optimizer_key`, Catalyst's `gradient/<key>/…`, `lr/<key>` naming is kept).
`grad_clip_fn` / `grad_clip_params` (Catalyst's) still work and are now applied once per step.
`runner.optimizer_stepped` says, after each batch (and at a train loader's end), whether the
optimizer really stepped: what `EMACallback` counts its updates by.
"""

import math
from typing import Callable, Dict, Optional, Union

import torch
from catalyst.callbacks.optimizer import OptimizerCallback as _CatalystOptimizerCallback

from podium.errors import PodiumError
from podium.validation import check_int, check_number

__all__ = ["OptimizerCallback", "grad_norm", "is_step_batch", "optimizer_steps"]

_CLIP_MODES = ("norm", "value")


def optimizer_steps(num_batches: int, accumulation_steps: int = 1) -> int:
    """Optimizer steps in one pass over a loader of `num_batches`: ceil(n / k)."""
    return int(math.ceil(int(num_batches) / max(1, int(accumulation_steps))))


def is_step_batch(batch_index: int, num_batches: int, accumulation_steps: int = 1) -> bool:
    """Whether batch `batch_index` (0-based) of a loader ends an accumulation window."""
    k = max(1, int(accumulation_steps))
    return (batch_index + 1) % k == 0 or batch_index + 1 >= num_batches


def grad_norm(parameters, norm_type: float = 2.0) -> float:
    """Total norm of the gradients of `parameters` (those with a gradient), as a float."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        return max(float(g.abs().max()) for g in grads)
    norms = torch.stack([torch.linalg.vector_norm(g, norm_type).float() for g in grads])
    return float(torch.linalg.vector_norm(norms, norm_type))


class OptimizerCallback(_CatalystOptimizerCallback):
    """Backward, accumulation (averaged), clipping (once per step), optimizer step.

    Args:
        metric_key: the loss in `runner.batch_metrics` (usually `loss`).
        model_key, optimizer_key: as in Catalyst (dicts of models / optimizers).
        accumulation_steps: batches per optimizer step (the loss is divided by the window size).
        grad_clip: `{mode: norm, max: M}` (`clip_grad_norm_`, optional `norm_type`, default 2)
            or `{mode: value, max: M}` (`clip_grad_value_`); applied to the accumulated
            gradient right before the step.
        grad_clip_fn, grad_clip_params: Catalyst's form (a callable or registry name applied
            to `model.parameters()`); also applied once per step. Not together with grad_clip.
        log_grad_norm: log `grad_norm` (costs one pass over the gradients per step).
    """

    def __init__(
        self,
        metric_key: str = "loss",
        model_key: str = None,
        optimizer_key: str = None,
        accumulation_steps: int = 1,
        grad_clip_fn: Union[str, Callable] = None,
        grad_clip_params: Dict = None,
        grad_clip: Optional[Dict] = None,
        log_grad_norm: bool = True,
    ):
        check_int(accumulation_steps, "OptimizerCallback: accumulation_steps", 1)
        if grad_clip is not None and grad_clip_fn is not None:
            raise PodiumError("OptimizerCallback: give grad_clip or grad_clip_fn, not both")
        super().__init__(
            metric_key=metric_key,
            model_key=model_key,
            optimizer_key=optimizer_key,
            accumulation_steps=accumulation_steps,
            grad_clip_fn=grad_clip_fn,
            grad_clip_params=grad_clip_params,
        )
        self.grad_clip = self._check_grad_clip(grad_clip)
        self.log_grad_norm = bool(log_grad_norm)
        self._grad_norm_key = (
            "grad_norm" if self._prefix_gradient == "gradient" else f"{self._prefix_gradient}/norm"
        )
        self._batch_index = 0
        self._pending = False
        self._norms = []
        self.stepped = False  # whether the current batch ended with an optimizer step

    @staticmethod
    def _check_grad_clip(grad_clip: Optional[Dict]) -> Optional[Dict]:
        if grad_clip is None:
            return None
        if not isinstance(grad_clip, dict) or "max" not in grad_clip:
            raise PodiumError(
                f"OptimizerCallback: grad_clip must be {{mode: norm|value, max: number}}, "
                f"got {grad_clip!r}"
            )
        unknown = set(grad_clip) - {"mode", "max", "norm_type"}
        if unknown:
            raise PodiumError(
                f"OptimizerCallback: unknown key(s) {sorted(unknown)} in grad_clip; "
                f"expected mode, max, norm_type"
            )
        mode = grad_clip.get("mode", "norm")
        if mode not in _CLIP_MODES:
            raise PodiumError(
                f'OptimizerCallback: grad_clip mode must be "norm" or "value", not {mode!r}'
            )
        value = check_number(grad_clip["max"], "OptimizerCallback: grad_clip max", "> 0", "> 0")
        return {"mode": mode, "max": value, "norm_type": float(grad_clip.get("norm_type", 2.0))}

    # -- events ----------------------------------------------------------------------------
    def on_loader_start(self, runner) -> None:
        self._batch_index = 0
        self._norms = []
        self.stepped = False
        if runner.is_train_loader:
            # start clean: nothing accumulated elsewhere (an earlier loader, an lr finder)
            runner.engine.zero_grad(None, self.model, self.optimizer)
            self._pending = False

    def on_batch_end(self, runner) -> None:
        self.stepped = False
        if runner.is_train_loader:
            index, num_batches = self._batch_index, runner.loader_batch_len
            self._batch_index += 1
            k = self.accumulation_steps
            window_start = (index // k) * k
            window_size = min(k, num_batches - window_start) if num_batches else k
            loss = runner.batch_metrics[self.metric_key]
            scaled = loss / window_size if window_size > 1 else loss
            runner.engine.backward_loss(scaled, self.model, self.optimizer)
            self._pending = True
            if is_step_batch(index, num_batches, k):
                self._step(runner, loss)
            runner.optimizer_stepped = self.stepped

        runner.batch_metrics.update(self._get_lr_momentum_stats())
        if hasattr(runner.engine, "scaler"):
            scaler_state = runner.engine.scaler.state_dict()
            runner.batch_metrics[f"{self._prefix_gradient}/scale"] = scaler_state["scale"] or 1.0
            runner.batch_metrics[f"{self._prefix_gradient}/growth_tracker"] = scaler_state[
                "_growth_tracker"
            ]

    def _step(self, runner, loss) -> None:
        engine = runner.engine
        if hasattr(engine, "scaler") and (
            self.grad_clip is not None or self.grad_clip_fn is not None or self.log_grad_norm
        ):
            engine.scaler.unscale_(self.optimizer)  # true gradients for the norm and clipping
        if self.log_grad_norm:
            norm_type = self.grad_clip["norm_type"] if self.grad_clip else 2.0
            norm = grad_norm(self.model.parameters(), norm_type)
            runner.batch_metrics[self._grad_norm_key] = norm
            self._norms.append(norm)
        if self.grad_clip is not None:
            if self.grad_clip["mode"] == "norm":
                torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), self.grad_clip["max"], self.grad_clip["norm_type"]
                )
            else:
                torch.nn.utils.clip_grad_value_(self.model.parameters(), self.grad_clip["max"])
        elif self.grad_clip_fn is not None:
            self.grad_clip_fn(self.model.parameters())
        engine.optimizer_step(loss, self.model, self.optimizer)
        engine.zero_grad(loss, self.model, self.optimizer)
        self._pending = False
        self.stepped = True

    def on_loader_end(self, runner) -> None:
        if runner.is_train_loader and self._pending:
            # the loader stopped early (need_early_stop, a batch limit): step what is there
            self._step(runner, None)
            runner.optimizer_stepped = True
        if self._norms and runner.is_train_loader:
            runner.loader_metrics[self._grad_norm_key] = sum(self._norms) / len(self._norms)
        super().on_loader_end(runner)
