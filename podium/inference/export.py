"""`podium export`: a trained run (or an ensemble of runs) as one ONNX file.

    export_segmentation(models, "model.onnx", tta="d4", postprocess={"threshold": 0.4})
    export_task(run, "centernet.onnx", "centernet", tasks.predictor_settings("centernet", config))

`--verify`, the file against the torch model, is podium.inference.export_verify.

The exporter is torch's TorchScript-based one (`torch.onnx.export(..., dynamo=False)`): it
traces these CNNs with dynamic batch, height and width in seconds, needs no package beyond
torch and onnx, and gives the same probabilities as the torch model (docs/export.md compares
it with the dynamo exporter). The file is written next to its target and renamed over it at
the end (`podium.files.write_atomically`), so a failed export leaves an earlier file whole.
"""

import json
import math
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from podium.datasets.normalize import resolved_normalize
from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.checkpoint import load_model, load_run_config, run_data_config
from podium.inference.export_graph import OutputsGraph, SegmentationGraph, output_names
from podium.inference.export_resize import constant_scale_resizes
from podium.inference.onnx_metadata import PRESENCE_OUTPUT, config_hash, write_metadata
from podium.inference.pipeline import READING_KEYS, LoadedModel
from podium.inference.postprocess import PostProcess
from podium.inference.predictor import activation_of
from podium.metrics.segmentation import default_class_names

__all__ = [
    "FORMATS",
    "OPSET",
    "open_export",
    "export_graph",
    "export_segmentation",
    "export_task",
    "segmentation_metadata",
]

OPSET = 18
FORMATS = ("onnx", "torchscript")
TORCHSCRIPT_METADATA = "podium.json"  # the extra file of a TorchScript export: the metadata


def export_graph(
    graph: nn.Module,
    examples: Sequence[Tensor],
    path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    metadata: Mapping[str, Any],
    opset: int = OPSET,
    what: str = "the model",
    format: str = "onnx",
) -> Path:
    """Trace `graph` on `examples` into the ONNX file `path` with podium's `metadata`
    (`format="torchscript"`: a TorchScript file, the metadata as its extra file podium.json).

    An operator the opset cannot express → PodiumError naming it and the opset; the file is
    written atomically (an earlier file at `path` stays if anything fails).
    """
    if format == "torchscript":
        return write_atomically(
            path, lambda tmp: _write_torchscript(graph, examples, tmp, metadata)
        )

    def write(tmp: Path) -> None:
        try:
            with warnings.catch_warnings():
                # the TorchScript exporter announces its deprecation, and tracing warns about
                # Python values it freezes: podium's models keep sizes symbolic while tracing
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    torch.onnx.export(
                        graph.eval(),
                        tuple(examples),
                        str(tmp),
                        input_names=list(input_names),
                        output_names=list(output_names),
                        dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                        opset_version=int(opset),
                        dynamo=False,
                    )
        except torch.onnx.errors.OnnxExporterError as error:  # unsupported operator, or use
            first = str(error).strip().splitlines()[0].split(" Please feel free")[0].rstrip(".")
            raise PodiumError(
                f"{what} cannot be exported to ONNX: {first} (opset {opset}); expected a model "
                "whose operators the opset has (try a newer --opset, or replace the layer)"
            ) from None
        write_metadata(tmp, metadata)

    return write_atomically(path, write)


