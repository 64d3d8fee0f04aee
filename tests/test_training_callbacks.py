"""Training callbacks: freezing, accumulation/clipping, LR schedules, NaN guard, throughput.

Tiny in-process Catalyst runs (a small conv net on random tensors, CPU, no logdir).
"""

import copy
import math
import time
from collections import OrderedDict

import pytest
import torch

import podium  # noqa: F401  (first: podium.compat patches Catalyst)
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder
from catalyst.loggers import ConsoleLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from podium.callbacks.freeze import FreezeCallback, UnfreezeCallback, encoder_blocks
from podium.callbacks.nan_guard import NanGuardCallback
from podium.callbacks.optimizer import OptimizerCallback
from podium.callbacks.schedulers import OneCycleCallback, WarmupCosineCallback
from podium.callbacks.timer import ThroughputCallback
from podium.errors import PodiumError


# -- helpers ------------------------------------------------------------------------------------
class Tiles(Dataset):
    """`n` random 1×8×8 images with a regression target, named s_000 …; optional delay."""

    def __init__(self, n: int, seed: int = 0, delay: float = 0.0, size: int = 8):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 1, size, size, generator=generator)
        self.masks = torch.randn(n, 1, size, size, generator=generator)
        self.delay = delay

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return {"image": self.images[i], "mask": self.masks[i], "name": f"s_{i:03d}"}


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))


