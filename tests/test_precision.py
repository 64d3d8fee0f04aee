"""Precision (fp32 | bf16 | fp16 | auto), channels_last and torch.compile of podium's engines.

Every training path is compared with a plain torch loop written here with the same autocast /
GradScaler calls; all run on the CPU (torch has CPU autocast for bf16 and fp16 and
torch.amp.GradScaler("cpu")).
"""

from collections import OrderedDict

import pytest
import torch

import podium  # noqa: F401  (first: podium.compat patches Catalyst)
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder
from torch import nn
from torch.utils.data import DataLoader

from podium.callbacks.nan_guard import NanGuardCallback
from podium.callbacks.optimizer import OptimizerCallback
from podium.errors import PodiumError
from podium.models import precision as precision_module
from podium.models.precision import Precision
from podium.runners.engines import DDPEngine, DeviceEngine
from podium.runners.precision import PrecisionForward
from tests.test_training_callbacks import Recorder, Tiles, criterion_cb, tiny_net, weights


class Runner(PrecisionForward, dl.SupervisedRunner):
    """Catalyst's SupervisedRunner with podium's forward (PodiumRunner has the same mixin)."""


class SteppedProbe(Callback):
    """Records `runner.optimizer_stepped` after every train batch."""

    def __init__(self):
        super().__init__(order=CallbackOrder.Optimizer + 1)
        self.flags = []

    def on_batch_end(self, runner):
        if runner.is_train_loader:
            self.flags.append(runner.optimizer_stepped)


def train(model, engine, callbacks, batch_size=4, n=16, num_epochs=1, lr=0.1):
    runner = Runner(input_key="image", output_key="logits", target_key="mask", loss_key="loss")
    recorder = Recorder()
    loaders = OrderedDict(train=DataLoader(Tiles(n, size=16), batch_size=batch_size, shuffle=False))
    runner.train(
        model=model,
        engine=engine,
        criterion=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        loaders=loaders,
        callbacks=[criterion_cb(), *callbacks],
        num_epochs=num_epochs,
        loggers={"_console": recorder},
        verbose=False,
        seed=0,
    )
    return runner, recorder


