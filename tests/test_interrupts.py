"""podium.interrupts: real signals to this process, inside and outside deferred writes."""

import os
import signal

import pytest
import torch

from podium import interrupts
from podium.compat.checkpoint import CheckpointWriteError, save_checkpoint


def _kill_self(signum=signal.SIGINT, times=1):
    for _ in range(times):
        os.kill(os.getpid(), signum)


def test_a_signal_in_a_deferred_block_waits_for_its_end():
    done = []
    with pytest.raises(interrupts.Interrupted) as stopped:
        with interrupts.handled():
            with interrupts.deferred("out.png"):
                _kill_self(signal.SIGTERM)
                done.append("the rest of the write")
            done.append("after the block")  # never: the held signal is raised at the block's end
    assert done == ["the rest of the write"]
    assert (stopped.value.signum, stopped.value.during, stopped.value.completed) == (
        signal.SIGTERM,
        "out.png",
        True,
    )
    assert interrupts.exit_status(stopped.value) == 143


def test_outside_handled_nothing_changes():
    previous = signal.getsignal(signal.SIGINT)
    with interrupts.handled():
        assert signal.getsignal(signal.SIGINT) is not previous
    assert signal.getsignal(signal.SIGINT) is previous  # restored
    with pytest.raises(KeyboardInterrupt) as stopped:  # Python's own handler: at once
        with interrupts.deferred("x"):
            _kill_self()
            pytest.fail("the signal was held outside handled()")
    assert not isinstance(stopped.value, interrupts.Interrupted)


def test_a_second_signal_stops_a_checkpoint_write_and_is_not_a_full_disk(tmp_path):
    """torch's zip writer turns the KeyboardInterrupt raised inside it into a RuntimeError
    ("unexpected pos"): that is an interruption, and the previous file stays."""
    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()

    class SignalsInWrite:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            _kill_self(times=2)  # the first is held, the second stops the write
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

    original = torch.save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", lambda obj, f: original(obj, SignalsInWrite(f)))
        with pytest.raises(interrupts.Interrupted) as stopped:
            with interrupts.handled():
                save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, path)
    assert not isinstance(stopped.value, CheckpointWriteError)
    assert (stopped.value.during, stopped.value.completed) == (str(path), False)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left
    with interrupts.handled():  # nothing held over: the next write is not interrupted
        save_checkpoint({"epoch": 3}, path)


def test_command_line_replaces_the_resume_options():
    argv = [
        "/venv/bin/catalyst-dl",
        "run",
        "--config",
        "a b.yml",
        "--resume",
        "logs/x",
        "--autoresume=last",
    ]
    command = interrupts.command_line(
        argv, drop=("--resume", "--autoresume"), add=("--autoresume", "last")
    )
    assert command == "catalyst-dl run --config 'a b.yml' --autoresume last"
