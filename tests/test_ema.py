"""EMACallback against timm's ModelEmaV3: same decay schedule, same weights, one update per
real optimizer step; validation on the EMA weights; checkpoints, resume and predict."""

import copy
from types import SimpleNamespace

import pytest
import torch
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder
from timm.utils.model_ema import ModelEmaV3
from torch import nn

from podium.callbacks import EMACallback, OptimizerCallback
from podium.checkpoints import EMA_KEY, model_weights
from podium.errors import PodiumError
from test_training_callbacks import Tiles, criterion_cb, loaders, tiny_net, train


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=0), key


class WeightsAfterEachBatch(Callback):
    """The model's weights after every train batch, once the optimizer (maybe) stepped."""

    def __init__(self):
        super().__init__(order=CallbackOrder.Optimizer + 2)
        self.states = []

    def on_batch_end(self, runner):
        if runner.is_train_loader:
            self.states.append(_state(runner.model))


def _timm_replay(initial, states, **ema_kwargs):
    """timm's ModelEmaV3 updated with every state that differs from the one before (the
    optimizer stepped there), with the step count as timm's warm-up step."""
    model = copy.deepcopy(initial)
    reference = ModelEmaV3(model, **ema_kwargs)
    previous, steps = _state(initial), 0
    for state in states:
        if any(not torch.equal(state[k], previous[k]) for k in state):
            steps += 1
            model.load_state_dict(state)
            reference.update(model, step=steps)
        previous = state
    return _state(reference.module), steps


# -- the decay schedule and the steps it counts -------------------------------------------------
@pytest.mark.parametrize("warmup", [True, False])
def test_ema_equals_timm_after_accumulated_steps(warmup):
    """5 batches, accumulation 2 → 3 optimizer steps per epoch, 2 epochs: 6 EMA updates, and
    the weights timm's ModelEmaV3 has after the same 6 steps (warm-up decay included)."""
    model = tiny_net()
    initial = copy.deepcopy(model)
    ema = EMACallback(decay=0.9, warmup=warmup, warmup_power=0.75)
    probe = WeightsAfterEachBatch()
    train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        loaders(4, n=20),
        [criterion_cb(), OptimizerCallback(metric_key="loss", accumulation_steps=2), ema, probe],
        num_epochs=2,
    )
    expected, steps = _timm_replay(
        initial, probe.states, decay=0.9, use_warmup=warmup, warmup_power=0.75
    )
    assert steps == ema.updates == 6 and len(probe.states) == 10
    _assert_same(_state(ema.ema.module), expected, atol=1e-7)
    # not the same as updating after every batch (10 updates)
    every_batch = ModelEmaV3(copy.deepcopy(initial), decay=0.9, use_warmup=warmup)
    for i, state in enumerate(probe.states, 1):
        every_batch.update(_loaded(initial, state), step=i)
    assert not torch.allclose(every_batch.module[0].weight, ema.ema.module[0].weight, atol=1e-5)


def _loaded(initial, state):
    model = copy.deepcopy(initial)
    model.load_state_dict(state)
    return model


def test_ema_with_catalysts_optimizer_callback_counts_its_step_batches():
    """Without runner.optimizer_stepped (Catalyst's own OptimizerCallback): every batch with
    accumulation_steps 1 is a step."""
    model = tiny_net()
    initial = copy.deepcopy(model)
    ema = EMACallback(decay=0.8)
    probe = WeightsAfterEachBatch()
    runner, _ = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        loaders(4, n=12),
        [criterion_cb(), dl.OptimizerCallback(metric_key="loss"), ema, probe],
        num_epochs=2,
    )
    assert not hasattr(runner, "optimizer_stepped")
    expected, steps = _timm_replay(initial, probe.states, decay=0.8, use_warmup=True)
    assert steps == ema.updates == 6
    _assert_same(_state(ema.ema.module), expected, atol=1e-7)


def test_ema_updates_only_where_the_optimizer_stepped():
    """runner.optimizer_stepped False (an accumulation batch, an fp16 step the GradScaler
    skipped) is no update; the warm-up step is the count of real steps."""
    model = tiny_net()
    runner = SimpleNamespace(
        model=model,
        is_train_loader=True,
        callbacks={},
        loader_batch_len=6,
        global_batch_step=0,
    )
    ema = EMACallback(decay=0.95, warmup_gamma=2.0)
    ema.on_loader_start(runner)
    reference = ModelEmaV3(copy.deepcopy(model), decay=0.95, use_warmup=True, warmup_gamma=2.0)
    steps = 0
    for stepped in (True, False, True, False, False, True):
        runner.global_batch_step += 1
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        runner.optimizer_stepped = stepped
        ema.on_batch_end(runner)
        if stepped:
            steps += 1
            reference.update(model, step=steps)
    ema.on_loader_end(runner)  # the last batch was counted already: no second update
    assert ema.updates == 3
    _assert_same(_state(ema.ema.module), _state(reference.module))