def by_hand(precision, k=1, clip=None, batch_size=4, n=16, num_epochs=1, lr=0.1, scaler=None):
    """The same training as `train`, as a plain torch loop: autocast around the forward pass,
    outputs to float32, loss in fp32; fp16 through a GradScaler (unscale before clipping)."""
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    data = Tiles(n, size=16)
    skipped = 0
    for _ in range(num_epochs):
        optimizer.zero_grad()
        starts = list(range(0, n, batch_size))
        for i, start in enumerate(starts):
            x, y = data.images[start : start + batch_size], data.masks[start : start + batch_size]
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = model(x)
            window = min(k, len(starts) - i // k * k)  # the last window may be shorter
            loss = nn.functional.mse_loss(out.float(), y) / window
            (scaler.scale(loss) if scaler else loss).backward()
            if (i + 1) % k == 0 or i + 1 == len(starts):
                if scaler:
                    scaler.unscale_(optimizer)
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                if scaler:
                    before = scaler.get_scale()
                    scaler.step(optimizer)
                    scaler.update()
                    skipped += scaler.get_scale() < before
                else:
                    optimizer.step()
                optimizer.zero_grad()
    return model, skipped


# -- training equals the torch loop ---------------------------------------------------------
def test_fp32_engine_equals_catalysts_device_engine():
    ours, theirs = tiny_net(), tiny_net()
    train(ours, DeviceEngine("cpu"), [OptimizerCallback(metric_key="loss")])
    train(theirs, dl.DeviceEngine("cpu"), [OptimizerCallback(metric_key="loss")])
    assert torch.equal(weights(ours), weights(theirs))


def test_bf16_equals_autocast_by_hand_and_differs_from_fp32():
    model = tiny_net()
    runner, _ = train(model, DeviceEngine("cpu", precision="bf16"), [OptimizerCallback("loss")])
    reference, _ = by_hand("bf16")
    fp32, _ = by_hand("fp32")
    assert torch.allclose(weights(model), weights(reference), atol=1e-6, rtol=0)
    assert not torch.allclose(weights(model), weights(fp32), atol=1e-6, rtol=0)
    assert runner.batch_metrics["loss"].dtype == torch.float32  # computed in fp32


def test_fp16_scaler_with_accumulation_and_clipping_equals_torch_by_hand():
    k, clip = 2, 0.05
    model = tiny_net()
    engine = DeviceEngine("cpu", precision="fp16")
    probe = SteppedProbe()
    _, recorder = train(
        model,
        engine,
        [
            OptimizerCallback(
                "loss", accumulation_steps=k, grad_clip={"mode": "norm", "max": clip}
            ),
            probe,
        ],
        n=20,
        num_epochs=2,
    )
    scaler = torch.amp.GradScaler("cpu")
    reference, skipped = by_hand("fp16", k=k, clip=clip, n=20, num_epochs=2, scaler=scaler)
    assert torch.allclose(weights(model), weights(reference), atol=1e-6, rtol=0)
    assert engine.scaler.state_dict() == scaler.state_dict()
    assert sum(epoch["train"]["skipped_steps"] for epoch in recorder.epochs) == skipped
    # 5 batches per epoch in windows of 2, 2, 1: steps end batches 2, 4 and 5 (unless skipped)
    steps = [i for i, flag in enumerate(probe.flags) if flag]
    assert set(steps) <= {1, 3, 4, 6, 8, 9} and len(steps) == 6 - skipped


def test_fp16_overflow_skips_steps_counts_them_and_the_nan_guard_lets_them_pass():
    huge = 2.0**127  # the scaled gradients overflow float32: the first steps are skipped
    model = tiny_net()
    engine = DeviceEngine("cpu", precision="fp16")
    engine.precision.scaler = torch.amp.GradScaler("cpu", init_scale=huge)
    probe = SteppedProbe()
    _, recorder = train(
        model, engine, [NanGuardCallback(), OptimizerCallback("loss"), probe], n=32, num_epochs=2
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=huge)
    reference, skipped = by_hand("fp16", n=32, num_epochs=2, scaler=scaler)
    assert skipped >= 1
    assert torch.allclose(weights(model), weights(reference), atol=1e-6, rtol=0)
    counted = [epoch["train"]["skipped_steps"] for epoch in recorder.epochs]
    assert sum(counted) == skipped
    assert probe.flags.count(False) == skipped and probe.flags[0] is False


def test_nan_guard_under_fp16_says_the_loss_is_really_non_finite():
    class NanNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x) * float("nan")

    with pytest.raises(PodiumError, match="a real non-finite loss, not an fp16 overflow"):
        train(
            NanNet(),
            DeviceEngine("cpu", precision="fp16"),
            [NanGuardCallback(), OptimizerCallback("loss")],
        )


def test_nan_guard_stops_when_the_fp16_scale_collapses():
    engine = DeviceEngine("cpu", precision="fp16")
    engine.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**-12)
    with pytest.raises(PodiumError, match="non-finite at every scale, not an fp16 overflow"):
        train(tiny_net(), engine, [NanGuardCallback(), OptimizerCallback("loss")])


# -- checkpoints ------------------------------------------------------------------------------
def test_scaler_state_goes_into_checkpoints_and_back_on_resume(tmp_path):
    model = tiny_net()
    engine = DeviceEngine("cpu", precision="fp16")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine.precision.scaler = torch.amp.GradScaler("cpu", init_scale=1234.0)  # a state to carry
    checkpoint = engine.pack_checkpoint(model=model, optimizer=optimizer)
    path = tmp_path / "last_full.pth"
    engine.save_checkpoint(checkpoint, str(path))
    loaded = torch.load(path, weights_only=True)
    assert loaded["scaler"]["scale"] == 1234.0

    again = DeviceEngine("cpu", precision="fp16")
    again.unpack_checkpoint(loaded, model=tiny_net())  # best weights only: the scaler stays
    assert again.scaler.get_scale() == 65536.0
    again.unpack_checkpoint(loaded, model=tiny_net(), optimizer=optimizer)  # a resume
    assert again.scaler.state_dict() == engine.scaler.state_dict()
    assert "scaler" not in DeviceEngine("cpu").pack_checkpoint(model=model)  # fp32: as before
    assert not hasattr(DeviceEngine("cpu", precision="bf16"), "scaler")  # as Catalyst expects


