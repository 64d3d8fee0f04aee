"""EMACallback: an exponential moving average of the model's weights (timm's ModelEmaV3).

    callbacks:
      ema:
        _target_: podium.callbacks.EMACallback
        decay: 0.999             # in (0, 1); the ceiling the warm-up climbs to
        warmup: true             # decay(step) = min(decay, 1 - (1 + step / gamma) ** -power)
        validate: true           # valid loaders (metrics, early stopping, best.pth) use the EMA

The average is timm's `ModelEmaV3` (same decay, warm-up and update formula, parameters and
buffers), updated once per real optimizer step: after the batch where the optimizer stepped
(`runner.optimizer_stepped`, set by `podium.callbacks.OptimizerCallback`), so an accumulation
batch or an fp16 step the GradScaler skipped does not count. Without that attribute (Catalyst's
own OptimizerCallback) the step batches are those of `is_step_batch` with its
`accumulation_steps`. Under DDP the parameters are the same on every rank, the BatchNorm
statistics are not (each rank's batches): at the end of each train loader every rank takes
rank 0's EMA buffers, so validation and the checkpoint (rank 0 writes it) see one average.

`validate: true` (the default) runs every loader but the train ones on the EMA copy: the valid
metrics, early stopping and the best checkpoint are then those of the weights that
`podium predict` uses, rather than scores of one set and predictions of another. The copy is
put in place of `runner.model` for the loader and the training model comes back at its end, on
an exception or an interrupt: the training weights themselves are never written to.

Every checkpoint holds the EMA weights under `ema_state_dict` (`podium.checkpoints.EMA_KEY`) as
well as the training weights; the callback's state (the weights and its step count) goes into
the resume state, so `--resume` continues the same average. A new stage starts a new average
from the weights it starts with.
"""

from typing import Any, Dict, Mapping, Optional

import torch
from catalyst.callbacks.optimizer import IOptimizerCallback
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder
from timm.utils.model_ema import ModelEmaV3

from podium.callbacks.optimizer import is_step_batch
from podium.checkpoints import unwrap
from podium.errors import PodiumError
from podium.validation import check_bool, check_int, check_number

__all__ = ["EMACallback", "broadcast_buffers", "ema_weights"]


