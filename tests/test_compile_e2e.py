"""torch.compile through whole podium runs: freeze → unfreeze stages, checkpoints, DDP, predict.

Inductor itself is exercised by tests/test_precision.py on a small net; here, where a resnet18
U-Net would cost minutes of C++ compilation per test, `nn.Module.compile` uses Dynamo with the
`eager` backend: the graph capture, guards and recompiles on a stage's `requires_grad` change,
the `_orig_mod`-free state dicts and the DDP wrapping are podium's and torch's real code, and
the numbers must match an eager run.
"""

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run_two_ranks
from podium.runners.engines import DDPEngine, free_port
from tests.test_precision import ddp_steps
from tests.test_training_callbacks import tiny_net, weights

STAGE_EPOCHS = ["--stages/warmup/num_epochs=1:int", "--stages/train/num_epochs=1:int"]


@pytest.fixture
def eager_backend(monkeypatch):
    """`nn.Module.compile(mode=...)` → Dynamo with the eager backend; counts the calls."""
    calls = []
    original = nn.Module.compile

    def compile_eagerly(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, backend="eager")

    monkeypatch.setattr(nn.Module, "compile", compile_eagerly)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def _train_in_process(logdir, data, *overrides):
    """`catalyst-dl run` of the demo config in this process (so the patched compile applies),
    on 16 of the sample's training tiles."""
    import pandas as pd
    from catalyst.dl.scripts.run import main, parse_args

    from conftest import NUCLEI_CONFIG

    split = pd.read_csv(data / "split.csv")
    small = logdir.parent / "split16.csv"
    pd.concat([split[split.split == "train"].iloc[::7][:16], split[split.split == "valid"]]).to_csv(
        small, index=False
    )
    argv = ["catalyst-dl", "--config", str(NUCLEI_CONFIG), f"--args/logdir={logdir}:str"]
    argv += [f"--data/root={data}:str", f"--data/split_file={small}:str"]
    argv += [*STAGE_EPOCHS, *overrides]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        args, unknown = parse_args()
        main(args, unknown)


def _predict_in_process(run, data, out, *extra):
    from podium.cli.main import main

    assert main(["predict", "--run", str(run), "--data", str(data), "--split", "valid",
                 "--out", str(out), "--no-progress", *extra]) in (0, None)  # fmt: skip


def test_compiled_two_stage_run_equals_eager_and_predicts_compiled(
    tmp_path, nuclei_data, eager_backend, capsys
):
    engine = "--engine/_target_=podium.runners.engines.DeviceEngine:str"
    _train_in_process(tmp_path / "eager", nuclei_data, engine)
    assert eager_backend == []
    _train_in_process(tmp_path / "compiled", nuclei_data, engine, "--engine/compile=True:bool")
    assert eager_backend, "the engine never compiled the model"
    assert "torch.compile (mode default)" in capsys.readouterr().out

    for checkpoint in ("warmup.1.pth", "train.1.pth", "best.pth"):
        eager, compiled = (
            torch.load(tmp_path / run / "checkpoints" / checkpoint, weights_only=True)[
                "model_state_dict"
            ]
            for run in ("eager", "compiled")
        )
        assert list(compiled) == list(eager), "compiled checkpoints keep the eager names"
        for name in eager:  # stage 1 froze the encoder, stage 2 trained it: same as eager
            assert torch.allclose(compiled[name], eager[name], atol=1e-4, rtol=1e-4), name
    warmup, train = (
        torch.load(tmp_path / "compiled" / "checkpoints" / f, weights_only=True)["model_state_dict"]
        for f in ("warmup.1.pth", "train.1.pth")
    )
    encoder = [k for k in warmup if k.startswith("encoder.") and warmup[k].is_floating_point()]
    assert any(not torch.equal(warmup[k], train[k]) for k in encoder), "unfreeze had no effect"

    calls = len(eager_backend)
    _predict_in_process(tmp_path / "compiled", nuclei_data, tmp_path / "p_compiled", "--compile")
    assert len(eager_backend) == calls + 1  # predict compiled the model too
    said = "=> predict: precision fp32, memory format contiguous, torch.compile (mode default)"
    assert said in capsys.readouterr().out.splitlines()
    _predict_in_process(tmp_path / "compiled", nuclei_data, tmp_path / "p_eager")
    masks = sorted((tmp_path / "p_eager" / "masks").iterdir())
    assert masks
    for mask in masks:
        compiled_mask = tmp_path / "p_compiled" / "masks" / mask.name
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(compiled_mask)))


def _ddp_worker(rank, port, out_dir, compiled):
    import os

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2"
    )
    torch.manual_seed(0)
    engine = DDPEngine(backend="gloo", compile=compiled)
    model = tiny_net()
    wrapped = ddp_steps(engine, model, rank)
    keys = list(engine.pack_checkpoint(model=wrapped)["model_state_dict"])
    engine.close()
    result = {"weights": weights(model), "keys": keys, "compiled": model._compiled_call_impl}
    result["compiled"] = result["compiled"] is not None
    torch.save(result, f"{out_dir}/rank{rank}_{compiled}.pt")


def test_ddp_compiled_ranks_step_like_eager_ddp(tmp_path, eager_backend):
    for compiled in (False, True):
        run_two_ranks(_ddp_worker, free_port(), str(tmp_path), compiled, start_method="fork")
    runs = {
        (rank, compiled): torch.load(tmp_path / f"rank{rank}_{compiled}.pt", weights_only=True)
        for rank in (0, 1)
        for compiled in (False, True)
    }
    for rank in (0, 1):
        eager, compiled = runs[rank, False], runs[rank, True]
        assert compiled["compiled"] and not eager["compiled"]
        assert compiled["keys"] == eager["keys"]
        assert not any("_orig_mod" in key for key in compiled["keys"])
        assert torch.allclose(compiled["weights"], eager["weights"], atol=1e-6, rtol=0)
    assert torch.equal(runs[0, True]["weights"], runs[1, True]["weights"])
