"""Per-step LR schedules whose length comes from the loaders, not from a number in the YAML.

    stages:
      train:
        num_epochs: 20
        optimizer: {_target_: torch.optim.AdamW, lr: 0.001}
        # no `scheduler:` block: the callback builds the scheduler
        callbacks:
          optimizer: {_target_: podium.callbacks.optimizer.OptimizerCallback, metric_key: loss,
                      accumulation_steps: 2}
          scheduler:
            _target_: podium.callbacks.schedulers.OneCycleCallback
            max_lr: 0.001
            pct_start: 0.3
          # or
          scheduler:
            _target_: podium.callbacks.schedulers.WarmupCosineCallback
            warmup_epochs: 1           # or warmup_fraction: 0.05, or warmup_steps: 100
            min_lr: 1.0e-6

At stage start (Catalyst builds the loaders first, then model / optimizer / scheduler, then the
callbacks, so the loaders are there) the callback computes

    total_steps = num_epochs × Σ_train loaders ceil(len(loader) / accumulation_steps)

(`accumulation_steps` defaults to the stage's optimizer callback's), builds the torch scheduler
on `runner.optimizer`, stores it as `runner.scheduler` (so checkpoints hold its state) and
steps it after every optimizer step (`podium.callbacks.optimizer.is_step_batch`: every k-th
batch and the last batch of a loader). `len(loader)` is per process under DDP, as the steps are.
The stage must not also have a `scheduler:` block.

- `OneCycleCallback`: `torch.optim.lr_scheduler.OneCycleLR` with that `total_steps` (Catalyst's
  own configs need `total_steps` typed by hand). `max_lr: null` → the optimizer's lr.
- `WarmupCosineCallback`: for optimizer step t = 0 … T−1 (T = total_steps, W warm-up steps,
  `base` = the optimizer's lr of each param group at stage start):

      lr(t) = base · (t + 1) / W                                          t < W
      lr(t) = min_lr + (base − min_lr) · ½ · (1 + cos(π · (t − W) / (T − W)))     t ≥ W

  (the first step already trains, the warm-up ends exactly at `base`, and the cosine reaches
  `min_lr` after the last step). W = round(warmup_epochs × steps per epoch), or
  round(warmup_fraction × T), or warmup_steps.

ReduceLROnPlateau needs nothing from podium: Catalyst's SchedulerCallback passes it the epoch
value of one loader's metric, e.g.

    scheduler: {_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, mode: max, factor: 0.5,
                patience: 3}
    callbacks:
      scheduler: {_target_: catalyst.callbacks.SchedulerCallback, loader_key: valid,
                  metric_key: dice}

(`mode: max` for a score such as Dice, `min` for a loss; without `loader_key`/`metric_key`
Catalyst stops at stage start with an assertion.)
"""

import math
from typing import List, Optional, Sequence, Union

from catalyst.core.callback import (
    CallbackNode,
    CallbackOrder,
    IOptimizerCallback,
    ISchedulerCallback,
)
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from podium.callbacks.optimizer import is_step_batch, optimizer_steps
from podium.errors import PodiumError
from podium.validation import check_int

__all__ = [
    "LoaderScheduleCallback",
    "OneCycleCallback",
    "WarmupCosineCallback",
    "WarmupCosineFactor",
    "warmup_cosine_lr",
]


def warmup_cosine_lr(
    step: int, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0
) -> float:
    """The learning rate of optimizer step `step` (0-based); see the module docstring."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineFactor:
    """`LambdaLR` factor of one param group (an object, so the scheduler's state_dict keeps it)."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float):
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step: int) -> float:
        if self.base_lr == 0:
            return 0.0
        lr = warmup_cosine_lr(step, self.base_lr, self.total_steps, self.warmup_steps, self.min_lr)
        return lr / self.base_lr


