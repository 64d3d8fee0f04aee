"""What an exported ONNX file tells its predictor: podium's keys in the model's `metadata_props`.

Every value is JSON text under a `podium.` key (`podium.num_classes` = `1`, `podium.class_names`
= `["nuclei"]`), so any onnxruntime user can read them with
`session.get_modelmeta().custom_metadata_map`. The keys are listed in `KEYS` and documented in
docs/export.md; `read_metadata` (of a session) and `read_file_metadata` (of a file, no session)
refuse a file that is not ONNX or was not written by `podium export`.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Mapping

from podium.errors import PodiumError

__all__ = [
    "KEYS",
    "PREFIX",
    "PRESENCE_OUTPUT",
    "config_hash",
    "write_metadata",
    "read_metadata",
    "read_file_metadata",
    "open_session",
]

PREFIX = "podium."
PRESENCE_OUTPUT = "presence"  # a segmentation graph's 2nd output: presence probabilities N×K
KEYS = (
    "version",  # podium's version that exported the file
    "config_hash",  # sha256 of each run's resolved config, in ensemble order
    "task",  # segmentation | centernet | geopose | boxes
    "inputs",  # input names: image, then a task's scalar inputs
    "outputs",  # output names: probabilities (+ presence), or a task's raw outputs
    "in_channels",  # channels of the image input
    "normalize",  # the run's `data/normalize` (how raw pixels become the input; stats: numbers)
    "reading",  # the run's data keys that read an image as validation did (+ valid_transforms)
    "input_size",  # [H, W] of a graph that takes one size only (null: any size)
    "pad_multiple",  # sides are padded to this multiple inside the graph (reflect)
    "mode",  # binary | multilabel | multiclass (segmentation)
    "num_classes",
    "class_names",
    "metric_classes",  # the classes the run's Dice averaged (null: all)
    "activation",  # sigmoid | softmax, inside the graph
    "tta",  # none | flip | d2 | d4, inside the graph
    "ensemble",  # [{run, checkpoint, weight}] averaged inside the graph
    "postprocess",  # thresholds and min sizes: the inference config's `postprocess:` block
    "attributes",  # the model's attributes its task's predictor reads (output_stride, …)
)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """Store `metadata` ({key of KEYS: JSON-able value}) in the ONNX file at `path`, in place."""
    import onnx

    unknown = [key for key in metadata if key not in KEYS]
    if unknown:
        raise ValueError(f"unknown podium metadata keys: {unknown}")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, json.dumps(value)
    onnx.save(model, str(path))


def open_session(path, providers=None, threads=None):
    """An onnxruntime InferenceSession of `path`; a missing or non-ONNX file → PodiumError."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"ONNX model {path} does not exist; expected a file of podium export")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    try:
        return onnxruntime.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph / …
        reason = str(error).strip().splitlines()[0][:200]
        raise PodiumError(
            f"{path} is not an ONNX model onnxruntime can load ({reason}); "
            "expected a .onnx file written by podium export"
        ) from None


def read_metadata(session, path) -> Dict[str, Any]:
    """podium's metadata of an open session: {key: value}; a file without it → PodiumError."""
    return parse_metadata(session.get_modelmeta().custom_metadata_map, path)


def read_file_metadata(path) -> Dict[str, Any]:
    """podium's metadata of the ONNX file at `path`, read by the onnx package without an
    onnxruntime session (building one optimises the whole graph): what to know of a file before
    predicting with it. A missing or non-ONNX file, or one without the metadata → PodiumError."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"ONNX model {path} does not exist; expected a file of podium export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as error:  # not a protobuf, unreadable
        raise PodiumError(
            f"{path} is not an ONNX model ({error}); expected a .onnx file written by podium export"
        ) from None
    return parse_metadata({entry.key: entry.value for entry in model.metadata_props}, path)


def parse_metadata(stored: Mapping[str, str], path) -> Dict[str, Any]:
    """podium's keys of a model's metadata_props {key: JSON text} → {key: value}, every key of
    KEYS; a file without them (or with older ones) → PodiumError naming `path`."""
    values = {key[len(PREFIX) :]: text for key, text in stored.items() if key.startswith(PREFIX)}
    if "version" not in values:
        raise PodiumError(
            f"{path} has no podium metadata (no {PREFIX}version); expected an ONNX file written "
            "by podium export, which stores how to read images and post-process"
        )
    missing = [key for key in KEYS if key not in values]
    if missing:
        raise PodiumError(
            f"{path} lacks the podium metadata {PREFIX}{missing[0]} (written by podium "
            f"{values['version']}); re-export it with this podium's podium export"
        )
    try:
        return {key: json.loads(values[key]) for key in KEYS}
    except json.JSONDecodeError:
        raise PodiumError(f"{path} has podium metadata that is not JSON; re-export it") from None
