"""LossStackCallback vs Catalyst's own criterion dict + CriterionCallbacks +
MetricAggregationCallback: same per-epoch losses, same final weights."""

import copy

import pytest
import torch

import podium  # noqa: F401  (compat first: quiets neptune before catalyst imports it)
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import podium.losses as L
from podium.callbacks.loss_stack import LossStackCallback
from podium.errors import PodiumError

WEIGHTS = {"bce": 1.0, "dice": 0.5}
TERMS = {
    "bce": {
        "weight": 1.0,
        "input_key": "logits",
        "target_key": "mask",
        "criterion": {"_target_": "podium.losses.SoftBCEWithLogitsLoss"},
    },
    "dice": {
        "weight": 0.5,
        "input_key": "logits",
        "target_key": "mask",
        "criterion": {"_target_": "podium.losses.DiceLoss", "mode": "binary"},
    },
}


class Recorder(Callback):
    """Copies the loader metrics of every epoch (runs after all metric callbacks)."""

    def __init__(self):
        super().__init__(order=CallbackOrder.external)
        self.epochs, self.batches = [], []

    def on_batch_end(self, runner):
        self.batches.append({k: v for k, v in runner.batch_metrics.items() if k.startswith("loss")})

    def on_loader_end(self, runner):
        self.epochs.append(
            (runner.loader_key, {k: float(v) for k, v in runner.loader_metrics.items()})
        )


def loaders():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(20, 1, 12, 12, generator=g)
    masks = (torch.nn.functional.avg_pool2d(images, 3, 1, 1) > 0.2).float()
    masks[-1] = 0  # one empty mask
    train = DataLoader(TensorDataset(images[:14], masks[:14]), batch_size=4)  # 4+4+4+2: uneven
    valid = DataLoader(TensorDataset(images[14:], masks[14:]), batch_size=4)
    return {"train": train, "valid": valid}


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))


def train(callbacks, criterion=None):
    net = model()
    recorder = Recorder()
    runner = dl.SupervisedRunner(
        input_key="image", output_key="logits", target_key="mask", loss_key="loss"
    )
    runner.train(
        model=net,
        criterion=criterion,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loaders=loaders(),
        callbacks={**callbacks, "recorder": recorder},
        num_epochs=2,
        seed=7,
        verbose=False,
        loggers={"none": NoLogger()},
    )
    return net, recorder


class NoLogger(dl.ILogger):
    def __init__(self):
        super().__init__(log_batch_metrics=False, log_epoch_metrics=False)

    def log_metrics(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def runs():
    stack = train(
        {
            "loss": LossStackCallback(terms=copy.deepcopy(TERMS), metric_key="loss"),
            "optimizer": dl.OptimizerCallback(metric_key="loss"),
        }
    )
    native = train(
        {
            "loss_bce": dl.CriterionCallback(
                input_key="logits", target_key="mask", metric_key="loss_bce", criterion_key="bce"
            ),
            "loss_dice": dl.CriterionCallback(
                input_key="logits", target_key="mask", metric_key="loss_dice", criterion_key="dice"
            ),
            "loss": dl.MetricAggregationCallback(
                metric_key="loss", mode="weighted_sum", metrics={"loss_bce": 1.0, "loss_dice": 0.5}
            ),
            "optimizer": dl.OptimizerCallback(metric_key="loss"),
        },
        criterion={"bce": L.SoftBCEWithLogitsLoss(), "dice": L.DiceLoss(mode="binary")},
    )
    return stack, native


def test_same_epochs_and_weights_as_catalyst_native(runs):
    (stack_net, stack), (native_net, native) = runs
    assert [k for k, _ in stack.epochs] == ["train", "valid"] * 2
    assert [k for k, _ in native.epochs] == [k for k, _ in stack.epochs]
    for (_, ours), (_, theirs) in zip(stack.epochs, native.epochs):
        assert ours["loss_bce"] == theirs["loss_bce"]  # same AdditiveMetric arithmetic: exact
        assert ours["loss_dice"] == theirs["loss_dice"]
        assert ours["loss_bce/std"] == theirs["loss_bce/std"]
        # Catalyst sums the loader means in float32; ours averages the batch totals
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)
    for (name, ours), theirs in zip(
        stack_net.state_dict().items(), native_net.state_dict().values()
    ):
        assert torch.equal(ours, theirs), name
    assert not torch.equal(stack_net[0].weight, model()[0].weight)  # it did train


def test_total_is_the_weighted_sum_of_terms(runs):
    (_, stack), _ = runs
    for batch in stack.batches:
        assert not batch["loss_bce"].requires_grad and not batch["loss_dice"].requires_grad
        expected = WEIGHTS["bce"] * batch["loss_bce"] + WEIGHTS["dice"] * batch["loss_dice"]
        assert torch.allclose(batch["loss"].detach(), expected)
    train_batches = stack.batches[:4]
    assert all(b["loss"].requires_grad for b in train_batches)  # what OptimizerCallback uses
    sizes = [4, 4, 4, 2]
    for (_loader, epoch), start in zip(stack.epochs[::2], (0, 6)):  # train loaders (4 + 2 batches)
        batches = stack.batches[start : start + 4]
        for key in ("loss_bce", "loss_dice", "loss"):
            mean = sum(float(b[key].detach()) * n for b, n in zip(batches, sizes)) / sum(sizes)
            assert epoch[key] == pytest.approx(mean, rel=1e-6), key  # sample-weighted
        assert epoch["loss"] == pytest.approx(
            epoch["loss_bce"] + 0.5 * epoch["loss_dice"], rel=1e-6
        )


