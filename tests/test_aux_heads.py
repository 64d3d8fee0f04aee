"""Auxiliary heads on segmentation models (issue 17 part 6): outputs, presence targets, CSV
column targets, the loss stack with the aux term, a real training run of the presence config,
predict's presence gating (TTA, tiles, checkpoints), tune-postprocess's presence threshold on
constructed maps, and bad input."""

import json
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO, catalyst_run, catalyst_run_in_process
from podium.callbacks.loss_stack import LossStackCallback
from podium.cli.main import main as podium_main
from podium.datasets import build_segmentation_datasets
from podium.errors import PodiumError
from podium.inference import Predictor, TiledPrediction
from podium.inference.postprocess import PostProcess
from podium.inference.postprocess_search import tune
from podium.inference.probability_maps import (
    read_presence,
    read_probability_map,
    write_presence,
    write_probability_map,
)
from podium.inference.tta import build_tta
from podium.losses import presence_targets
from podium.models import create_model
from podium.targets import call_target

CONFIG = REPO / "configs" / "nuclei" / "unet_resnet18_presence.yml"
HEADS = {"presence": {"type": "presence"}, "scale": {"type": "regression", "outputs": 2}}


def _model(name="unet", num_classes=2, aux_heads=HEADS):
    torch.manual_seed(0)
    return create_model(
        name, encoder="resnet18", in_channels=1, num_classes=num_classes, aux_heads=aux_heads
    ).eval()


# ------------------------------------------------------------------------------ model
@pytest.mark.parametrize("name", ["unet", "fpn"])
def test_outputs_keys_shapes_and_head_math(name):
    model = _model(name)
    images = torch.randn(3, 1, 70, 45)
    with torch.no_grad():
        out = model(images)
        deepest = model.encoder(F.pad(images, (0, 19, 0, 26), mode="reflect"))[-1]
    assert set(out) == {"logits", "presence", "scale"}
    assert out["logits"].shape == (3, 2, 70, 45)
    assert out["presence"].shape == (3, 2) and out["scale"].shape == (3, 2)
    # smp's ClassificationHead: mean over the coarsest map, then the linear layer
    linear = model.aux_heads["presence"][-1]
    expected = deepest.mean(dim=(2, 3)) @ linear.weight.T + linear.bias
    torch.testing.assert_close(out["presence"], expected)


def test_without_aux_heads_nothing_changes():
    plain, empty = _model(aux_heads=None), _model(aux_heads={})
    with_heads = _model()
    assert isinstance(plain(torch.randn(1, 1, 32, 32)), torch.Tensor)
    assert list(plain.state_dict()) == list(empty.state_dict())
    extra = set(with_heads.state_dict()) - set(plain.state_dict())
    assert extra and all(key.startswith("aux_heads.") for key in extra)


# ------------------------------------------------------------------------------ targets
def test_presence_targets_by_hand():
    binary = torch.zeros(3, 1, 4, 4)
    binary[0, 0, 1, 2] = 1.0
    binary[2, 0, 0, 0] = 0.4  # soft value below 0.5: not on
    assert presence_targets(binary).tolist() == [[1.0], [0.0], [0.0]]
    multilabel = torch.zeros(2, 3, 4, 4)
    multilabel[0, 2, 3, 3] = 1
    multilabel[1, 0, 0, 0] = 1
    multilabel[1, 1] = 255.0  # all ignored
    assert presence_targets(multilabel, ignore_value=255.0).tolist() == [
        [0, 0, 1],
        [1, 0, 0],
    ]
    multiclass = torch.tensor([[[0, 0], [2, 255]], [[1, 1], [1, 255]]])
    assert presence_targets(multiclass, num_classes=3, ignore_value=255).tolist() == [
        [1, 0, 1],
        [0, 1, 0],
    ]
    with pytest.raises(PodiumError, match="num_classes"):
        presence_targets(multiclass)


def _data_with_gsd(nuclei_data, tmp_path):
    """A copy of the nuclei sample whose split.csv has a gsd column (0.25 + row / 100)."""
    root = tmp_path / "nuclei"
    shutil.copytree(nuclei_data, root)
    split = (root / "split.csv").read_text().splitlines()
    rows = [split[0] + ",gsd"] + [f"{line},{0.25 + i / 100}" for i, line in enumerate(split[1:])]
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    return root


def test_csv_columns_become_batch_keys(nuclei_data, tmp_path):
    root = _data_with_gsd(nuclei_data, tmp_path)
    table = {
        line.split(",")[0]: float(line.split(",")[-1])
        for line in (root / "split.csv").read_text().splitlines()[1:]
    }
    datasets = build_segmentation_datasets(root, columns=["gsd"])
    for dataset in datasets.values():
        for index in (0, len(dataset) - 1):
            item = dataset[index]
            assert item["gsd"].dtype == torch.float32 and item["gsd"].shape == (1,)
            assert item["gsd"].item() == pytest.approx(table[item["name"]])


