"""A callback that sends a real signal to its own process at one exact moment of a run.

Tests put it in a config (with tests/ on PYTHONPATH) to stop `catalyst-dl run` mid-batch,
during validation or in the middle of a checkpoint write, as Ctrl-C or `kill` would.
"""

import os
import time

import torch
from catalyst.core.callback import Callback, CallbackOrder


class SendSignal(Callback):
    """Once per `once_file`: `count` signals `signum` at batch `batch` of `loader` in
    `stage`/`epoch`; with `during_save`, instead while that epoch's first checkpoint file is being
    written."""

    def __init__(
        self,
        signum: int,
        stage: str,
        epoch: int,
        once_file: str,
        loader: str = "train",
        batch: int = 1,
        during_save: bool = False,
        count: int = 1,
    ):
        super().__init__(order=CallbackOrder.External)
        self.once_file = once_file  # exists once a signal was sent: a resumed run sends none
        self.signum, self.stage, self.epoch, self.loader, self.batch = (
            signum,
            stage,
            epoch,
            loader,
            batch,
        )
        self.during_save, self.count = during_save, count

    def _now(self, runner) -> bool:
        return (runner.stage_key, runner.stage_epoch_step) == (
            self.stage,
            self.epoch,
        ) and not os.path.exists(self.once_file)

    def _send(self) -> None:
        open(self.once_file, "w").close()
        for _ in range(self.count):
            os.kill(os.getpid(), self.signum)

    def on_batch_end(self, runner) -> None:
        if (
            not self.during_save
            and self._now(runner)
            and (runner.loader_key, runner.loader_batch_step) == (self.loader, self.batch)
        ):
            self._send()

    def on_epoch_start(self, runner) -> None:
        if self.during_save and self._now(runner):
            save, sender = torch.save, self

            class SignalMidWrite:  # the file torch.save writes into: a signal after its first chunk
                def __init__(self, file):
                    self.file, self.writes = file, 0

                def write(self, data):
                    self.writes += 1
                    written = self.file.write(data)
                    if self.writes == 1:
                        torch.save = save
                        sender._send()
                    return written

                def __getattr__(self, name):
                    return getattr(self.file, name)

            torch.save = lambda obj, file, *args, **kwargs: save(
                obj, SignalMidWrite(file), *args, **kwargs
            )


class Slow(Callback):
    """Sleeps `seconds` after every batch of `stage`/`epoch`: a run that stays in that epoch
    long enough for a test to signal it from outside."""

    def __init__(self, stage: str, epoch: int, seconds: float):
        super().__init__(order=CallbackOrder.External)
        self.stage, self.epoch, self.seconds = stage, epoch, seconds

    def on_batch_end(self, runner) -> None:
        if (runner.stage_key, runner.stage_epoch_step) == (self.stage, self.epoch):
            time.sleep(self.seconds)
