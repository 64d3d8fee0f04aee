"""CheckpointCallback: Catalyst's, with checkpoints that a resumed run can continue from.

    callbacks:
      checkpoint:                          # the same arguments as Catalyst's
        _target_: podium.callbacks.CheckpointCallback
        use_runner_logdir: true
        use_logdir_postfix: true
        loader_key: valid
        metric_key: dice
        minimize: false

`SegmentationRunner` uses this class wherever a config names
`catalyst.callbacks.CheckpointCallback` (and for Catalyst's default one), so every run can be
resumed with `catalyst-dl run ... --resume RUN_DIR` or `--autoresume last`.

Catalyst's full checkpoints hold the model, criterion, optimizer and scheduler and the
counters; this callback adds `podium_resume` (tensors and plain data:
`torch.load(weights_only=True)` reads it) with what else an uninterrupted run would carry on
with:
- `early_stop`: early stopping asked to end the stage at this epoch;
- `callbacks`: the state of the stage's stateful callbacks (`state_dict()` where a callback has
  one, e.g. this one's best score and top-N list; Catalyst's early-stopping counters through
  `podium.compat.callback_state`);
- `frozen`: the names of frozen parameters (an `UnfreezeCallback` epoch may have passed);
- `rng`: torch (CPU and CUDA), numpy and python RNG states;
- `load_on_stage_end`: replayed by the runner when the run resumes at the next stage.

With an `EMACallback` in the stage, every checkpoint also holds its weights (`ema_state_dict`).

It saves after every other callback of the epoch (order ExternalExtra; Catalyst's is External),
so early stopping has counted the epoch when its state is taken. Files are written atomically
(temp file + rename: `podium.compat.checkpoint`), `_metrics.json` too. A stage resumed
mid-way skips `load_on_stage_start`: the runner restores the checkpoint's state instead.
"""

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from catalyst.callbacks.checkpoint import CheckpointCallback as _CatalystCheckpointCallback
from catalyst.core.callback import CallbackOrder
from catalyst.utils.config import save_config
from torch import nn

from podium import interrupts
from podium.callbacks.ema import ema_weights
from podium.checkpoints import EMA_KEY, unwrap
from podium.compat.callback_state import catalyst_callback_state, load_catalyst_callback_state

__all__ = [
    "CheckpointCallback",
    "RESUME_KEY",
    "callback_state",
    "load_callback_state",
    "frozen_parameters",
    "rng_state",
    "set_rng_state",
]

RESUME_KEY = "podium_resume"


def rng_state() -> Dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors and plain data."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Undo of `rng_state` (CUDA states only where this process has the same devices)."""
    torch.set_rng_state(state["torch"].cpu())
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def callback_state(callback) -> Optional[Dict[str, Any]]:
    """A callback's state across epochs: its `state_dict()`, or Catalyst's counters, or None."""
    if callable(getattr(callback, "state_dict", None)):
        return callback.state_dict()
    return catalyst_callback_state(callback)


def load_callback_state(callback, state: Dict[str, Any]) -> bool:
    """Undo of `callback_state`; False if the callback keeps no state."""
    if callable(getattr(callback, "load_state_dict", None)):
        callback.load_state_dict(state)
        return True
    return load_catalyst_callback_state(callback, state)


def _models(model) -> Dict[str, nn.Module]:
    models = model if isinstance(model, Mapping) else {"": model}
    return {key: unwrap(module) for key, module in models.items()}


def frozen_parameters(model) -> List[str]:
    """Names of the parameters that do not train (`key.name` for a dict of models)."""
    return [
        f"{key}.{name}" if key else name
        for key, module in _models(model).items()
        for name, parameter in module.named_parameters()
        if not parameter.requires_grad
    ]


def set_frozen_parameters(model, frozen: List[str]) -> None:
    """Undo of `frozen_parameters`: every other parameter trains."""
    frozen = set(frozen)
    for key, module in _models(model).items():
        for name, parameter in module.named_parameters():
            parameter.requires_grad_((f"{key}.{name}" if key else name) not in frozen)