def _write_torchscript(graph, examples, tmp: Path, metadata: Mapping[str, Any]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracing warns about the Python values it freezes
        traced = torch.jit.trace(graph.eval(), tuple(examples), check_trace=False)
    extra = {TORCHSCRIPT_METADATA: json.dumps(dict(metadata))}
    torch.jit.save(traced, str(tmp), _extra_files=extra)


def open_export(path) -> Tuple[Callable[[Mapping[str, np.ndarray]], List[np.ndarray]], List[str]]:
    """(feeds {input name: array} → outputs in order, output names) of an ONNX or TorchScript
    file of podium export."""
    from podium.inference.onnx_metadata import open_session

    if not zipfile.is_zipfile(path):  # ONNX is a protobuf; TorchScript a zip archive
        session = open_session(path)
        names = [output.name for output in session.get_outputs()]
        return (lambda feeds: session.run(names, dict(feeds))), names
    extra = {TORCHSCRIPT_METADATA: ""}
    with warnings.catch_warnings():  # torch.jit.load announces its deprecation
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    metadata = json.loads(extra[TORCHSCRIPT_METADATA])

    def run(feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        with torch.no_grad():
            outputs = module(*(torch.from_numpy(feeds[name]) for name in metadata["inputs"]))
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return [output.numpy() for output in outputs]

    return run, list(metadata["outputs"])


def podium_version() -> str:
    """The installed podium's version (the package's own metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("podium")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# ---------------------------------------------------------------------------- segmentation
def check_ensemble(models: Sequence[LoadedModel]) -> None:
    """One graph has one image input: the models must read images alike (channels,
    normalisation, valid pipeline); modes and classes are checked by `load_models`."""
    first = models[0]
    for model in models[1:]:
        if model.in_channels != first.in_channels:
            raise PodiumError(
                f"--ensemble runs must take the same input channels: {first.run} takes "
                f"{first.in_channels}, {model.run} takes {model.in_channels}"
            )
        if reading_of(model) != reading_of(first):
            raise PodiumError(
                f"--ensemble runs must read images the same way to share one ONNX input: "
                f"{first.run} reads {reading_of(first)}, {model.run} reads {reading_of(model)}"
            )


def reading_of(model: LoadedModel) -> Dict[str, Any]:
    """The run's data keys that read an image as validation did (metadata `reading`), its
    normalize resolved: the file needs no statistics file of the run."""
    reading = {key: model.data[key] for key in READING_KEYS if key in model.data}
    if "normalize" in reading:
        reading["normalize"] = resolved_normalize(reading["normalize"])
    reading["valid_transforms"] = model.valid_transforms
    return reading


def pad_multiple_of(model: nn.Module) -> int:
    return int(getattr(model, "pad_multiple", 1) or 1)


def segmentation_metadata(
    models: Sequence[LoadedModel], tta: str, postprocess: Mapping[str, Any]
) -> Dict[str, Any]:
    """The `podium.*` metadata of a segmentation export (see onnx_metadata.KEYS)."""
    first = models[0]
    class_names = list(first.class_names or default_class_names(first.num_classes))
    post = PostProcess.from_config(
        postprocess, mode=first.mode, class_names=class_names if first.mode != "binary" else None
    )
    multiple = math.lcm(*(pad_multiple_of(m.model) for m in models))
    reading = reading_of(first)
    return {
        "version": podium_version(),
        "config_hash": [config_hash(load_run_config(Path(m.run))) for m in models],
        "task": "segmentation",
        "inputs": ["image"],
        "outputs": ["probabilities"],
        "in_channels": int(first.in_channels or first.data.get("in_channels") or 3),
        "normalize": reading.get("normalize"),
        "reading": reading,
        "input_size": None,
        "pad_multiple": multiple,
        "mode": first.mode,
        "num_classes": first.num_classes,
        "class_names": class_names,
        "metric_classes": first.metric_classes,
        "activation": activation_of(first.mode, first.num_classes),
        "tta": tta,
        "ensemble": [m.describe() for m in models],
        "postprocess": post.to_config(),
        "attributes": {},
    }


def export_segmentation(
    models: Sequence[LoadedModel],
    path,
    tta: str = "none",
    postprocess: Optional[Mapping[str, Any]] = None,
    opset: int = OPSET,
    format: str = "onnx",
) -> Path:
    """The models (one run, or an ensemble) as one ONNX graph: images → probabilities (and
    presence N×K when a model has a presence head)."""
    check_ensemble(models)
    metadata = segmentation_metadata(models, tta, postprocess or {})
    example = torch.randn(1, metadata["in_channels"], *example_size(metadata["pad_multiple"]))
    graph = SegmentationGraph(
        [constant_scale_resizes(m.model, example) for m in models],
        [m.weight for m in models],
        metadata["activation"],
        tta,
    )
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes["probabilities"] = axes["image"]
    if graph.has_presence:
        metadata["outputs"] = ["probabilities", PRESENCE_OUTPUT]
        axes[PRESENCE_OUTPUT] = {0: "batch"}
    return export_graph(
        graph,
        [example],
        path,
        ["image"],
        metadata["outputs"],
        axes,
        metadata,
        opset,
        what=f"run {models[0].run}",
        format=format,
    )


def example_size(multiple: int) -> List[int]:
    """A traced example's H×W: sides that are not multiples, so the graph records its padding."""
    return [2 * multiple + 3, 3 * multiple + 5] if multiple > 1 else [67, 99]


# ---------------------------------------------------------------------------- tasks
def export_task(
    run,
    path,
    task: str,
    reading: Mapping[str, Any],
    checkpoint: str = "best",
    ema="auto",
    opset: int = OPSET,
    format: str = "onnx",
) -> Path:
    """A task's model (CenterNet, geopose, boxes) with its raw outputs as named graph outputs.

    `reading`: what the task's predictor reads from the run (`podium.tasks.predictor_settings`:
    normalisation, CenterNet's scale and class names, the box head's letterbox size), stored as
    the metadata `reading` so that `podium predict-<task> --model` needs no run."""
    model, config = load_model(Path(run), checkpoint, ema=ema)
    data = run_data_config(config)
    channels = int((config.get("model") or {}).get("in_channels", 3))
    scalars = list(getattr(model, "scalar_inputs", ()))
    multiple = pad_multiple_of(model)
    size = fixed_size(model, data)
    example = torch.randn(1, channels, *(size or example_size(multiple)))
    scalar_examples = [torch.ones(1, 1) for _ in scalars]
    names = output_names(model, example, scalar_examples)
    if not names:
        raise PodiumError(f"run {run} is not a task run: its model returns one tensor, not a dict")
    spatial_axes = {} if size else {2: "height", 3: "width"}
    axes: Dict[str, Dict[int, str]] = {"image": {0: "batch", **spatial_axes}}
    axes.update({name: {0: "batch"} for name in scalars})
    with torch.no_grad():
        outputs = OutputsGraph(model, names, scalars)(example, *scalar_examples)
    for name, output in zip(names, outputs):
        spatial = {2: f"{name}_height", 3: f"{name}_width"} if output.ndim == 4 else {}
        axes[name] = {0: "batch", **spatial}
    normalize = resolved_normalize(reading.get("normalize", data.get("normalize")))
    if "normalize" in reading:
        reading = {**reading, "normalize": normalize}
    metadata = {
        "version": podium_version(),
        "config_hash": [config_hash(config)],
        "task": task,
        "inputs": ["image", *scalars],
        "outputs": names,
        "in_channels": channels,
        "normalize": normalize,
        "reading": dict(reading),
        "input_size": size,
        "pad_multiple": multiple,
        "mode": None,
        "num_classes": (config.get("model") or {}).get("num_classes"),
        "class_names": reading.get("class_names", data.get("class_names")),
        "metric_classes": None,
        "activation": "none",
        "tta": "none",
        "ensemble": [{"run": str(run), "checkpoint": checkpoint, "weight": 1.0}],
        "postprocess": {},
        "attributes": model_attributes(model),
    }
    graph = constant_scale_resizes(OutputsGraph(model, names, scalars), example, *scalar_examples)
    return export_graph(
        graph,
        [example, *scalar_examples],
        path,
        ["image", *scalars],
        names,
        axes,
        metadata,
        opset,
        what=f"run {run}",
        format=format,
    )


MODEL_ATTRIBUTES = ("output_stride", "scalar_inputs", "num_classes")


def model_attributes(model: nn.Module) -> Dict[str, Any]:
    """The attributes a task's predictor reads from its model (`OnnxModule` restores them)."""
    found = {name: getattr(model, name) for name in MODEL_ATTRIBUTES if hasattr(model, name)}
    return {name: list(v) if isinstance(v, tuple) else v for name, v in found.items()}


def fixed_size(model: nn.Module, data: Mapping[str, Any]) -> Optional[List[int]]:
    """H×W of a model without map outputs whose run letterboxes its input (`data/size`, the
    box head): its pooling to a grid is exported for that size; None: any size."""
    size = data.get("size")
    if getattr(model, "map_strides", 1) is not None or size is None:
        return None
    return [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