def test_regression_head_trains_on_a_csv_column(nuclei_data, tmp_path):
    """A batch of the dataset → a scale head → the loss stack's Huber term vs torch's."""
    root = _data_with_gsd(nuclei_data, tmp_path)
    dataset = build_segmentation_datasets(root, columns=["gsd"])["valid"]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    model = _model(num_classes=1, aux_heads={"scale": {"type": "regression"}})
    batch.update(model(batch["image"]))
    stack = LossStackCallback(
        terms={
            "scale": {
                "input_key": "scale",
                "target_key": "gsd",
                "criterion": {"_target_": "podium.losses.HuberLoss", "ignore_value": float("nan")},
            }
        }
    )
    runner = SimpleNamespace(batch=batch, batch_size=4, batch_metrics={})
    stack.on_loader_start(runner)
    stack.on_batch_end(runner)
    assert batch["gsd"].shape == batch["scale"].shape == (4, 1)
    expected = F.huber_loss(batch["scale"], batch["gsd"], delta=1.0)
    torch.testing.assert_close(runner.batch_metrics["loss"], expected)


# ------------------------------------------------------------------------------ loss stack
def test_loss_stack_adds_the_presence_term_as_configured():
    """The config's own presence-target callback and loss stack vs a hand computation."""
    callbacks = yaml.safe_load(CONFIG.read_text())["stages"]["train"]["callbacks"]
    target_callback = call_target(callbacks["presence_target"], "presence_target")
    stack = LossStackCallback(**{k: v for k, v in callbacks["loss"].items() if k != "_target_"})
    model = _model(num_classes=1, aux_heads={"presence": {"type": "presence"}})
    mask = torch.zeros(4, 1, 32, 32)
    mask[0, 0, 3:9, 4:8] = 1
    mask[2, 0, 20:, 20:] = 1
    runner = SimpleNamespace(batch={"image": torch.randn(4, 1, 32, 32), "mask": mask})
    target_callback.on_batch_start(runner)
    runner.batch.update(model(runner.batch["image"]))
    runner.batch_size, runner.batch_metrics = 4, {}
    stack.on_loader_start(runner)
    stack.on_batch_end(runner)

    logits, presence = runner.batch["logits"], runner.batch["presence"]
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    torch.testing.assert_close(runner.batch["presence_target"], target)
    probs = torch.sigmoid(logits)
    dice = 1 - (2 * (probs * mask).sum() + 0) / (probs.sum() + mask.sum()).clamp_min(1e-7)
    expected = (
        F.binary_cross_entropy_with_logits(logits, mask)
        + dice
        + 0.2 * F.binary_cross_entropy_with_logits(presence, target)
    )
    torch.testing.assert_close(
        runner.batch_metrics["loss_presence"], F.binary_cross_entropy_with_logits(presence, target)
    )
    torch.testing.assert_close(runner.batch_metrics["loss"], expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ predictor
class _MaxPresence(torch.nn.Module):
    """Maps = the image, presence = its largest value: gating and tiles are checkable by hand."""

    def forward(self, image):
        return {"logits": image, "presence": image.flatten(1).amax(dim=1, keepdim=True)}


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.kind = "presence"


def _max_model():
    model = _MaxPresence()
    model.aux_heads = torch.nn.ModuleDict({"presence": _Head()})
    return model


def test_predictor_presence_over_tta_views_and_tiles():
    torch.manual_seed(1)
    model = _model(num_classes=1, aux_heads={"presence": {"type": "presence"}})
    images = torch.randn(2, 1, 40, 56)
    maps, presence = Predictor(model, device="cpu", tta=build_tta("d4")).outputs(images)
    views = [images, images.flip(-1), images.flip(-2), images.flip(-1, -2)]
    views += [v.transpose(-1, -2) for v in views]
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(model(v)["presence"]) for v in views]).mean(0)
    torch.testing.assert_close(presence, expected, rtol=1e-5, atol=1e-6)
    assert maps.shape == (2, 1, 40, 56)

    images = torch.rand(3, 1, 50, 70) * 4 - 2
    tiles = TiledPrediction(24, 8, "mean", batch_size=4)
    _, presence = Predictor(_max_model(), device="cpu", tiles=tiles).outputs(images)
    expected = torch.sigmoid(images.flatten(1).amax(1, keepdim=True))
    torch.testing.assert_close(presence, expected)  # the highest over the tiles
    assert Predictor(model, device="cpu").outputs(images[:, :, :32, :32])[1].shape == (3, 1)
    plain = _model(num_classes=1, aux_heads=None)
    assert Predictor(plain, device="cpu").outputs(images)[1] is None


