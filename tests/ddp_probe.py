"""A test-only callback for DDP runs: what every rank holds at stage start and end.

Used by tests/test_ddp.py through `_target_: ddp_probe.StageProbe` (the test puts tests/ on
PYTHONPATH). Writes `<out>/<stage>_<start|end>_rank<r>.pt` outside the run directory: the bare
model's state dict and the names of the rank's loggers.
"""

import os

import torch
from catalyst.core.callback import Callback, CallbackNode, CallbackOrder
from torch import nn


def _bare(model: nn.Module) -> nn.Module:
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


class StageProbe(Callback):
    def __init__(self, out: str):
        super().__init__(order=CallbackOrder.External, node=CallbackNode.all)
        self.out = out

    def _dump(self, runner, event: str) -> None:
        state = {k: v.detach().cpu().clone() for k, v in _bare(runner.model).state_dict().items()}
        record = {
            "state": state,
            "loggers": sorted(runner.loggers),
            "world_size": runner.engine.world_size,
        }
        os.makedirs(self.out, exist_ok=True)
        name = f"{runner.stage_key}_{event}_rank{runner.engine.rank}.pt"
        torch.save(record, os.path.join(self.out, name))

    def on_stage_start(self, runner) -> None:
        self._dump(runner, "start")

    def on_stage_end(self, runner) -> None:
        self._dump(runner, "end")
