"""SWACallback: stochastic weight averaging over the last epochs of a stage (torch.optim.swa_utils).

    stages:
      swa:                                   # a last stage, from the weights the others left
        num_epochs: 6
        optimizer: {_target_: torch.optim.SGD, lr: 0.01, momentum: 0.9}
        callbacks:
          swa:
            _target_: podium.callbacks.SWACallback
            start_epoch: 2                   # epochs 2..6 of the stage go into the average
            lr: 0.005                        # SWALR: anneal to this LR, then hold it (null: keep
            anneal_epochs: 2                 #   the stage's own schedule, e.g. a cyclic one)
            anneal_strategy: cos             # cos | linear
            bn_update: true                  # recompute BatchNorm statistics at the stage's end

At the end of every train loader from `start_epoch` on, `AveragedModel.update_parameters` adds
the model's weights to the average (after that epoch's last optimizer step); with `lr` set,
`SWALR` steps at each of those epochs' end, as in torch's SWA recipe (the stage may then have no
other scheduler: two schedulers would fight over the LR). At the end of the stage
`torch.optim.swa_utils.update_bn` recomputes the BatchNorm statistics of the average on the
stage's train loader (`bn_update: true`; else the running statistics are averaged with the
weights) and rank 0 writes `checkpoints/swa.pth` in the format of `podium average`
(`podium.models.averaging.write_average`): `podium predict --checkpoint swa` reads it.

Under DDP every rank averages the same weights (DDP synchronised them in the step); BatchNorm
statistics differ per rank (each rank's batches), so every rank takes rank 0's, as
`EMACallback` does. The callback's state (the average so far and the SWALR schedule) goes into
the resume state, so `--resume` continues the same average. The stage's valid metrics and
checkpoints are those of the trained weights; score the average with `podium predict`.
"""

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder
from torch.optim.swa_utils import SWALR, AveragedModel

from podium.callbacks.ema import broadcast_buffers
from podium.checkpoints import unwrap
from podium.errors import PodiumError
from podium.models.averaging import update_batchnorm, write_average
from podium.validation import check_bool, check_choice, check_int, check_number

__all__ = ["SWACallback", "ANNEAL_STRATEGIES"]

ANNEAL_STRATEGIES = ("cos", "linear")