# -- memory format ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "precision, memory_format, channels_last",
    [
        ("fp32", "contiguous", False),
        ("fp32", "auto", False),
        ("bf16", "auto", True),
        ("fp16", "auto", True),
        ("fp32", "channels_last", True),
    ],
)
def test_memory_format_of_model_and_batches(precision, memory_format, channels_last):
    engine = DeviceEngine("cpu", precision=precision, memory_format=memory_format)
    assert engine.precision.channels_last is channels_last
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 1, 1)
    )
    train(model, engine, [OptimizerCallback("loss")], n=8)
    weight = model[1].weight  # 4×4×3×3: its layout tells
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    # a 1-channel batch is both layouts at once: check the conversion on a 3-channel one
    batch = engine.precision.inputs(
        {"image": torch.zeros(2, 3, 4, 4), "mask": torch.zeros(2, 3, 4, 4)}, ["image"]
    )
    assert batch["image"].is_contiguous(memory_format=torch.channels_last) is channels_last
    assert not batch["mask"].is_contiguous(memory_format=torch.channels_last)


def test_channels_last_training_equals_contiguous_training():
    ours, reference = tiny_net(), tiny_net()
    train(ours, DeviceEngine("cpu", memory_format="channels_last"), [OptimizerCallback("loss")])
    train(reference, DeviceEngine("cpu"), [OptimizerCallback("loss")])
    assert torch.allclose(weights(ours), weights(reference), atol=1e-6, rtol=0)


# -- torch.compile ----------------------------------------------------------------------------
def test_compiled_training_equals_eager_and_keeps_the_state_dict_names():
    compiled, eager = tiny_net(), tiny_net()
    engine = DeviceEngine("cpu", compile=True)
    train(compiled, engine, [OptimizerCallback("loss")], num_epochs=2)
    train(eager, DeviceEngine("cpu"), [OptimizerCallback("loss")], num_epochs=2)
    assert compiled._compiled_call_impl is not None  # it really ran compiled
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert torch.allclose(weights(compiled), weights(eager), atol=1e-5, rtol=0)
    fresh = tiny_net(seed=1)
    fresh.load_state_dict(engine.pack_checkpoint(model=compiled)["model_state_dict"])
    assert torch.equal(weights(fresh), weights(compiled))


def test_a_compile_failure_is_one_line_saying_how_to_turn_it_off(monkeypatch):
    import torch._inductor.compile_fx as compile_fx

    def broken(*args, **kwargs):
        raise RuntimeError("no working C++ compiler found\nmore detail")

    monkeypatch.setattr(compile_fx, "compile_fx", broken)
    torch._dynamo.reset()
    with pytest.raises(PodiumError) as error:
        train(tiny_net(), DeviceEngine("cpu", compile=True), [OptimizerCallback("loss")], n=4)
    message = str(error.value)
    assert "torch.compile failed" in message and "no working C++ compiler found" in message
    assert "set engine/compile: false" in message and "\n" not in message
    torch._dynamo.reset()


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, expected",
    [
        (
            {"precision": "fp8"},
            "engine/precision 'fp8' is not supported; expected one of: fp32, bf16, fp16, auto",
        ),
        ({"precision": "bf61"}, 'did you mean "bf16"?'),
        ({"memory_format": "nhwc"}, "engine/memory_format 'nhwc' is not supported"),
        ({"compile": "fastest"}, "engine/compile 'fastest' is not supported"),
        ({"compile": 2}, "engine/compile must be true, false or a mode"),
        (
            {"precision": "fp16", "scaler": {"init_scal": 1024.0}},
            "engine/scaler/init_scal is not a GradScaler setting; expected one of: init_scale, "
            "growth_factor, backoff_factor, growth_interval",
        ),
        (
            {"precision": "bf16", "scaler": {"init_scale": 1024.0}},
            "engine/scaler is for precision fp16 (a loss scale); precision is bf16",
        ),
    ],
)
def test_bad_engine_settings_are_one_line(params, expected):
    for engine in (DeviceEngine, DDPEngine):
        with pytest.raises(PodiumError) as error:
            engine(**params)
        assert expected in str(error.value) and "\n" not in str(error.value)


def test_scaler_settings_reach_the_grad_scaler():
    engine = DeviceEngine("cpu", precision="fp16", scaler={"init_scale": 8.0, "growth_interval": 3})
    assert engine.precision.scaler.get_scale() == 8.0
    assert engine.precision.scaler.get_growth_interval() == 3


def test_fp16_on_hardware_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(precision_module, "autocast_supports", lambda device, dtype: False)
    with pytest.raises(PodiumError, match="engine/precision fp16 is not supported on cpu"):
        DeviceEngine("cpu", precision="fp16")


