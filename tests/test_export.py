"""`podium export` and `podium predict --model`: the ONNX file against the torch model, podium's
TTA and the torch prediction's written files; the tasks' exports; bad input."""

import copy
import hashlib
import json
import shutil
import warnings
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from conftest import podium_in_process as podium
from podium.errors import PodiumError
from podium.inference.checkpoint import load_run_config
from podium.inference.export import export_graph
from podium.inference.export_verify import verification_images, verify_segmentation
from podium.inference.onnx_metadata import KEYS, open_session, read_file_metadata, read_metadata
from podium.inference.onnx_predictor import OnnxModule, OnnxPredictor
from podium.inference.pipeline import load_models
from podium.inference.predictor import Predictor
from podium.inference.tta import build_tta
from podium.models import create_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """The trained nuclei run exported with a threshold of 0.4, and the export's output."""
    run, _ = trained_run
    path = tmp_path_factory.mktemp("export") / "nuclei.onnx"
    code, out, err = podium("export", "--run", run, "--out", path, "--threshold", 0.4, "--verify")
    assert code == 0, err
    return path, out


@pytest.fixture(scope="module")
def torch_model(trained_run):
    run, _ = trained_run
    return load_models([{"run": str(run), "checkpoint": "best", "weight": 1.0}])[0]