def loaders(batch_size: int, n: int = 24, valid: bool = False, **kwargs) -> OrderedDict:
    out = OrderedDict(train=DataLoader(Tiles(n, **kwargs), batch_size=batch_size, shuffle=False))
    if valid:
        out["valid"] = DataLoader(Tiles(n // 2, seed=1, **kwargs), batch_size=batch_size)
    return out


class Recorder(ConsoleLogger):
    """A silent console logger that keeps the epoch metrics."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def log_metrics(self, metrics, scope=None, **kwargs):
        if scope == "epoch":
            self.epochs.append(copy.deepcopy(dict(metrics)))


class StepProbe(Callback):
    """Records the lr each optimizer step used (runs right after podium's OptimizerCallback)."""

    def __init__(self):
        super().__init__(order=CallbackOrder.Optimizer + 1)
        self.lrs = []

    def on_batch_end(self, runner):
        opt_cb = next(c for c in runner.callbacks.values() if isinstance(c, OptimizerCallback))
        if runner.is_train_loader and opt_cb.stepped:  # the scheduler has not stepped yet
            self.lrs.append(runner.optimizer.param_groups[0]["lr"])


def criterion_cb(key="loss"):
    return dl.CriterionCallback(input_key="logits", target_key="mask", metric_key=key)


def train(
    model,
    optimizer,
    loaders_,
    callbacks,
    num_epochs=1,
    scheduler=None,
    criterion=None,
    loggers=None,
):
    runner = dl.SupervisedRunner(
        input_key="image", output_key="logits", target_key="mask", loss_key="loss"
    )
    recorder = Recorder()
    runner.train(
        model=model,
        criterion=criterion or nn.MSELoss(),
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=loaders_,
        callbacks=callbacks,
        num_epochs=num_epochs,
        loggers={"_console": recorder, **(loggers or {})},
        verbose=False,
        seed=0,
    )
    return runner, recorder


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def state(module):
    """Parameters and floating-point buffers (BatchNorm running statistics)."""
    buffers = [b.detach().flatten() for b in module.buffers() if b.is_floating_point()]
    return torch.cat([weights(module), *buffers])


# -- gradient accumulation and clipping ---------------------------------------------------------
def test_accumulation_equals_one_big_batch_and_catalyst_sums():
    """k=3 batches of 4 == one batch of 12 (SGD, no BatchNorm); Catalyst's takes 3× the step."""
    k, b = 3, 4
    big = tiny_net()
    train(
        big,
        torch.optim.SGD(big.parameters(), lr=0.5),
        loaders(k * b),
        [criterion_cb(), dl.OptimizerCallback(metric_key="loss")],
        num_epochs=2,
    )

    accumulated = tiny_net()
    train(
        accumulated,
        torch.optim.SGD(accumulated.parameters(), lr=0.5),
        loaders(b),
        [criterion_cb(), OptimizerCallback(metric_key="loss", accumulation_steps=k)],
        num_epochs=2,
    )
    assert torch.allclose(weights(accumulated), weights(big), atol=1e-6, rtol=0)

    # Catalyst 21.12: the k gradients are summed, the step is k times too large
    start = weights(tiny_net())
    one_big = tiny_net()
    train(
        one_big,
        torch.optim.SGD(one_big.parameters(), lr=0.5),
        loaders(k * b, n=k * b),
        [criterion_cb(), dl.OptimizerCallback(metric_key="loss")],
    )
    catalyst = tiny_net()
    train(
        catalyst,
        torch.optim.SGD(catalyst.parameters(), lr=0.5),
        loaders(b, n=k * b),
        [criterion_cb(), dl.OptimizerCallback(metric_key="loss", accumulation_steps=k)],
    )
    assert not torch.allclose(weights(catalyst), weights(one_big), atol=1e-4)
    assert torch.allclose(weights(catalyst) - start, k * (weights(one_big) - start), atol=1e-6)


def test_accumulation_steps_at_loader_end_when_not_a_multiple():
    """5 batches of 4, k=2: windows of 2, 2, 1 batches == batches of 8, 8, 4, every epoch."""
    reference = tiny_net()
    train(
        reference,
        torch.optim.SGD(reference.parameters(), lr=0.5),
        loaders(8, n=20),
        [criterion_cb(), dl.OptimizerCallback(metric_key="loss")],
        num_epochs=2,
    )
    model = tiny_net()
    runner, recorder = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        loaders(4, n=20),
        [criterion_cb(), OptimizerCallback(metric_key="loss", accumulation_steps=2)],
        num_epochs=2,
    )
    assert torch.allclose(weights(model), weights(reference), atol=1e-6, rtol=0)
    assert recorder.epochs[-1]["train"]["grad_norm"] > 0


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_once_before_the_step_equals_torch_by_hand(mode):
    k, b, limit, lr = 2, 4, (0.05 if mode == "norm" else 0.002), 0.5
    model = tiny_net()
    _, recorder = train(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        loaders(b, n=16),
        [
            criterion_cb(),
            OptimizerCallback(
                metric_key="loss", accumulation_steps=k, grad_clip={"mode": mode, "max": limit}
            ),
        ],
    )

    by_hand = tiny_net()
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=lr)
    data = Tiles(16)
    norms = []
    for window in range(0, 16, k * b):
        optimizer.zero_grad()
        for start in range(window, window + k * b, b):
            x, y = data.images[start : start + b], data.masks[start : start + b]
            (nn.functional.mse_loss(by_hand(x), y) / k).backward()
        if mode == "norm":
            norms.append(float(torch.nn.utils.clip_grad_norm_(by_hand.parameters(), limit)))
        else:
            norms.append(float(torch.nn.utils.clip_grad_norm_(by_hand.parameters(), math.inf)))
            torch.nn.utils.clip_grad_value_(by_hand.parameters(), limit)
        optimizer.step()
    assert min(norms) > limit  # clipping was active
    assert torch.allclose(weights(model), weights(by_hand), atol=1e-6, rtol=0)
    # the logged norm is the pre-clip norm, averaged over the loader's steps
    assert recorder.epochs[0]["train"]["grad_norm"] == pytest.approx(sum(norms) / len(norms))


def test_optimizer_callback_rejects_bad_grad_clip():
    with pytest.raises(PodiumError, match="grad_clip mode"):
        OptimizerCallback(metric_key="loss", grad_clip={"mode": "l2", "max": 1.0})
    with pytest.raises(PodiumError, match="accumulation_steps"):
        OptimizerCallback(metric_key="loss", accumulation_steps=0)


# -- LR schedules -------------------------------------------------------------------------------
def _schedule_run(scheduler_cb, num_epochs=3, lr=0.1, **optimizer_kwargs):
    """5 batches of 4 per epoch, k=2 → 3 optimizer steps per epoch."""
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, **optimizer_kwargs)
    probe = StepProbe()
    runner, _ = train(
        model,
        optimizer,
        loaders(4, n=20),
        [
            criterion_cb(),
            OptimizerCallback(metric_key="loss", accumulation_steps=2),
            scheduler_cb,
            probe,
        ],
        num_epochs=num_epochs,
    )
    return runner, probe.lrs


def test_one_cycle_total_steps_from_the_loader_equals_torch():
    callback = OneCycleCallback(max_lr=0.4, pct_start=0.3)
    runner, lrs = _schedule_run(callback, momentum=0.9)
    total = math.ceil(5 / 2) * 3  # ceil(batches / accumulation) × epochs, by hand
    assert callback.total_steps == total == len(lrs)
    assert runner.scheduler is callback.scheduler  # checkpoints keep its state

    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=0.4, total_steps=total, pct_start=0.3
    )
    expected = []
    for _ in range(total):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        one_cycle.step()
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_warmup_cosine_equals_the_formula():
    callback = WarmupCosineCallback(warmup_epochs=1, min_lr=0.001)
    _, lrs = _schedule_run(callback, lr=0.1)
    total, warmup, base, low = 9, 3, 0.1, 0.001
    expected = [
        base * (t + 1) / warmup
        if t < warmup
        else low + (base - low) * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        for t in range(total)
    ]
    assert callback.total_steps == total and callback.num_warmup_steps == warmup
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[warmup - 1] == pytest.approx(base)