class SWACallback(Callback):
    """Averages the weights of the stage's epochs from `start_epoch` on; writes swa.pth.

    Args:
        start_epoch: the stage's first epoch (1-based) whose weights join the average.
        lr: the SWA learning rate SWALR anneals to (None: the LR is left to the stage).
        anneal_epochs: epochs of the anneal from the current LR to `lr` (0: at once).
        anneal_strategy: cos | linear.
        bn_update: recompute BatchNorm statistics of the average on the train loader at the
            stage's end (else the buffers are averaged too).
        filename: the checkpoint's name in the checkpoints folder.
        logdir: the run directory (default: the runner's); the checkpoint goes into its
            checkpoints/ folder.
    """

    def __init__(
        self,
        start_epoch: int = 1,
        lr: Optional[float] = None,
        anneal_epochs: int = 1,
        anneal_strategy: str = "cos",
        bn_update: bool = True,
        filename: str = "swa.pth",
        logdir: Optional[str] = None,
    ):
        super().__init__(order=CallbackOrder.Scheduler + 1, node=CallbackNode.all)
        self.start_epoch = check_int(start_epoch, "SWACallback: start_epoch", 1)
        self.lr = None if lr is None else check_number(lr, "SWACallback: lr", "> 0")
        self.anneal_epochs = check_int(anneal_epochs, "SWACallback: anneal_epochs", 0)
        self.anneal_strategy = check_choice(
            anneal_strategy, ANNEAL_STRATEGIES, "SWACallback: anneal_strategy"
        )
        self.bn_update = check_bool(bn_update, "SWACallback: bn_update")
        self.filename = str(filename)
        self.logdir = logdir
        self.averaged: Optional[AveragedModel] = None
        self.scheduler: Optional[SWALR] = None
        self.epochs: List[str] = []  # "<stage>.<epoch>" of every averaged epoch
        self._pending_average: Optional[Dict[str, Any]] = None  # resumed, until the next update

    # -- events ----------------------------------------------------------------------------
    def on_stage_start(self, runner) -> None:
        length = int(runner.stage_epoch_len)
        if self.start_epoch > length:
            raise PodiumError(
                f"SWACallback: start_epoch {self.start_epoch} is beyond stage "
                f"{runner.stage_key}, which has {length} epoch(s); expected 1..{length}"
            )
        if self.logdir is None and _logdir(runner) is None:
            raise PodiumError("SWACallback: the runner has no logdir; expected logdir: DIR")
        if isinstance(runner.model, Mapping):
            raise PodiumError("SWACallback: the runner has a dict of models; SWA averages one")
        self.averaged, self.epochs = None, []
        self.scheduler = None
        if self.lr is not None:
            if runner.scheduler is not None:
                raise PodiumError(
                    f"SWACallback: lr {self.lr} sets the LR of stage {runner.stage_key} through "
                    "SWALR, but the stage has a scheduler too; expected no scheduler in the SWA "
                    "stage, or SWACallback lr: null to keep the stage's schedule"
                )
            self.scheduler = SWALR(
                runner.optimizer,
                swa_lr=self.lr,
                anneal_epochs=self.anneal_epochs,
                anneal_strategy=self.anneal_strategy,
            )

    def on_loader_end(self, runner) -> None:
        if runner.is_train_loader and runner.stage_epoch_step >= self.start_epoch:
            self.update(runner.model)
            self.epochs.append(f"{runner.stage_key}.{runner.stage_epoch_step}")

    def on_epoch_end(self, runner) -> None:
        if self.scheduler is not None and runner.stage_epoch_step >= self.start_epoch:
            self.scheduler.step()

    def on_stage_end(self, runner) -> None:
        if self.averaged is None:
            return  # the stage stopped (early stopping) before start_epoch
        model = self.averaged.module
        if self.bn_update:
            device = next(model.parameters()).device
            update_batchnorm(model, _train_loader(runner), _input_key(runner), device)
        broadcast_buffers(model)
        if runner.engine.is_master_process:
            folder = Path(self.logdir or _logdir(runner)) / "checkpoints"
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            write_average(folder / self.filename, weights, self.epochs, self.bn_update)

    # -- the average ------------------------------------------------------------------------
    def update(self, model) -> None:
        """The model's current weights join the average."""
        model = unwrap(model)
        if self.averaged is None:
            self.averaged = AveragedModel(model, use_buffers=not self.bn_update)
            self.averaged.requires_grad_(False)
            if self._pending_average is not None:  # --resume: the average so far
                self.averaged.load_state_dict(self._pending_average)
                self._pending_average = None
        self.averaged.update_parameters(model)

    def weights(self) -> Optional[Dict[str, torch.Tensor]]:
        """The averaged weights (a state dict of the bare model), None before the first epoch."""
        return None if self.averaged is None else self.averaged.module.state_dict()

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> Optional[Dict[str, Any]]:
        """For `--resume`: the average so far, the epochs in it and the SWALR schedule."""
        state: Dict[str, Any] = {"epochs": list(self.epochs)}
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After the stage started (a stage resumed mid-way): the average comes back at the
        next update, when the model is there to hold it."""
        self.epochs = list(state.get("epochs") or [])
        self.averaged, self._pending_average = None, state.get("averaged")
        if "scheduler" in state and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def _logdir(runner) -> Optional[str]:
    """The config runner's logdir (catalyst-dl run), else the Python API's (`train(logdir=)`)."""
    return getattr(runner, "logdir", None) or getattr(runner, "_logdir", None)


def _train_loader(runner):
    """The stage's first train loader (what trained the weights)."""
    for name, loader in runner.loaders.items():
        if name.startswith("train"):
            return loader
    raise PodiumError(
        f"SWACallback: bn_update needs a train loader, stage {runner.stage_key} has "
        f"{', '.join(runner.loaders)}; expected a loader named train*, or bn_update: false"
    )


def _input_key(runner) -> str:
    key = getattr(runner, "_input_key", "image")
    if not isinstance(key, str):
        raise PodiumError(
            f"SWACallback: bn_update feeds the model one batch key, but runner input_key is "
            f"{key!r}; expected one key, or bn_update: false"
        )
    return key