def test_unknown_keys_raise_podium_error():
    with pytest.raises(PodiumError, match='"smoth".*did you mean "smooth"'):
        LossStackCallback(
            terms={
                "dice": {
                    "input_key": "logits",
                    "target_key": "mask",
                    "criterion": {"_target_": "podium.losses.DiceLoss", "smoth": 1.0},
                }
            }
        )
    # a torch criterion is checked too (against its signature)
    with pytest.raises(PodiumError, match='"pos_weigth".*did you mean "pos_weight"'):
        LossStackCallback(
            terms={
                "bce": {
                    "input_key": "logits",
                    "target_key": "mask",
                    "criterion": {"_target_": "torch.nn.BCEWithLogitsLoss", "pos_weigth": None},
                }
            }
        )
    with pytest.raises(PodiumError, match='"wieght".*did you mean "weight"'):
        LossStackCallback(
            terms={
                "bce": {
                    "wieght": 2.0,
                    "input_key": "logits",
                    "target_key": "mask",
                    "criterion": {"_target_": "podium.losses.BCEWithLogitsLoss"},
                }
            }
        )
    with pytest.raises(PodiumError, match="needs `criterion`"):
        LossStackCallback(terms={"bce": {"input_key": "logits", "target_key": "mask"}})


def test_built_from_yaml_by_catalyst_registry():
    """The config runner builds callbacks with hydra-slayer, which builds nested `_target_`
    blocks first: the callback then gets modules, and a podium loss's typo is still a
    PodiumError (the cause of hydra-slayer's RuntimeError)."""
    from catalyst.registry import REGISTRY

    params = {
        "_target_": "podium.callbacks.loss_stack.LossStackCallback",
        "metric_key": "loss",
        "terms": copy.deepcopy(TERMS),
    }
    callback = REGISTRY.get_from_params(**params)
    assert (
        isinstance(callback.criteria["dice"], L.DiceLoss) and callback.terms["dice"].weight == 0.5
    )
    params["terms"]["dice"]["criterion"]["smoth"] = 1.0
    with pytest.raises(Exception) as error:
        REGISTRY.get_from_params(**params)
    cause = error.value
    while cause is not None and not isinstance(cause, PodiumError):
        cause = cause.__cause__
    assert cause is not None and 'did you mean "smooth"' in str(cause)


def test_criteria_follow_the_engine_device_and_kwargs_terms():
    class FakeEngine:
        moved = []

        def sync_device(self, module):
            self.moved.append(module)
            return module

    class FakeRunner:
        engine = FakeEngine()

    callback = LossStackCallback(
        terms={
            "geo": {
                "input_key": {"agl": "height", "mag": "magnitude", "xydir": "direction"},
                "target_key": {
                    "agl_gt": "height_target",
                    "mag_gt": "magnitude_target",
                    "xydir_gt": "direction_target",
                },
                "criterion": {"_target_": "podium.losses.HuberCosLoss", "cosine_weight": 2.0},
            },
        }
    )
    callback.on_stage_start(FakeRunner())
    assert FakeEngine.moved == [callback.criteria["geo"]]
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.randn(2, 1, 4, 4, generator=g) for k in ("agl", "agl_gt", "mag", "mag_gt")}
    batch.update(xydir=torch.randn(2, 2, generator=g), xydir_gt=torch.randn(2, 2, generator=g))
    value = callback.terms["geo"](batch)
    expected = L.HuberCosLoss(cosine_weight=2.0)(
        batch["agl"],
        batch["agl_gt"],
        batch["mag"],
        batch["mag_gt"],
        batch["xydir"],
        batch["xydir_gt"],
    )
    assert torch.allclose(value, expected)


def test_loader_means_are_pooled_over_ddp_ranks_by_sample_count():
    """Two simulated ranks with different batch counts/sizes: the loader values are the
    sample-weighted mean (and std) over all batches of both ranks."""
    import numpy as np

    class Engine:
        world_size, device = 2, "cpu"

        def __init__(self, other=None):
            self.other, self.sent = other, None

        def sync_tensor(self, tensor, mode):
            assert mode == "sum"
            self.sent = tensor
            return tensor if self.other is None else tensor + self.other.sent

    class Runner:
        def __init__(self, engine):
            self.engine, self.batch_metrics, self.loader_metrics = engine, {}, {}

    def rank(batches, engine):
        runner = Runner(engine)
        callback = LossStackCallback(
            terms={
                "l1": {
                    "input_key": "x",
                    "target_key": "y",
                    "criterion": {"_target_": "podium.losses.L1Loss"},
                }
            }
        )
        callback.on_loader_start(runner)
        for x, y in batches:
            runner.batch, runner.batch_size = {"x": x, "y": y}, len(x)
            callback.on_batch_end(runner)
        callback.on_loader_end(runner)
        return runner.loader_metrics

    g = torch.Generator().manual_seed(0)

    def make(n):
        return torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)

    batches_b = [make(5)]
    batches_a = [make(2), make(3), make(1)]
    engine_b = Engine()
    rank(batches_b, engine_b)
    pooled = rank(batches_a, Engine(other=engine_b))
    values = np.repeat(
        [float(torch.nn.functional.l1_loss(x, y)) for x, y in batches_a + batches_b],
        [len(x) for x, _ in batches_a + batches_b],
    )
    assert pooled["loss_l1"] == pytest.approx(values.mean(), rel=1e-6)
    assert pooled["loss"] == pytest.approx(values.mean(), rel=1e-6)
    assert pooled["loss_l1/std"] == pytest.approx(values.std(ddof=1), rel=1e-5)