def test_schedule_callback_refuses_a_second_scheduler():
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    with pytest.raises(PodiumError, match="scheduler"):
        train(
            model,
            optimizer,
            loaders(4, n=8),
            [
                criterion_cb(),
                OptimizerCallback(metric_key="loss"),
                dl.SchedulerCallback(),
                OneCycleCallback(max_lr=0.1),
            ],
            scheduler=scheduler,
        )


def test_reduce_on_plateau_works_with_catalyst_scheduler_callback():
    class ConstantScore(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.Metric)

        def on_loader_end(self, runner):
            runner.loader_metrics["score"] = 1.0  # never improves

    def run(scheduler_callback):
        model = tiny_net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=0
        )
        return train(
            model,
            optimizer,
            loaders(4, n=8, valid=True),
            [
                criterion_cb(),
                OptimizerCallback(metric_key="loss"),
                ConstantScore(),
                scheduler_callback,
            ],
            scheduler=plateau,
            num_epochs=3,
        )

    _, recorder = run(dl.SchedulerCallback(loader_key="valid", metric_key="score"))
    assert [e["_epoch_"]["lr"] for e in recorder.epochs] == pytest.approx([0.1, 0.05, 0.025])
    with pytest.raises(AssertionError, match="loader_key"):  # Catalyst needs both keys
        run(dl.SchedulerCallback())


# -- freeze / unfreeze --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seg_model():
    from podium.models import build_segmentation_model

    return build_segmentation_model(encoder="test_resnet", in_channels=1, decoder_channels=8)


def test_encoder_blocks_are_the_timm_feature_stages(seg_model):
    import timm

    blocks = encoder_blocks(seg_model.encoder)
    assert len(blocks) == 5  # stem, layer1 … layer4
    assert sum(p.numel() for b in blocks for p in b.parameters()) == sum(
        p.numel() for p in seg_model.encoder.parameters()
    )
    classifier = timm.create_model("test_resnet", pretrained=False)
    assert len(encoder_blocks(classifier)) == 6  # … + global pool / fc
    assert list(encoder_blocks(classifier)[-1].parameters())[-1] is classifier.fc.bias


def test_freeze_all_but_last_and_unfreeze_at_epoch_in_a_config_run(seg_model):
    """catalyst-dl's ConfigRunner: every parameter is in the optimizer, so unfreezing works."""
    from catalyst.runners.config import SupervisedConfigRunner

    model = copy.deepcopy(seg_model)
    blocks = encoder_blocks(model.encoder)
    snapshots = []

    class Snapshot(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.ExternalExtra)

        def on_epoch_end(self, runner):
            snapshots.append([state(b).clone() for b in blocks] + [weights(model.decoder)])

    class Runner(SupervisedConfigRunner):
        def get_model(self, stage):
            return model

        def get_datasets(self, stage):
            return OrderedDict(train=Tiles(8, size=32))

        def get_loggers(self):
            return {"_console": Recorder()}

        def get_callbacks(self, stage):
            return OrderedDict(super().get_callbacks(stage), snapshot=Snapshot())

    config = {
        "args": {"seed": 0},
        "stages": {
            "train": {
                "num_epochs": 3,
                "loaders": {"batch_size": 4, "num_workers": 0},
                "criterion": {"_target_": "torch.nn.MSELoss"},
                "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.01},
                "callbacks": {
                    "loss": {
                        "_target_": "catalyst.callbacks.CriterionCallback",
                        "input_key": "logits",
                        "target_key": "mask",
                        "metric_key": "loss",
                    },
                    "optimizer": {
                        "_target_": "podium.callbacks.optimizer.OptimizerCallback",
                        "metric_key": "loss",
                    },
                    "freeze": {
                        "_target_": "podium.callbacks.freeze.FreezeCallback",
                        "all_but_last": 2,
                        "freeze_bn": True,
                    },
                    "unfreeze": {
                        "_target_": "podium.callbacks.freeze.UnfreezeCallback",
                        "epoch": 3,
                        "last": 4,
                    },
                },
            }
        },
    }
    runner = Runner(
        config=config, input_key="image", output_key="logits", target_key="mask", loss_key="loss"
    )
    before = [state(b).clone() for b in blocks]
    runner.run()
    if runner.exception is not None:
        raise runner.exception

    held = {id(p) for g in runner.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in model.parameters())  # frozen ones too
    epoch1, epoch2, epoch3 = snapshots
    for i in range(3):  # frozen blocks: fixed for 2 epochs (BatchNorm statistics too)
        assert torch.equal(epoch2[i], before[i])
    for i in (3, 4):  # the last two blocks train from the start
        assert not torch.equal(epoch1[i], before[i])
    assert not torch.equal(epoch1[5], epoch2[5])  # decoder trains
    assert torch.equal(epoch3[0], before[0])  # `last: 4` leaves the stem frozen
    for i in (1, 2):  # unfrozen at epoch 3: the optimizer updates them
        assert not torch.equal(epoch3[i], epoch2[i])