class LoaderScheduleCallback(ISchedulerCallback):
    """Base: builds a per-step scheduler at stage start from the train loaders' lengths.

    Subclasses implement `make_scheduler(optimizer, total_steps, steps_per_epoch)`.

    Args:
        accumulation_steps: batches per optimizer step; default: the `accumulation_steps` of
            the stage's optimizer callback (1 if it has none).
        optimizer_key: which optimizer, when `runner.optimizer` is a dict.
    """

    def __init__(self, accumulation_steps: Optional[int] = None, optimizer_key: str = None):
        super().__init__(order=CallbackOrder.Scheduler, node=CallbackNode.all)
        if accumulation_steps is not None:
            check_int(accumulation_steps, f"{type(self).__name__}: accumulation_steps", 1)
        self.accumulation_steps = accumulation_steps
        self.optimizer_key = optimizer_key
        self.scheduler = None
        self.total_steps = 0
        self.steps_per_epoch = 0
        self.steps_done = 0
        self._k = 1
        self._batch_index = 0
        self._optimizer_callback = None

    def make_scheduler(self, optimizer, total_steps: int, steps_per_epoch: int):
        raise NotImplementedError

    def _find_optimizer_callback(self, runner):
        for callback in (runner.callbacks or {}).values():
            inner = getattr(callback, "callback", callback)  # Catalyst's wrappers
            if isinstance(inner, IOptimizerCallback) and (
                self.optimizer_key is None
                or getattr(inner, "optimizer_key", None) in (None, self.optimizer_key)
            ):
                return inner
        return None

    def on_stage_start(self, runner) -> None:
        name = type(self).__name__
        optimizer = runner.optimizer
        if isinstance(optimizer, dict):
            if self.optimizer_key not in optimizer:
                raise PodiumError(
                    f"{name}: optimizer_key must name one of the optimizers {list(optimizer)}"
                )
            optimizer = optimizer[self.optimizer_key]
        if optimizer is None:
            raise PodiumError(f"{name}: stage {runner.stage_key} has no optimizer")
        if runner.scheduler is not None and runner.scheduler is not self.scheduler:
            raise PodiumError(
                f"{name} builds the scheduler of stage {runner.stage_key}, which also has a "
                f"`scheduler:` block; remove one of them"
            )
        self._optimizer_callback = self._find_optimizer_callback(runner)
        k = self.accumulation_steps
        if k is None:
            k = int(getattr(self._optimizer_callback, "accumulation_steps", 1) or 1)
        self._k = k
        train = [loader for key, loader in runner.loaders.items() if key.startswith("train")]
        if not train:
            raise PodiumError(f"{name}: stage {runner.stage_key} has no train loader")
        self.steps_per_epoch = sum(optimizer_steps(len(loader), k) for loader in train)
        self.total_steps = self.steps_per_epoch * int(runner.stage_epoch_len)
        self.steps_done = 0
        self.scheduler = self.make_scheduler(optimizer, self.total_steps, self.steps_per_epoch)
        if not isinstance(runner.scheduler, dict):
            runner.scheduler = self.scheduler

    def on_loader_start(self, runner) -> None:
        self._batch_index = 0

    def on_batch_end(self, runner) -> None:
        if not runner.is_train_loader:
            return
        index = self._batch_index
        self._batch_index += 1
        stepped = getattr(self._optimizer_callback, "stepped", None)
        if stepped is None:  # an optimizer callback that does not say: count batches
            stepped = is_step_batch(index, runner.loader_batch_len, self._k)
        if stepped and self.steps_done < self.total_steps:
            self.scheduler.step()
            self.steps_done += 1

    def state_dict(self) -> dict:
        """For resuming mid-stage (the scheduler's own state is saved as runner.scheduler)."""
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = int(state["steps_done"])