def _plain(value):
    """A YAML mapping (or None / str) as plain dicts, for weights_only loading."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class CheckpointCallback(_CatalystCheckpointCallback):
    """Catalyst's CheckpointCallback (same arguments) whose full checkpoints resume exactly."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order = CallbackOrder.ExternalExtra  # after early stopping has counted the epoch

    def state_dict(self) -> Dict[str, Any]:
        """Best score and the kept top-N list (sorted and cut as Catalyst keeps them)."""
        state = catalyst_callback_state(self)
        records = sorted(state["top_best_metrics"], key=lambda r: r[0], reverse=not self.minimize)
        state["top_best_metrics"] = records[: self.save_n_best]
        state["logdir"] = str(Path(self.logdir).resolve())
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Only into the same folder: resumed into another logdir, best-tracking starts anew
        there (and the top-N list never deletes files of the other run)."""
        if state.get("logdir") == str(Path(self.logdir).resolve()):
            load_catalyst_callback_state(self, state)

    def resume_state(self, runner) -> Dict[str, Any]:
        """What podium adds to a full checkpoint (see the module docstring)."""
        callbacks = {}
        for name, callback in (runner.callbacks or {}).items():
            state = callback_state(callback)
            if state is not None:
                callbacks[str(name)] = state
        return {
            "version": 1,
            "early_stop": bool(runner.need_early_stop),
            "callbacks": callbacks,
            "frozen": frozen_parameters(runner.model),
            "rng": rng_state(),
            "load_on_stage_end": _plain(self.load_on_stage_end),
        }

    def on_stage_start(self, runner) -> None:
        if not getattr(runner, "resume_pending", False):
            super().on_stage_start(runner)
            return
        load, self.load_on_stage_start = self.load_on_stage_start, None
        try:  # the runner restores this stage from its checkpoint at the first epoch start
            super().on_stage_start(runner)
        finally:
            self.load_on_stage_start = load

    def _path(self, runner) -> str:
        """The file Catalyst's `_save_checkpoint` returns for this epoch (its top-N key)."""
        suffix = f"{runner.stage_key}.{runner.stage_epoch_step}"
        suffix += "_full" if self.mode == "full" else ""
        return f"{Path(f'{self.logdir}/')}/{suffix}.pth"

    def on_epoch_end(self, runner) -> None:
        """Catalyst's, with this epoch already in the top-N list the checkpoint carries."""
        if runner.is_infer_stage:
            return
        if runner.engine.is_ddp and not runner.engine.is_master_process:
            return
        if self._use_model_selection:
            score = runner.epoch_metrics[self.loader_key][self.metric_key]
        else:
            score = runner.global_epoch_step
        is_best = self.best_score is None or self.is_better(score, self.best_score)
        if is_best:
            self.best_score = score
        if self.save_n_best == 0:
            return
        with interrupts.deferred(self._path(runner)):  # Ctrl-C waits for the epoch's whole set
            self._save_epoch(runner, score, is_best)

    def _save_epoch(self, runner, score: float, is_best: bool) -> None:
        record = (
            float(score),
            self._path(runner),
            runner.stage_key,
            runner.stage_epoch_step,
            dict(runner.epoch_metrics),
        )
        self.top_best_metrics.append(record)
        checkpoint = self._pack_checkpoint(runner)
        ema = ema_weights(runner)
        if ema is not None:
            checkpoint[EMA_KEY] = ema
        checkpoint[RESUME_KEY] = self.resume_state(runner)
        self._save_checkpoint(runner=runner, checkpoint=checkpoint, is_best=is_best, is_last=True)
        self._truncate_checkpoints()
        metrics = self._prepare_metrics_log(float(score), dict(runner.epoch_metrics))
        path = Path(self.logdir) / self.metrics_filename
        tmp = path.with_name(f".{os.getpid()}.{path.name}")  # keeps the .json / .yml suffix
        save_config(metrics, tmp)
        os.replace(tmp, path)