def test_auto_picks_bf16_only_with_native_support(monkeypatch, capsys):
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    chosen = Precision("auto", "cpu")
    assert chosen.name == "bf16" and "AMX-BF16" in chosen.describe()
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx2", "avx512f"})
    chosen = Precision("auto", "cpu", memory_format="auto")
    assert (chosen.name, chosen.dtype, chosen.channels_last) == ("fp32", None, False)
    assert chosen.describe() == (
        "engine: precision auto -> fp32 (no native bf16 on cpu), memory format auto -> "
        "contiguous, eager"
    )


def test_a_config_with_a_bad_precision_fails_in_one_line(tmp_path, nuclei_data):
    from conftest import catalyst_run

    result = catalyst_run(
        tmp_path / "run",
        nuclei_data,
        "--engine/_target_=podium.runners.engines.DeviceEngine:str",
        "--engine/precision=half:str",
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "podium: error: engine/precision 'half' is not supported; expected one of: "
        "fp32, bf16, fp16, auto"
    )


# -- DDP --------------------------------------------------------------------------------------
def ddp_steps(engine, model, rank):
    """Two SGD steps of `model` through a joined DDPEngine, each rank on 2 of a batch of 4 (as
    `by_hand` steps on the whole batch); returns the DDP-wrapped model."""
    wrapped, _, optimizer, _ = engine.init_components(
        lambda: model,
        lambda: None,
        lambda model: torch.optim.SGD(model.parameters(), lr=0.1),
        lambda optimizer: None,
    )
    data = Tiles(8, size=16)
    for start in (0, 4):
        half = slice(start + 2 * rank, start + 2 * rank + 2)
        out = engine.precision.forward(wrapped, data.images[half])
        engine.backward_loss(nn.functional.mse_loss(out, data.masks[half]), wrapped, optimizer)
        engine.optimizer_step(None, wrapped, optimizer)
        engine.zero_grad(None, wrapped, optimizer)
    return wrapped


def _ddp_worker(rank, port, out_dir):
    import os

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2"
    )
    if rank == 1:  # this rank has no native bf16: auto must give fp32 on both
        precision_module._cpu_flags = lambda: set()
    engine = DDPEngine(backend="gloo", precision="auto", memory_format="auto")
    chosen = (engine.precision.name, engine.precision.channels_last)
    engine.close()
    engine = DDPEngine(backend="gloo", precision="fp16")  # the fp16 step, with DDP's gradient sync
    model = tiny_net()
    ddp_steps(engine, model, rank)
    engine.close()
    torch.save({"chosen": chosen, "weights": weights(model)}, f"{out_dir}/rank{rank}.pt")


def test_ddp_ranks_agree_on_precision_and_step_like_one_process(tmp_path):
    from conftest import run_two_ranks

    from podium.runners.engines import free_port

    run_two_ranks(_ddp_worker, free_port(), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["chosen"] for r in ranks] == [("fp32", False)] * 2
    reference, _ = by_hand("fp16", n=8, scaler=torch.amp.GradScaler("cpu"))
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    # fp16 sums round differently over half batches: equal up to fp16's precision
    assert torch.allclose(ranks[0]["weights"], weights(reference), atol=1e-3, rtol=0)


# -- prediction -------------------------------------------------------------------------------
def test_predictor_in_bf16_channels_last_equals_autocast_by_hand():
    from podium.inference.predictor import Predictor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.softmax(model(images).float(), dim=1)
    fp32 = Predictor(model, device="cpu")(images)
    fast = Predictor(model, device="cpu", precision="bf16", memory_format="auto")
    probabilities = fast(images)
    assert probabilities.dtype == torch.float32
    assert torch.allclose(probabilities, expected, atol=1e-6, rtol=0)
    assert not torch.equal(probabilities, fp32)
    assert torch.allclose(probabilities, fp32, atol=2e-2, rtol=0)
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_predict_config_checks_precision_keys(tmp_path):
    from podium.inference.config import resolve_inference_config

    base = {"models": [{"run": str(tmp_path)}], "out": str(tmp_path / "out")}
    with pytest.raises(PodiumError, match="^precision 'bf8' is not supported"):
        resolve_inference_config({**base, "precision": "bf8"})
    with pytest.raises(PodiumError, match="^memory_format 'nchw' is not supported"):
        resolve_inference_config({**base, "memory_format": "nchw"})
    with pytest.raises(PodiumError, match="^compile 'turbo' is not supported"):
        resolve_inference_config({**base, "compile": "turbo"})