def odd_batch(channels=1, seed=0) -> torch.Tensor:
    """Sides that are not multiples of 32: the padding inside the graph is exercised."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, 75, 133, generator=generator)


def test_metadata_carries_what_prediction_needs(trained_run, exported):
    run, _ = trained_run
    path, _ = exported
    config = load_run_config(run)
    meta = read_metadata(open_session(path), path)
    assert set(meta) == set(KEYS)
    assert read_file_metadata(path) == meta  # the file read without a session: the same
    assert meta["in_channels"] == config["model"]["in_channels"] == 1
    assert meta["normalize"] == config["data"]["normalize"]
    assert meta["mode"] == "binary" and meta["num_classes"] == 1
    assert meta["activation"] == "sigmoid" and meta["tta"] == "none"
    assert meta["postprocess"]["threshold"] == 0.4
    assert meta["pad_multiple"] == 32
    assert meta["version"] == version("podium")
    canonical = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    assert meta["config_hash"] == [hashlib.sha256(canonical.encode()).hexdigest()]
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3] and not dims[1]  # N, H, W dynamic; C fixed


def test_onnx_equals_the_torch_predictor(exported, torch_model):
    path, out = exported
    reported = float(out.split("max |torch − onnx| = ")[1].split()[0])
    assert reported <= TOLERANCE
    predictor = Predictor(torch_model.model, torch.device("cpu"), mode="binary")
    onnx_predictor = OnnxPredictor(open_session(path), in_channels=1)
    for batch in [odd_batch(), *verification_images([torch_model])]:
        expected = predictor(batch)
        got = onnx_predictor(batch)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) <= TOLERANCE
    other = copy.copy(torch_model)  # the same model with other weights: verify must see it
    other.model = create_model("unet", encoder="resnet18", in_channels=1, pretrained=False)
    assert verify_segmentation(path, [other], [odd_batch()]) > TOLERANCE


def test_tta_and_ensemble_inside_the_graph_equal_podiums(trained_run, torch_model, tmp_path):
    run, _ = trained_run
    path = tmp_path / "d4.onnx"
    code, _, err = podium("export", "--run", run, "--ensemble", run, "--tta", "d4", "--out", path)
    assert code == 0, err
    batch = odd_batch(seed=1)
    onnx_probabilities = OnnxPredictor(open_session(path), in_channels=1)(batch)
    tta = Predictor(torch_model.model, torch.device("cpu"), mode="binary", tta=build_tta("d4"))
    plain = Predictor(torch_model.model, torch.device("cpu"), mode="binary")
    assert float((onnx_probabilities - tta(batch)).abs().max()) <= TOLERANCE
    assert float((onnx_probabilities - plain(batch)).abs().max()) > TOLERANCE  # TTA did act
    assert read_metadata(open_session(path), path)["tta"] == "d4"
    assert verify_segmentation(path, [torch_model] * 2, [batch], "d4") <= TOLERANCE


def test_predict_model_writes_what_predict_run_writes(trained_run, nuclei_data, exported, tmp_path):
    run, _ = trained_run
    path, _ = exported
    common = ["--data", nuclei_data, "--split", "valid", "--probabilities", "--no-progress"]
    torch_out, onnx_out = tmp_path / "torch", tmp_path / "onnx"
    code, _, err = podium(
        "predict", "--run", run, *common, "--threshold", 0.4, "--out", torch_out,
        "--submission", torch_out / "sub.csv",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = podium(
        "predict",
        "--model",
        path,
        *common,
        "--threads",
        2,
        "--out",
        onnx_out,
        "--submission",
        onnx_out / "sub.csv",
    )  # fmt: skip  (the threshold 0.4 comes from the file's metadata)
    assert code == 0, err
    masks = sorted(p.name for p in (torch_out / "masks").iterdir())
    assert masks and masks == sorted(p.name for p in (onnx_out / "masks").iterdir())
    for name in masks:
        for folder, tolerance in (("masks", 0), ("probabilities", 1)):
            expected = cv2.imread(str(torch_out / folder / name), cv2.IMREAD_UNCHANGED)
            got = cv2.imread(str(onnx_out / folder / name), cv2.IMREAD_UNCHANGED)
            assert np.abs(expected.astype(int) - got.astype(int)).max() <= tolerance
        assert (onnx_out / "overlays" / name).is_file()
    assert (torch_out / "sub.csv").read_text() == (onnx_out / "sub.csv").read_text()
    torch_metrics = json.loads((torch_out / "metrics.json").read_text())
    onnx_metrics = json.loads((onnx_out / "metrics.json").read_text())
    assert onnx_metrics["dice"] == pytest.approx(torch_metrics["dice"], abs=1e-6)


def stats_run(trained_run, folder: Path) -> Path:
    """The trained run with `normalize: {mode: stats, path}`: a `podium stats` file with the
    run's own standardisation in other numbers (max_value 65535), so the model predicts as
    trained and the file's numbers differ from anything in the run's config."""
    run, _ = trained_run
    config = load_run_config(run)
    fixed = config["data"]["normalize"]
    scale = fixed["max_value"] / 65535
    numbers = {
        "max_value": 65535,
        "mean": [m * scale for m in fixed["mean"]],
        "std": [s * scale for s in fixed["std"]],
    }
    (folder / "configs").mkdir(parents=True)
    stats = folder / "stats.json"
    stats.write_text(json.dumps({"normalize": numbers}))
    config["data"]["normalize"] = {"mode": "stats", "path": str(stats)}
    (folder / "configs" / "_config.json").write_text(json.dumps(config))
    (folder / "checkpoints").mkdir()
    shutil.copy(run / "checkpoints" / "best.pth", folder / "checkpoints")
    return folder


def valid_probabilities(entry: dict, root: Path) -> list:
    """Float probabilities of `entry`'s model (run or file) on the valid split of `root`, each
    image read by the model's own reading (its normalisation): the pipeline's steps."""
    from podium.inference.geometry import ImagePipeline
    from podium.inference.pipeline import build_predictors, reading_params
    from podium.inference.reading import build_dataset

    model = load_models([{"weight": 1.0, **entry}])[0]
    data = {"split": "valid"}
    pipeline = ImagePipeline(model.valid_transforms)
    dataset = build_dataset(root, data, reading_params(model, root, data), pipeline)
    predictor = build_predictors([model], torch.device("cpu"), None, None, {})[0]
    return [predictor(dataset[i]["image"][None]) for i in range(len(dataset))]


def test_a_stats_normalize_is_exported_as_its_numbers(trained_run, nuclei_data, tmp_path):
    """The file predicts without the run's `podium stats` file: its metadata holds the numbers,
    and `--model` with the stats file gone writes what `--run` wrote with it."""
    run = stats_run(trained_run, tmp_path / "run")
    stats = tmp_path / "run" / "stats.json"
    numbers = json.loads(stats.read_text())["normalize"]
    path = tmp_path / "stats.onnx"
    code, _, err = podium("export", "--run", run, "--out", path)
    assert code == 0, err
    common = ["--data", nuclei_data, "--split", "valid", "--probabilities", "--no-progress"]
    code, _, err = podium("predict", "--run", run, *common, "--out", tmp_path / "torch")
    assert code == 0, err
    expected = valid_probabilities({"run": str(run), "checkpoint": "best"}, nuclei_data)
    stats.rename(tmp_path / "moved.json")

    meta = read_metadata(open_session(path), path)
    assert meta["normalize"] == meta["reading"]["normalize"] == {"mode": "fixed", **numbers}
    assert str(stats) not in json.dumps(meta)
    code, _, err = podium("predict", "--model", path, *common, "--out", tmp_path / "onnx")
    assert code == 0, err
    got = valid_probabilities({"onnx": str(path)}, nuclei_data)
    assert len(got) == len(expected) == 4
    for onnx_maps, torch_maps in zip(got, expected):
        assert float((onnx_maps - torch_maps).abs().max()) <= TOLERANCE
    masks = sorted(p.name for p in (tmp_path / "torch" / "masks").iterdir())
    assert masks and masks == sorted(p.name for p in (tmp_path / "onnx" / "masks").iterdir())
    for name in masks:
        for folder, tolerance in (("masks", 0), ("probabilities", 1)):
            want = cv2.imread(str(tmp_path / "torch" / folder / name), cv2.IMREAD_UNCHANGED)
            have = cv2.imread(str(tmp_path / "onnx" / folder / name), cv2.IMREAD_UNCHANGED)
            assert np.abs(want.astype(int) - have.astype(int)).max() <= tolerance


# ---------------------------------------------------------------------------- tasks
TASK_MODELS = {
    "centernet": {"name": "centernet", "num_classes": 1, "output_stride": 4, "head_channels": 16},
    "geopose": {"name": "geopose", "scalar_inputs": ["gsd"], "head_channels": 16},
    "boxes": {"name": "boxes", "num_classes": 1, "box_grid": 4},
}


def make_run(folder: Path, model: dict, data: dict) -> Path:
    """A run directory with a resolved config and a checkpoint of seeded random weights."""
    block = {"_target_": "podium.models.create_model", "pretrained": False, **model}
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "configs" / "_config.json").write_text(json.dumps({"model": block, "data": data}))
    torch.manual_seed(0)
    weights = create_model(**{k: v for k, v in block.items() if k != "_target_"}).state_dict()
    torch.save({"model_state_dict": weights}, folder / "checkpoints" / "best.pth")
    return folder


@pytest.mark.parametrize("task", TASK_MODELS)
def test_task_exports_equal_the_torch_model(task, tmp_path):
    model = {"encoder": "resnet18", "in_channels": 3, **TASK_MODELS[task]}
    run = make_run(tmp_path / task, model, {"size": 128} if task == "boxes" else {})
    path = tmp_path / f"{task}.onnx"
    code, out, err = podium("export", "--run", run, "--out", path, "--verify")
    assert code == 0, err
    meta = read_metadata(open_session(path), path)
    assert meta["task"] == task
    torch_model = create_model(**{"pretrained": False, **model}).eval()
    torch_model.load_state_dict(torch.load(run / "checkpoints" / "best.pth")["model_state_dict"])
    size = (128, 128) if task == "boxes" else (75, 133)
    image = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    scalars = {name: torch.full((2, 1), 0.5) for name in meta["inputs"][1:]}
    with torch.no_grad():
        expected = torch_model(image, **scalars)
    assert meta["outputs"] == list(expected)
    session = open_session(path)
    feeds = {"image": image.numpy(), **{k: v.numpy() for k, v in scalars.items()}}
    for name, got in zip(meta["outputs"], session.run(meta["outputs"], feeds)):
        assert got.shape == tuple(expected[name].shape)
        assert np.abs(got - expected[name].numpy()).max() <= TOLERANCE
    assert "verify: max |torch − onnx|" in out
    decoder_resizes = {"centernet": 3, "geopose": 4, "boxes": 0}[task]
    assert constant_scale_resizes_of(path)[0] == decoder_resizes  # toolbelt's, export_resize


def test_a_task_predictor_runs_the_export_like_its_torch_model(tmp_path):
    from podium.tasks.centernet.predict import CenterNetPredictor

    model = {"encoder": "resnet18", "in_channels": 3, **TASK_MODELS["centernet"]}
    run = make_run(tmp_path / "centernet", model, {})
    path = tmp_path / "centernet.onnx"
    assert podium("export", "--run", run, "--out", path)[0] == 0
    torch_model = create_model(**{"pretrained": False, **model}).eval()
    torch_model.load_state_dict(torch.load(run / "checkpoints" / "best.pth")["model_state_dict"])
    onnx_model = OnnxModule(open_session(path), path)
    assert onnx_model.output_stride == torch_model.output_stride == 4
    image = torch.randn(1, 3, 75, 133, generator=torch.Generator().manual_seed(4))
    cpu = torch.device("cpu")
    expected = CenterNetPredictor(torch_model, tta="flip", device=cpu).detect(image)[0]
    got = CenterNetPredictor(onnx_model, tta="flip", device=cpu).detect(image)[0]
    assert len(expected["scores"]) > 0
    assert torch.equal(got["labels"], expected["labels"])
    assert torch.allclose(got["scores"], expected["scores"], atol=TOLERANCE)
    assert torch.allclose(got["boxes"], expected["boxes"], atol=1e-3)


def test_torchscript_format_holds_the_same_graph_and_metadata(tmp_path):
    model = {"encoder": "resnet18", "in_channels": 3, **TASK_MODELS["centernet"]}
    run = make_run(tmp_path / "centernet", model, {})
    path = tmp_path / "centernet.pt"
    code, out, err = podium("export", "--run", run, "--format", "torchscript", "--out", path)
    assert code == 0, err
    extra = {"podium.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["podium.json"])
    assert meta["task"] == "centernet" and meta["outputs"] == ["heatmap", "size", "offset"]
    torch_model = create_model(**{"pretrained": False, **model}).eval()
    torch_model.load_state_dict(torch.load(run / "checkpoints" / "best.pth")["model_state_dict"])
    image = torch.randn(2, 3, 75, 133, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = torch_model(image), module(image)
    for name, value in zip(meta["outputs"], got):
        assert value.shape == expected[name].shape
        assert float((value - expected[name]).abs().max()) <= TOLERANCE


# ---------------------------------------------------------------------------- bad input
class Bessel(torch.nn.Module):
    def forward(self, image):
        return torch.special.i0(image)


def test_unsupported_operator_is_named_and_the_earlier_file_stays(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the earlier export")
    example = torch.randn(1, 1, 8, 8)
    with pytest.raises(PodiumError, match=r"aten::i0.*opset 18"):
        export_graph(Bessel(), [example], path, ["image"], ["out"], {}, {}, what="Bessel")
    assert path.read_bytes() == b"the earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp file left


def test_a_file_that_is_not_onnx_or_has_no_podium_metadata(nuclei_data, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    code, _, err = podium("predict", "--model", garbage, "--data", nuclei_data, "--out", tmp_path)
    assert code == 1 and "is not an ONNX model" in err and len(err.strip().splitlines()) == 1
    plain = tmp_path / "plain.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Conv2d(1, 1, 3), (torch.randn(1, 1, 8, 8),), plain, dynamo=False)
    code, _, err = podium("predict", "--model", plain, "--data", nuclei_data, "--out", tmp_path)
    assert code == 1 and "has no podium metadata" in err and str(plain) in err
    missing = tmp_path / "missing.onnx"
    cases = [(garbage, "is not an ONNX model"), (plain, "has no podium metadata")]
    for path, message in [*cases, (missing, "does not exist")]:  # no session: the same errors
        with pytest.raises(PodiumError, match=message) as error:
            read_file_metadata(path)
        assert str(path) in str(error.value)


def test_image_channels_that_do_not_match_the_metadata(exported, tmp_path):
    path, _ = exported
    folder = tmp_path / "rgb"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 48, 3), 128, np.uint8))
    code, _, err = podium("predict", "--model", path, "--data", folder, "--out", tmp_path / "o")
    assert code == 1 and "has 3 channel(s)" in err and "a.png" in err
    with pytest.raises(PodiumError, match=r"takes images with 1 channel"):
        OnnxPredictor(open_session(path), in_channels=1)(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"in_channels": 3}, "must take the same input channels"),
        ({"num_classes": 2}, "must agree on the mode and number of classes"),
    ],
)
def test_ensemble_runs_that_do_not_fit_together(trained_run, tmp_path, change, message):
    run, _ = trained_run
    config = load_run_config(run)
    data = {**config["data"], "num_classes": change.get("num_classes", 1)}
    other = make_run(tmp_path / "other", {**config["model"], **change}, data)
    out = tmp_path / "ensemble.onnx"
    code, _, err = podium("export", "--run", run, "--ensemble", other, "--out", out)
    assert code == 1 and message in err and str(other) in err
    assert not out.exists()


def test_an_output_path_that_cannot_be_written(trained_run, tmp_path):
    run, _ = trained_run
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = podium("export", "--run", run, "--out", blocker / "model.onnx")
    assert code == 1 and "is a file, not a folder" in err
    code, _, err = podium("export", "--run", run, "--out", tmp_path)
    assert code == 1 and "is a folder" in err


def test_tta_that_cannot_go_inside_the_graph_and_missing_providers(
    trained_run, exported, nuclei_data, tmp_path
):
    run, _ = trained_run
    code, _, err = podium("export", "--run", run, "--tta", "multiscale", "--out", tmp_path / "m")
    assert code == 1 and "--tta multiscale cannot go inside an ONNX graph" in err
    path, _ = exported
    code, _, err = podium(
        "predict", "--model", path, "--data", nuclei_data, "--providers", "cuda", "--out", tmp_path
    )
    assert code == 1 and "execution provider cuda is not available" in err


def constant_scale_resizes_of(path) -> tuple:
    """(Resize nodes by constant scales, all Resize nodes) of an ONNX file."""
    graph = onnx.load(str(path)).graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    constant = [
        node
        for node in resizes
        if (len(node.input) < 4 or node.input[3] == "") and node.input[2] in constants
    ]
    return len(constant), len(resizes)


def test_the_graph_resizes_by_constant_scales(exported):
    """Resizes by constant scales: onnxruntime runs them in its blocked layout (export_resize)."""
    path, _ = exported
    assert constant_scale_resizes_of(path) == (5, 5)  # four decoder stages and the head