def test_postprocess_presence_threshold_blanks_below_it():
    probabilities = np.full((1, 4, 4), 0.9, np.float32)
    post = PostProcess(presence_threshold=0.5)
    assert post(probabilities, np.array([0.49])).sum() == 0
    assert post(probabilities, np.array([0.2, 0.5])).sum() == 16  # the highest class counts
    assert PostProcess()(probabilities).sum() == 16
    multiclass = np.zeros((3, 4, 4), np.float32)
    multiclass[2] = 0.9  # class 2 everywhere
    gate = PostProcess(mode="multiclass", presence_threshold=0.5)
    assert gate(multiclass, np.array([1.0, 0.2, 0.4])).sum() == 0  # background's 1.0 not counted
    assert gate(multiclass, np.array([1.0, 0.2, 0.6])).sum() == 2 * 16
    with pytest.raises(PodiumError, match="presence head"):
        post(probabilities)


# ------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def presence_run(tmp_path_factory, nuclei_data):
    logdir = tmp_path_factory.mktemp("aux") / "run"
    result = catalyst_run(logdir, nuclei_data, "--stages/train/num_epochs=1:int", config=CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir


def _masks(folder):
    return {p.stem: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("*.png"))}


def test_training_logs_the_aux_term_and_predict_gates_by_presence(
    presence_run, nuclei_data, tmp_path
):
    header = (presence_run / "logs" / "train.csv").read_text().splitlines()[0].split(",")
    assert {"loss_presence", "presence_accuracy", "dice"} <= set(header)

    base = ["predict", "--run", str(presence_run), "--data", str(nuclei_data)]
    base += ["--split", "valid", "--no-progress"]
    assert podium_main(base + ["--out", str(tmp_path / "all"), "--probabilities"]) == 0
    maps = tmp_path / "all" / "probabilities"
    presence = {
        name: float(read_presence(maps, name)[0]) for name in _masks(tmp_path / "all/masks")
    }
    ordered = sorted(presence.values())
    threshold = (ordered[1] + ordered[2]) / 2  # two images below, the others above
    assert (
        podium_main(
            base + ["--out", str(tmp_path / "gated"), "--presence-threshold", str(threshold)]
        )
        == 0
    )
    ungated, gated = _masks(tmp_path / "all" / "masks"), _masks(tmp_path / "gated" / "masks")
    assert set(gated) == set(presence)
    for name, p in presence.items():
        if p < threshold:
            assert ungated[name].any() and not gated[name].any(), name
        else:
            np.testing.assert_array_equal(gated[name], ungated[name])


def test_an_export_carries_the_presence_head_and_predict_model_gates_like_run(
    presence_run, nuclei_data, tmp_path
):
    """`podium export` of a run with a presence head: the graph's second output is its presence
    (TTA inside, averaged over the views as the torch predictor does), and `predict --model`
    writes the presence and the gated masks `predict --run` writes."""
    from podium.inference.onnx_metadata import open_session
    from podium.inference.pipeline import load_models

    path = tmp_path / "presence.onnx"
    export = ["export", "--run", str(presence_run), "--out", str(path), "--tta", "d2", "--verify"]
    assert podium_main(export) == 0
    session = open_session(path)
    assert [output.name for output in session.get_outputs()] == ["probabilities", "presence"]
    model = load_models([{"run": str(presence_run), "checkpoint": "best", "weight": 1.0}])[0]
    images = torch.randn(
        2, model.in_channels or 1, 75, 133, generator=torch.Generator().manual_seed(1)
    )
    predictor = Predictor(model.model, torch.device("cpu"), mode=model.mode, tta=build_tta("d2"))
    maps, presence = predictor.outputs(images)
    got_maps, got_presence = session.run(None, {"image": images.numpy()})
    assert got_presence.shape == tuple(presence.shape) == (2, 1)
    assert np.abs(got_presence - presence.numpy()).max() <= 1e-4
    assert np.abs(got_maps - maps.numpy()).max() <= 1e-4

    data = ["--data", str(nuclei_data), "--split", "valid", "--no-progress", "--probabilities"]
    run = ["predict", "--run", str(presence_run), "--tta", "d2", *data]
    assert podium_main(run + ["--out", str(tmp_path / "all")]) == 0
    names = sorted(_masks(tmp_path / "all" / "masks"))
    ordered = sorted(float(read_presence(tmp_path / "all/probabilities", n)[0]) for n in names)
    threshold = str((ordered[1] + ordered[2]) / 2)  # two images gated, the others not
    outputs = {}
    for source, how in (("run", run), ("model", ["predict", "--model", str(path), *data])):
        out = tmp_path / source
        assert podium_main(how + ["--out", str(out), "--presence-threshold", threshold]) == 0
        outputs[source] = out
    gated = {source: _masks(out / "masks") for source, out in outputs.items()}
    assert sum(not mask.any() for mask in gated["run"].values()) == 2
    for name in names:
        np.testing.assert_array_equal(gated["model"][name], gated["run"][name])
        expected = read_presence(outputs["run"] / "probabilities", name)
        got = read_presence(outputs["model"] / "probabilities", name)
        assert np.abs(got - expected).max() <= 1e-4