class OneCycleCallback(LoaderScheduleCallback):
    """`torch.optim.lr_scheduler.OneCycleLR`, `total_steps` derived from the train loaders.

    Args: `max_lr` (float or one per param group; null → the optimizer's lr), and torch's
    `pct_start`, `anneal_strategy`, `cycle_momentum`, `base_momentum`, `max_momentum`,
    `div_factor`, `final_div_factor`, `three_phase`; `accumulation_steps`, `optimizer_key`.
    """

    def __init__(
        self,
        max_lr: Union[None, float, Sequence[float]] = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        accumulation_steps: Optional[int] = None,
        optimizer_key: str = None,
    ):
        super().__init__(accumulation_steps=accumulation_steps, optimizer_key=optimizer_key)
        if not 0 < float(pct_start) < 1:
            raise PodiumError(f"OneCycleCallback: pct_start must be in (0, 1), got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise PodiumError(
                f'OneCycleCallback: anneal_strategy must be "cos" or "linear", '
                f"not {anneal_strategy!r}"
            )
        self.kwargs = dict(
            max_lr=max_lr,
            pct_start=float(pct_start),
            anneal_strategy=anneal_strategy,
            cycle_momentum=bool(cycle_momentum),
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=float(div_factor),
            final_div_factor=float(final_div_factor),
            three_phase=bool(three_phase),
        )

    def make_scheduler(self, optimizer, total_steps: int, steps_per_epoch: int):
        kwargs = dict(self.kwargs)
        if kwargs["max_lr"] is None:
            kwargs["max_lr"] = [group["lr"] for group in optimizer.param_groups]
        elif isinstance(kwargs["max_lr"], (list, tuple)):
            kwargs["max_lr"] = [float(v) for v in kwargs["max_lr"]]
        else:
            kwargs["max_lr"] = float(kwargs["max_lr"])
        try:
            return OneCycleLR(optimizer, total_steps=total_steps, **kwargs)
        except ValueError as error:
            hint = (
                " (set cycle_momentum: false for this optimizer)"
                if "momentum" in str(error)
                else ""
            )
            raise PodiumError(f"OneCycleCallback: {error}{hint}") from error


class WarmupCosineCallback(LoaderScheduleCallback):
    """Linear warm-up then cosine annealing to `min_lr`, per optimizer step (`LambdaLR`).

    Args:
        warmup_epochs: warm-up length in epochs (may be fractional), or
        warmup_fraction: a fraction of all the stage's steps, or
        warmup_steps: a number of optimizer steps (at most one of the three; none → 0).
        min_lr: the learning rate the cosine ends at (absolute, every param group).
        accumulation_steps, optimizer_key: see `LoaderScheduleCallback`.
    """

    def __init__(
        self,
        warmup_epochs: Optional[float] = None,
        warmup_fraction: Optional[float] = None,
        warmup_steps: Optional[int] = None,
        min_lr: float = 0.0,
        accumulation_steps: Optional[int] = None,
        optimizer_key: str = None,
    ):
        super().__init__(accumulation_steps=accumulation_steps, optimizer_key=optimizer_key)
        given = [
            k
            for k, v in (
                ("warmup_epochs", warmup_epochs),
                ("warmup_fraction", warmup_fraction),
                ("warmup_steps", warmup_steps),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise PodiumError(
                f"WarmupCosineCallback: give one of warmup_epochs, warmup_fraction, "
                f"warmup_steps; got {', '.join(given)}"
            )
        if warmup_fraction is not None and not 0 <= float(warmup_fraction) <= 1:
            raise PodiumError(
                f"WarmupCosineCallback: warmup_fraction must be in [0, 1], got {warmup_fraction!r}"
            )
        for key, value in (
            ("warmup_epochs", warmup_epochs),
            ("warmup_steps", warmup_steps),
            ("min_lr", min_lr),
        ):
            if value is not None and float(value) < 0:
                raise PodiumError(f"WarmupCosineCallback: {key} must be >= 0, got {value!r}")
        self.warmup_epochs = warmup_epochs
        self.warmup_fraction = warmup_fraction
        self.warmup_steps = warmup_steps
        self.min_lr = float(min_lr)
        self.num_warmup_steps = 0

    def _warmup(self, total_steps: int, steps_per_epoch: int) -> int:
        if self.warmup_steps is not None:
            steps = int(self.warmup_steps)
        elif self.warmup_epochs is not None:
            steps = int(round(float(self.warmup_epochs) * steps_per_epoch))
        elif self.warmup_fraction is not None:
            steps = int(round(float(self.warmup_fraction) * total_steps))
        else:
            steps = 0
        return min(steps, total_steps)

    def make_scheduler(self, optimizer, total_steps: int, steps_per_epoch: int):
        self.num_warmup_steps = self._warmup(total_steps, steps_per_epoch)
        for group in optimizer.param_groups:  # LambdaLR keeps an older scheduler's initial_lr
            group["initial_lr"] = group["lr"]
        factors: List[WarmupCosineFactor] = [
            WarmupCosineFactor(group["lr"], total_steps, self.num_warmup_steps, self.min_lr)
            for group in optimizer.param_groups
        ]
        return LambdaLR(optimizer, lr_lambda=factors)