def test_warmup_decay_is_timms_formula():
    ema = ModelEmaV3(tiny_net(), decay=0.999, use_warmup=True, warmup_gamma=1.0, warmup_power=2 / 3)
    # 1 - (1 + step) ** (-2/3) with step = optimizer steps - 1; capped at decay
    assert ema.get_decay(1) == 0.0
    assert ema.get_decay(11) == pytest.approx(1 - 11 ** (-2 / 3))
    assert ema.get_decay(10**6) == 0.999


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, "0.9", True])
def test_decay_outside_zero_one_is_one_line(decay):
    with pytest.raises(PodiumError) as error:
        EMACallback(decay=decay)
    assert str(error.value) == f"EMACallback: decay must be a number in (0, 1), got {decay!r}"


# -- validation on the EMA weights ------------------------------------------------------------
def _valid_loss(weights, initial):
    model = _loaded(initial, weights).eval()
    data = Tiles(10, seed=1)
    with torch.no_grad():
        return float(nn.MSELoss()(model(data.images), data.masks))


@pytest.mark.parametrize("validate", [True, False])
def test_valid_loader_runs_on_the_ema_weights_and_training_weights_stay(validate):
    initial = tiny_net()
    plain = copy.deepcopy(initial)
    train(
        plain,
        torch.optim.SGD(plain.parameters(), lr=0.3),
        loaders(10, n=20, valid=True),
        [criterion_cb(), OptimizerCallback(metric_key="loss")],
        num_epochs=2,
    )
    model = copy.deepcopy(initial)
    ema = EMACallback(decay=0.7, validate=validate)
    runner, recorder = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.3),
        loaders(10, n=20, valid=True),
        [criterion_cb(), OptimizerCallback(metric_key="loss"), ema],
        num_epochs=2,
    )
    assert runner.model is model  # back in place after the valid loader
    _assert_same(_state(model), _state(plain))  # the EMA never touched the training weights
    logged = recorder.epochs[-1]["valid"]["loss"]
    ema_loss = _valid_loss(_state(ema.ema.module), initial)
    model_loss = _valid_loss(_state(model), initial)
    assert abs(ema_loss - model_loss) > 1e-4
    assert logged == pytest.approx(ema_loss if validate else model_loss, abs=1e-6)


class FailInValid(Callback):
    def __init__(self, error):
        super().__init__(order=CallbackOrder.Metric)
        self.error = error

    def on_batch_end(self, runner):
        if not runner.is_train_loader:
            raise self.error


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_in_validation_leaves_the_training_model_in_place(error):
    model = tiny_net()
    ema = EMACallback(decay=0.9)
    runner = dl.SupervisedRunner(input_key="image", output_key="logits", target_key="mask")
    with pytest.raises(type(error)):
        runner.train(
            model=model,
            criterion=nn.MSELoss(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loaders=loaders(10, n=20, valid=True),
            callbacks=[
                criterion_cb(),
                OptimizerCallback(metric_key="loss"),
                ema,
                FailInValid(error),
            ],
            num_epochs=1,
            verbose=False,
        )
    assert runner.model is model and ema._training_model is None
    assert not torch.equal(ema.ema.module[0].weight, model[0].weight)


# -- checkpoints: both sets; predict picks ----------------------------------------------------
def test_model_weights_picks_ema_when_there_and_says_when_asked_for_missing(tmp_path):
    trained, averaged = _state(tiny_net(0)), _state(tiny_net(1))
    both = tmp_path / "both.pth"
    torch.save({"model_state_dict": trained, EMA_KEY: averaged}, both)
    _assert_same(model_weights(both), averaged)  # auto
    _assert_same(model_weights(both, ema=True), averaged)
    _assert_same(model_weights(both, ema=False), trained)
    plain = tmp_path / "plain.pth"
    torch.save({"model_state_dict": trained}, plain)
    _assert_same(model_weights(plain), trained)
    with pytest.raises(PodiumError, match=f"checkpoint {plain} holds no EMA weights"):
        model_weights(plain, ema=True)


def test_inference_config_ema_key_and_flags():
    from podium.inference.config import apply_flags, resolve_inference_config

    base = {"models": [{"run": "r"}], "out": "o"}
    assert resolve_inference_config(base)["ema"] == "auto"
    assert resolve_inference_config(apply_flags(base, {"ema": False}))["ema"] is False
    assert resolve_inference_config(dict(base, ema=True))["ema"] is True
    with pytest.raises(PodiumError, match="ema must be true or false .or auto"):
        resolve_inference_config(dict(base, ema="yes"))


def test_cv_and_submit_pass_the_ema_choice_on(tmp_path):
    from argparse import Namespace

    from podium.cli import cv as cv_cli, submit as submit_cli

    assert "ema" not in cv_cli._predict_settings(None, None, tmp_path / "run")  # cv.yml as before
    assert cv_cli._predict_settings(None, None, tmp_path / "run", ema=False)["ema"] is False
    args = Namespace(checkpoint="average", data=tmp_path, progress=False, ema=None)
    config = submit_cli._inference_config(
        {"ema": True}, [tmp_path / "fold_0"], args, "none", {}, tmp_path
    )
    assert config["ema"] is True  # podium cv's choice
    assert config["models"] == [{"run": str(tmp_path / "fold_0"), "checkpoint": ["average"]}]
    args.ema = False
    assert submit_cli._inference_config({}, [tmp_path], args, "none", {}, tmp_path)["ema"] is False