# ------------------------------------------------------------------------------ tuning
def _presence_oof(tmp_path):
    """8 images: 4 empty ones with a false blob (presence 0.1–0.35), 4 with one object predicted
    exactly (presence 0.45–0.9). Only a presence threshold in (0.35, 0.45] scores 1.0."""
    root, maps = tmp_path / "data", tmp_path / "maps"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = [0.1, 0.2, 0.3, 0.35, 0.45, 0.6, 0.8, 0.9]
    for i, p in enumerate(values):
        truth = np.zeros((32, 32), np.uint8)
        prob = np.full((32, 32), 0.05, np.float32)
        if i < 4:
            prob[2:10, 2:10] = 0.9
        else:
            truth[10:20, 12:24] = 1
            prob[10:20, 12:24] = 0.9
        cv2.imwrite(str(root / "images" / f"im{i}.png"), np.zeros((32, 32), np.uint8))
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), truth * 255)
        write_probability_map(maps, f"im{i}", prob)
        write_presence(maps, f"im{i}", [p])
    return root, maps, values


def test_tune_postprocess_finds_the_known_presence_threshold(tmp_path):
    root, maps, values = _presence_oof(tmp_path)
    config = tmp_path / "infer.yml"
    config.write_text("postprocess:\n  threshold: 0.5  # tuned below\n  min_size: 0\n")
    args = ["tune-postprocess", "--probabilities", str(maps), "--data", str(root)]
    args += ["--config", str(config), "--thresholds", "0.5", "--min-sizes", "0"]
    assert podium_main(args) == 0
    block = yaml.safe_load(config.read_text())["postprocess"]
    assert block["presence_threshold"] == pytest.approx(0.4)  # the lowest T of the best ones
    assert "# tuned below" in config.read_text()

    names = [f"im{i}" for i in range(8)]
    read = {n: cv2.imread(str(root / "masks" / f"{n}.png"), 0)[None] > 0 for n in names}
    result = tune(
        names,
        lambda n: read_probability_map(maps, n),
        lambda n: read[n],
        "binary",
        [0.5],
        [0],
        [False],
        presence=values,
        presence_thresholds=[0.3, 0.4, 0.5],
    )
    assert result.presence_threshold == pytest.approx(0.4) and result.best[0][2] == 1.0
    ungated = tune(
        names,
        lambda n: read_probability_map(maps, n),
        lambda n: read[n],
        "binary",
        [0.5],
        [0],
        [False],
    )
    assert ungated.presence_threshold is None and ungated.best[0][2] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ bad input
def test_bad_aux_heads_are_one_error():
    with pytest.raises(PodiumError, match=r"aux_heads/cls: unknown head type 'presense'.*presence"):
        _model(aux_heads={"cls": {"type": "presense"}})
    with pytest.raises(PodiumError, match=r'unknown key "column" in model aux_heads/scale'):
        _model(aux_heads={"scale": {"type": "regression", "column": "gsd"}})
    with pytest.raises(PodiumError, match="at most one"):
        _model(aux_heads={"a": {"type": "presence"}, "b": {"type": "presence"}})


def test_missing_csv_column_and_output_key_are_one_error(nuclei_data, tmp_path):
    root = _data_with_gsd(nuclei_data, tmp_path)
    with pytest.raises(PodiumError, match=r'"gds" is not a column of split file .*did you mean'):
        build_segmentation_datasets(root, columns=["gds"])
    message = catalyst_run_in_process(
        tmp_path / "run", root, "--runner/output_key=logits:str", config=CONFIG
    )
    assert "runner/output_key is 'logits'" in message and "output_key: null" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_presence_threshold_without_presence_head_is_one_error(
    presence_run, nuclei_data, tmp_path, capsys
):
    """The presence run's config without aux_heads, random weights: a plain model."""
    plain = tmp_path / "plain"
    (plain / "configs").mkdir(parents=True)
    (plain / "checkpoints").mkdir()
    config = json.loads((presence_run / "configs" / "_config.json").read_text())
    del config["model"]["aux_heads"]
    (plain / "configs" / "_config.json").write_text(json.dumps(config))
    model = _model(num_classes=1, aux_heads=None)
    torch.save({"model_state_dict": model.state_dict()}, plain / "checkpoints" / "best.pth")
    args = ["predict", "--run", str(plain), "--data", str(nuclei_data), "--split", "valid"]
    args += ["--out", str(tmp_path / "out"), "--presence-threshold", "0.5"]
    assert podium_main(args) == 1
    assert "no model has a presence head" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