def test_unfreeze_adds_params_the_optimizer_does_not_hold():
    model = nn.Sequential(
        OrderedDict(
            encoder=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)),
            head=nn.Conv2d(4, 1, 1),
        )
    )
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=0.01)  # trainable params only
    unfreeze = UnfreezeCallback(epoch=2, module="encoder", lr=0.001)
    start = weights(model.encoder).clone()
    train(
        model,
        optimizer,
        loaders(4, n=8),
        [criterion_cb(), OptimizerCallback(metric_key="loss"), unfreeze],
        num_epochs=2,
    )
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["lr"] == 0.001
    assert len(unfreeze.added_params) == 4
    assert not torch.equal(weights(model.encoder), start)


def test_freeze_rejects_bad_arguments(seg_model):
    with pytest.raises(PodiumError, match="at most one"):
        FreezeCallback(first=1, last=1)
    runner = type("R", (), {"model": seg_model})()
    with pytest.raises(PodiumError, match="only 5 blocks"):
        FreezeCallback(last=7).blocks(runner)
    with pytest.raises(PodiumError, match='no module "backbone"'):
        FreezeCallback(module="backbone").blocks(runner)


# -- NaN guard ----------------------------------------------------------------------------------
class NanAt(nn.Module):
    """tiny_net whose output for one sample turns NaN at the `at`-th training forward."""

    def __init__(self, at: int, sample: int = 1):
        super().__init__()
        self.net = tiny_net()
        self.at, self.sample, self.calls = at, sample, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out = out.clone()
                out[self.sample] = float("nan")
        return out


def test_nan_guard_names_the_term_and_where():
    model = NanAt(at=8)  # 5 batches per epoch: batch 3 of epoch 2
    good = []

    class Keep(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.ExternalExtra)

        def on_batch_end(self, runner):
            good.append(weights(model).clone())

    callbacks = [
        dl.CriterionCallback(
            input_key="logits", target_key="mask", metric_key="loss_mse", criterion_key="mse"
        ),
        dl.CriterionCallback(
            input_key="logits", target_key="mask", metric_key="loss_l1", criterion_key="l1"
        ),
        dl.MetricAggregationCallback(
            metric_key="loss", metrics=["loss_mse", "loss_l1"], mode="sum"
        ),
        NanGuardCallback(batch_keys=["image", "logits"]),
        OptimizerCallback(metric_key="loss"),
        Keep(),
    ]
    with pytest.raises(PodiumError) as error:
        train(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loaders(4, n=20),
            callbacks,
            num_epochs=3,
            criterion={"mse": nn.MSELoss(), "l1": nn.L1Loss()},
        )
    message = str(error.value)
    assert "\n" not in message
    for part in (
        "stage train",
        "epoch 2 of 3",
        "loader train",
        "batch 3 of 5",
        "loss_mse=nan",
        "loss_l1=nan",
        "loss=nan",
        "samples: s_008, s_009",
        "image: finite",
        "logits: non-finite in samples s_009",
    ):
        assert part in message, (part, message)
    # stopped before the optimizer step: the weights are those of the last good batch
    assert torch.isfinite(weights(model)).all()
    assert torch.equal(weights(model), good[-1])


# -- throughput ---------------------------------------------------------------------------------
def test_throughput_lands_in_epoch_metrics_and_csv(tmp_path):
    from catalyst.loggers import CSVLogger

    n, delay = 16, 0.004
    model = tiny_net()
    started = time.perf_counter()
    _, recorder = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loaders(4, n=n, valid=True, delay=delay),
        [criterion_cb(), OptimizerCallback(metric_key="loss"), ThroughputCallback()],
        loggers={"csv": CSVLogger(logdir=str(tmp_path))},
    )
    wall = time.perf_counter() - started
    for loader, size in (("train", n), ("valid", n // 2)):
        metrics = recorder.epochs[0][loader]
        speed, seconds = metrics["images_per_s"], metrics["time/loader_s"]
        assert speed > 0
        assert speed * seconds == pytest.approx(size)  # len(dataset) / elapsed
        assert seconds < wall and speed > size / wall
        assert metrics["time/data_s"] >= size * delay  # the dataset's sleeps are data time
        assert metrics["time/data_s"] + metrics["time/model_s"] <= seconds + 1e-6
        assert 0 < metrics["time/data_fraction"] < 1
    header = (tmp_path / "train.csv").read_text().splitlines()[0]
    assert "images_per_s" in header and "time/data_fraction" in header