class EMACallback(Callback):
    """Keeps timm's ModelEmaV3 of the model, updated after every real optimizer step.

    Args:
        decay: EMA decay in (0, 1) (with `warmup`, the most it reaches).
        warmup: decay warm-up `1 - (1 + step / warmup_gamma) ** -warmup_power` (timm's).
        warmup_gamma, warmup_power: the warm-up's shape (timm's defaults 1 and 2/3).
        min_decay: the least decay during the warm-up, in [0, decay].
        update_after_step: optimizer steps before the average starts (it copies until then).
        validate: valid loaders run on the EMA weights (metrics, early stopping, best.pth).
    """

    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = True,
        warmup_gamma: float = 1.0,
        warmup_power: float = 2 / 3,
        min_decay: float = 0.0,
        update_after_step: int = 0,
        validate: bool = True,
    ):
        super().__init__(order=CallbackOrder.Optimizer + 1, node=CallbackNode.all)
        self.decay = check_number(decay, "EMACallback: decay", "(0, 1)")
        self.warmup = check_bool(warmup, "EMACallback: warmup")
        self.warmup_gamma = check_number(warmup_gamma, "EMACallback: warmup_gamma", "> 0")
        self.warmup_power = check_number(warmup_power, "EMACallback: warmup_power", "> 0")
        self.min_decay = check_number(min_decay, "EMACallback: min_decay", f"[0, {self.decay}]")
        self.update_after_step = check_int(update_after_step, "EMACallback: update_after_step", 0)
        self.validate = check_bool(validate, "EMACallback: validate")
        self.ema: Optional[ModelEmaV3] = None
        self.updates = 0  # optimizer steps averaged so far (the warm-up's step)
        self._pending: Optional[Dict[str, Any]] = None  # a resumed state, until the model exists
        self._training_model = None  # runner.model while a valid loader runs on the EMA copy
        self._batch_index = 0
        self._updated_at = None  # runner.global_batch_step of the last update

    # -- the average ------------------------------------------------------------------------
    def _build(self, model) -> None:
        if isinstance(model, Mapping):
            raise PodiumError(
                "EMACallback: the runner has a dict of models; the EMA averages one model"
            )
        self.ema = ModelEmaV3(
            unwrap(model),
            decay=self.decay,
            min_decay=self.min_decay,
            update_after_step=self.update_after_step,
            use_warmup=self.warmup,
            warmup_gamma=self.warmup_gamma,
            warmup_power=self.warmup_power,
        )
        self.ema.requires_grad_(False)
        if self._pending is not None:
            self.ema.module.load_state_dict(self._pending["weights"])
            self.updates = int(self._pending["updates"])
            self._pending = None

    def update(self, runner) -> None:
        """One optimizer step more: the average moves towards the model's weights."""
        self.updates += 1
        self.ema.update(unwrap(runner.model), step=self.updates)
        self._updated_at = runner.global_batch_step

    def _stepped(self, runner) -> bool:
        """Whether the optimizer really stepped on the batch that just ended."""
        stepped = getattr(runner, "optimizer_stepped", None)
        if stepped is not None:
            return bool(stepped)
        accumulation = 1
        for callback in (runner.callbacks or {}).values():
            if isinstance(callback, IOptimizerCallback):
                accumulation = int(getattr(callback, "accumulation_steps", 1) or 1)
        return is_step_batch(self._batch_index, runner.loader_batch_len, accumulation)

    # -- validation on the EMA copy ---------------------------------------------------------
    def _swap_in(self, runner) -> None:
        if self.validate and self.ema is not None and self._training_model is None:
            self._training_model = runner.model
            runner.model = self.ema.module

    def _swap_out(self, runner) -> None:
        if self._training_model is not None:
            runner.model, self._training_model = self._training_model, None

    # -- events ----------------------------------------------------------------------------
    def on_loader_start(self, runner) -> None:
        self._batch_index = 0
        if runner.is_train_loader:
            if self.ema is None:  # after the engine wrapped (DDP: broadcast) the model
                self._build(runner.model)
        else:
            self._swap_in(runner)

    def on_batch_end(self, runner) -> None:
        if runner.is_train_loader:
            if self._stepped(runner):
                self.update(runner)
            self._batch_index += 1

    def on_loader_end(self, runner) -> None:
        if runner.is_train_loader:
            # an optimizer step at the loader's end (a stopped loader's partial window)
            if (
                getattr(runner, "optimizer_stepped", None)
                and self._updated_at != runner.global_batch_step
            ):
                self.update(runner)
            if self.ema is not None:
                broadcast_buffers(self.ema.module)
        else:
            self._swap_out(runner)

    def on_exception(self, runner) -> None:
        self._swap_out(runner)

    def on_experiment_end(self, runner) -> None:
        self._swap_out(runner)

    # -- checkpoints -----------------------------------------------------------------------
    def weights(self) -> Optional[Dict[str, torch.Tensor]]:
        """The EMA weights (a state dict of the bare model), None before the first batch."""
        if self.ema is None:
            return None if self._pending is None else self._pending["weights"]
        return self.ema.module.state_dict()

    def state_dict(self) -> Optional[Dict[str, Any]]:
        """For `--resume`: the weights and the step count of the warm-up."""
        weights = self.weights()
        return None if weights is None else {"weights": weights, "updates": int(self.updates)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.updates = int(state["updates"])
        if self.ema is None:  # loaded into the copy when the model is there
            self._pending = {"weights": state["weights"], "updates": self.updates}
        else:
            self.ema.module.load_state_dict(state["weights"])


def broadcast_buffers(module) -> None:
    """Under torch.distributed (more than one process): rank 0's buffers on every rank."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def ema_weights(runner) -> Optional[Dict[str, torch.Tensor]]:
    """The weights of the stage's EMACallback (None without one, or before it has any)."""
    for callback in (runner.callbacks or {}).values():
        if isinstance(callback, EMACallback):
            return callback.weights()
    return None
