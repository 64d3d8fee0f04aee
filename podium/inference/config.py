"""The inference YAML of `podium predict`: read, overridden by flags, validated, filled with
defaults.

    models:                 # one or more checkpoints, averaged with their weights
      - {run: logs/nuclei, checkpoint: best, weight: 1.0}
    data: {root: data/nuclei, split: valid}
    tta: none
    ensemble: {method: mean}
    tiles: null             # {size: 512, overlap: 128}
    scenes: null            # {images: [a.tif], window: 512, overlap: 128, weight: gaussian, ...}
    postprocess: {threshold: 0.5}
    outputs: {masks: true, probabilities: false, overlays: true, submission: null}
    out: predictions/nuclei
    batch_size: 8
    ema: auto               # EMA weights where a checkpoint has them; false: the trained ones
    providers: [cpu]        # onnxruntime's execution providers for `- {onnx: model.onnx}` models
    threads: null           # onnxruntime's intra-op threads (null: its default)

`configs/nuclei/infer.yml` documents every key. Every block is checked here, before a model is
loaded or a file is written: an unknown key is one `PodiumError` with a did-you-mean, a bad
value names its key and what was expected. The `tta`, `ensemble`, `postprocess` and
`outputs/submission` blocks are checked by the classes that use them (`build_tta`, `Ensemble`,
`PostProcess`, `SubmissionWriter`), so the rules live in one place. The result is a plain dict
(YAML-serialisable): the resolved config is written next to the predictions and handed to
`torchrun` ranks.
"""

import copy
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from podium.errors import PodiumError, check_keys, check_output_folder
from podium.models.precision import MEMORY_FORMATS, PRECISIONS, compile_mode
from podium.validation import check_bool, check_choice, check_int, check_number, is_int

__all__ = [
    "DEFAULTS",
    "TILE_WEIGHTS",
    "load_inference_config",
    "apply_flags",
    "check_providers",
    "resolve_inference_config",
]

TILE_WEIGHTS = ("pyramid", "mean", "gaussian")

DEFAULTS: Dict[str, Any] = {
    "models": [],
    "data": {},
    "tta": "none",
    "ensemble": {"method": "mean"},
    "tiles": None,
    "scenes": None,
    "postprocess": {},
    "writers": [],
    "outputs": {"masks": True, "probabilities": False, "overlays": True, "submission": None},
    "out": None,
    "batch_size": 8,
    "num_workers": 0,
    "device": None,
    "precision": "fp32",
    "memory_format": "contiguous",
    "compile": False,
    "progress": True,
    "ema": "auto",
    "providers": None,
    "threads": None,
}
MODEL_KEYS = ("run", "checkpoint", "weight", "onnx")
DATA_KEYS = ("root", "split", "fold", "names", "split_file", "exclude")
TILE_KEYS = ("size", "overlap", "weight", "batch_size")
SCENE_KEYS = ("images", "window", "overlap", "weight", "polygons", "simplify", "instances")
OUTPUT_KEYS = ("masks", "probabilities", "overlays", "submission")
SUBMISSION_KEYS = ("path", "columns", "empty", "name_format", "instances", "rle_order")
RUN_CONFIG = Path("configs") / "_config.json"


def load_inference_config(path) -> Dict[str, Any]:
    """The YAML file as a dict (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(
            f"inference config {path} does not exist; "
            "expected a YAML file like configs/nuclei/infer.yml"
        )
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PodiumError(f"inference config {path} is not valid YAML{where}: {problem}") from None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise PodiumError(
            f"inference config {path} must be a mapping of keys ({', '.join(DEFAULTS)}), "
            f"got {type(config).__name__}"
        )
    return dict(config)


def apply_flags(config: Mapping[str, Any], flags: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of `config` with the command-line flags that were given (not None) on top.

    flags: runs, checkpoints, weights, onnx (lists), data, split, fold, names, out, tta,
    threshold, min_size, presence_threshold, submission, probabilities, overlays, masks,
    tile_size, tile_overlap, device, batch_size, num_workers, progress, ema, providers, threads.
    `--data DIR` starts a new
    selection: the YAML's split / fold / names are dropped unless given as flags too.
    """
    config = copy.deepcopy(dict(config))
    given = {key: value for key, value in flags.items() if value is not None and value != []}
    if any(key in given for key in ("runs", "checkpoints", "weights", "onnx")):
        config["models"] = _models_from_flags(config.get("models"), given)
    data = config.get("data")
    data = dict(data) if isinstance(data, Mapping) else ({} if data is None else data)
    if isinstance(data, dict):
        if "data" in given:
            data = {k: v for k, v in data.items() if k not in ("root", "split", "fold", "names")}
            data["root"] = str(given["data"])
        for key in ("split", "fold", "names"):
            if key in given:
                data[key] = str(given[key]) if key == "names" else given[key]
        config["data"] = data
    for key in (
        "out",
        "tta",
        "device",
        "precision",
        "memory_format",
        "compile",
        "batch_size",
        "num_workers",
        "progress",
        "ema",
        "providers",
        "threads",
    ):
        if key in given:
            config[key] = str(given[key]) if key == "out" else given[key]
    post = {
        "threshold": "threshold",
        "min_size": "min_size",
        "presence_threshold": "presence_threshold",
    }
    if any(flag in given for flag in post):
        block = config.get("postprocess")
        block = dict(block) if isinstance(block, Mapping) else {}
        block.update({key: given[flag] for flag, key in post.items() if flag in given})
        config["postprocess"] = block
    if any(flag in given for flag in ("submission", "probabilities", "overlays", "masks")):
        outputs = config.get("outputs")
        outputs = dict(outputs) if isinstance(outputs, Mapping) else {}
        for key in ("probabilities", "overlays", "masks"):
            if key in given:
                outputs[key] = bool(given[key])
        if "submission" in given:
            submission = outputs.get("submission")
            submission = dict(submission) if isinstance(submission, Mapping) else {}
            submission["path"] = str(given["submission"])
            outputs["submission"] = submission
        config["outputs"] = outputs
    scene_flags = {
        "scenes": "images",
        "window": "window",
        "overlap": "overlap",
        "blend": "weight",
        "polygons": "polygons",
        "simplify": "simplify",
        "instances": "instances",
    }
    if any(flag in given for flag in scene_flags):
        scenes = config.get("scenes")
        scenes = dict(scenes) if isinstance(scenes, Mapping) else {}
        for flag, key in scene_flags.items():
            if flag in given:
                value = given[flag]
                scenes[key] = [str(v) for v in value] if flag == "scenes" else value
        scenes.update({k: str(scenes[k]) for k in ("polygons",) if scenes.get(k) is not None})
        config["scenes"] = scenes
    if "tile_size" in given or "tile_overlap" in given:
        tiles = config.get("tiles")
        tiles = dict(tiles) if isinstance(tiles, Mapping) else {}
        if "tile_size" in given:
            tiles["size"] = given["tile_size"]
        if "tile_overlap" in given:
            tiles["overlap"] = given["tile_overlap"]
        config["tiles"] = tiles
    return config


def resolve_inference_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Validated config with every key present (defaults filled in)."""
    if not isinstance(config, Mapping):
        raise PodiumError(f"the inference config must be a mapping, got {type(config).__name__}")
    check_keys(list(config), DEFAULTS, "the inference config")
    resolved = copy.deepcopy(DEFAULTS)
    resolved.update(copy.deepcopy(dict(config)))
    resolved["models"] = _check_models(resolved["models"])
    resolved["data"] = _check_data(resolved["data"])
    resolved["ensemble"] = _check_ensemble(resolved["ensemble"])
    resolved["tiles"] = _check_tiles(resolved["tiles"])
    resolved["scenes"] = _check_scenes(resolved["scenes"])
    resolved["outputs"] = _check_outputs(resolved["outputs"])
    resolved["postprocess"] = _check_postprocess(resolved["postprocess"])
    resolved["writers"] = _check_writers(resolved["writers"])
    resolved["tta"] = _check_tta(resolved["tta"])
    if resolved["out"] is None:
        raise PodiumError("no output folder: give `out:` in the inference config or --out DIR")
    resolved["out"] = _check_path(resolved["out"], "out")
    check_output_folder(resolved["out"], "out")  # before any model is loaded or file written
    resolved["batch_size"] = check_int(resolved["batch_size"], "batch_size", 1)
    resolved["num_workers"] = check_int(resolved["num_workers"], "num_workers", 0)
    resolved["progress"] = check_bool(resolved["progress"], "progress")
    # the names are checked now; what the device supports when it is known (Predictor)
    check_choice(resolved["precision"], PRECISIONS, "precision")
    check_choice(resolved["memory_format"], MEMORY_FORMATS, "memory_format")
    compile_mode(resolved["compile"], "compile")
    if resolved["ema"] != "auto":
        resolved["ema"] = check_bool(
            resolved["ema"], "ema", " (or auto: the EMA weights when a checkpoint has them)"
        )
    resolved["providers"] = check_providers(resolved["providers"])
    if resolved["threads"] is not None:
        resolved["threads"] = check_int(resolved["threads"], "threads", 1)
    if resolved["device"] is not None and not isinstance(resolved["device"], str):
        raise PodiumError(
            "device must be a string like cpu, cuda or cuda:1 (or null for auto), "
            f"got {resolved['device']!r}"
        )
    return resolved


# ---------------------------------------------------------------------------- models
def _models_from_flags(models, given) -> List[Dict[str, Any]]:
    """--run (repeatable) × --checkpoint (repeatable) × --weight (repeatable) → model entries.

    One run and several checkpoints: that run's checkpoints (e.g. best + last); several runs and
    one checkpoint: that checkpoint of each run; equal counts: pairwise. Without --run, the
    checkpoints replace those of the YAML's models (or are .pth paths inside run directories).
    """
    runs = [str(r) for r in given.get("runs", [])]
    checkpoints = [str(c) for c in given.get("checkpoints", [])]
    if runs:
        if not checkpoints:
            checkpoints = ["best"]
        if len(runs) == 1 or len(checkpoints) == 1 or len(runs) == len(checkpoints):
            count = max(len(runs), len(checkpoints))
            runs = runs * count if len(runs) == 1 else runs
            checkpoints = checkpoints * count if len(checkpoints) == 1 else checkpoints
        else:
            raise PodiumError(
                f"{len(runs)} --run and {len(checkpoints)} --checkpoint flags "
                "cannot be paired; expected one run with several checkpoints, "
                "several runs with one checkpoint, or as many of each"
            )
        entries = [{"run": r, "checkpoint": c} for r, c in zip(runs, checkpoints)]
    elif "onnx" in given:
        entries = []
    elif checkpoints:
        known = models if isinstance(models, list) else []
        if known and len(checkpoints) in (1, len(known)):
            entries = [dict(m) if isinstance(m, Mapping) else {"run": m} for m in known]
            for i, entry in enumerate(entries):
                entry["checkpoint"] = checkpoints[0 if len(checkpoints) == 1 else i]
        else:
            entries = [{"checkpoint": c} for c in checkpoints]
    else:
        entries = [dict(m) if isinstance(m, Mapping) else {"run": m} for m in (models or [])]
    entries += [{"onnx": str(path)} for path in given.get("onnx", [])]
    weights = given.get("weights")
    if weights:
        if len(weights) != len(entries):
            raise PodiumError(
                f"{len(weights)} --weight values for {len(entries)} models; "
                "expected one weight per model"
            )
        for entry, weight in zip(entries, weights):
            entry["weight"] = weight
    return entries


def _check_models(models) -> List[Dict[str, Any]]:
    if models is None or models == []:
        raise PodiumError(
            "no model to predict with: give `models: [{run: "
            "RUN_DIR, checkpoint: best}]` or --run RUN_DIR"
        )
    if isinstance(models, (str, Mapping)):
        models = [models]
    if not isinstance(models, list):
        raise PodiumError(
            f"models must be a list of {{run, checkpoint, weight}} entries, got {models!r}"
        )
    entries = []
    for i, model in enumerate(models):
        where = f"models[{i}]"
        if isinstance(model, str):
            model = {"checkpoint": model} if model.endswith(".pth") else {"run": model}
        if not isinstance(model, Mapping):
            raise PodiumError(
                f"{where} must be a run directory or a mapping "
                f"{{run, checkpoint, weight}}, got {model!r}"
            )
        check_keys(list(model), MODEL_KEYS, where)
        weight = model.get("weight", 1.0)
        check_number(weight, f"{where}/weight", "> 0")
        if "onnx" in model:
            if "run" in model or "checkpoint" in model:
                raise PodiumError(
                    f"{where} gives onnx and run/checkpoint; expected either an exported file "
                    "{onnx: model.onnx} or {run, checkpoint}"
                )
            path = _check_path(model["onnx"], f"{where}/onnx")
            entries.append({"onnx": path, "weight": float(weight)})
            continue
        checkpoints = model.get("checkpoint", "best")
        checkpoints = checkpoints if isinstance(checkpoints, list) else [checkpoints]
        for checkpoint in checkpoints:
            if not isinstance(checkpoint, str) or not checkpoint:
                raise PodiumError(
                    f"{where}/checkpoint must be best, "
                    f"last or a path to a .pth file, got {checkpoint!r}"
                )
            run = model.get("run")
            run = (
                _run_of_checkpoint(checkpoint, where)
                if run is None
                else _check_path(run, f"{where}/run")
            )
            entries.append({"run": run, "checkpoint": checkpoint, "weight": float(weight)})
    return entries


def _run_of_checkpoint(checkpoint: str, where: str) -> str:
    """A .pth inside RUN/checkpoints/ belongs to RUN (its resolved config describes the model)."""
    if checkpoint in ("best", "last"):
        raise PodiumError(
            f"{where} names checkpoint {checkpoint} but no run; expected run: "
            "RUN_DIR (or --run RUN_DIR)"
        )
    path = Path(checkpoint)
    for parent in list(path.parents)[:2]:
        if (parent / RUN_CONFIG).is_file():
            return str(parent)
    raise PodiumError(
        f"{where}: checkpoint {checkpoint} is not inside a run directory (no {RUN_CONFIG} above "
        "it); expected run: RUN_DIR next to it, whose resolved config describes the model"
    )


def check_providers(providers) -> Optional[List[str]]:
    """onnxruntime execution providers: a list or a comma-separated string (cpu, cuda, …);
    whether this onnxruntime has them is checked when an ONNX model is loaded."""
    if providers is None:
        return None
    if isinstance(providers, str):
        providers = [name.strip() for name in providers.split(",") if name.strip()]
    if (
        not isinstance(providers, list)
        or not providers
        or not all(isinstance(name, str) for name in providers)
    ):
        raise PodiumError(
            f"providers must be a list of onnxruntime execution providers such as [cpu] or "
            f"[cuda, cpu], got {providers!r}"
        )
    return providers


# ---------------------------------------------------------------------------- blocks
def _check_data(data) -> Dict[str, Any]:
    if isinstance(data, str):
        data = {"root": data}
    data = _check_mapping(data, "data", allow_none=True) or {}
    check_keys(list(data), DATA_KEYS, "data")
    data = {key: data.get(key) for key in DATA_KEYS}
    chosen = [key for key in ("split", "fold", "names") if data[key] is not None]
    if len(chosen) > 1:
        raise PodiumError(
            f"data gives both {chosen[0]} and {chosen[1]}; "
            "expected one way to select images: split, fold or names"
        )
    if data["fold"] is not None:
        check_int(data["fold"], "data/fold", expected="an integer fold index")
    for key in ("root", "names", "split_file", "exclude"):
        if data[key] is not None:
            data[key] = _check_path(data[key], f"data/{key}")
    if data["split"] is not None:
        data["split"] = str(data["split"])
    return data


def _check_ensemble(ensemble) -> Dict[str, Any]:
    """The `ensemble:` block, checked by the Ensemble that will use it (keys method, power,
    normalize)."""
    from podium.inference.ensemble import Ensemble

    if isinstance(ensemble, str):
        ensemble = {"method": ensemble}
    ensemble = _check_mapping(ensemble, "ensemble", allow_none=True) or {}
    Ensemble.from_config(ensemble)
    return ensemble


def _check_tta(tta):
    if tta is None or tta == "none":
        return "none"
    if not isinstance(tta, (str, Mapping)):
        raise PodiumError(
            "tta must be a name (none, flip, d2, d4, "
            f"multiscale) or a mapping like {{views: d4}}, got {tta!r}"
        )
    from podium.inference.tta import build_tta

    build_tta(dict(tta) if isinstance(tta, Mapping) else tta)
    return dict(tta) if isinstance(tta, Mapping) else tta


def _check_postprocess(postprocess) -> Dict[str, Any]:
    """Keys and values checked by PostProcess now (per-class list lengths once the classes are
    known)."""
    from podium.inference.postprocess import PostProcess

    postprocess = _check_mapping(postprocess, "postprocess", allow_none=True) or {}
    PostProcess.from_config(postprocess, mode="multilabel")
    return postprocess


def _check_writers(writers) -> List[Dict[str, Any]]:
    from podium.inference.writers import check_writers

    return check_writers(writers)


def _check_tiles(tiles) -> Optional[Dict[str, Any]]:
    if tiles is None or tiles is False:
        return None
    if is_int(tiles):
        tiles = {"size": tiles}
    tiles = _check_mapping(tiles, "tiles")
    check_keys(list(tiles), TILE_KEYS, "tiles")
    if "size" not in tiles:
        raise PodiumError("tiles needs a size: {size: 512, overlap: 128}")
    size = tiles["size"]
    if isinstance(size, list) and len(size) == 2:
        size = [check_int(s, "tiles/size", 1) for s in size]
    else:
        size = [check_int(size, "tiles/size", 1)] * 2
    overlap = tiles.get("overlap", min(size) // 4)
    overlap = check_int(overlap, "tiles/overlap", 0)
    if overlap >= min(size):
        raise PodiumError(f"tiles/overlap {overlap} must be smaller than the tile size {min(size)}")
    weight = tiles.get("weight", "pyramid")
    check_choice(weight, TILE_WEIGHTS, "tiles/weight")
    batch_size = tiles.get("batch_size")
    batch_size = None if batch_size is None else check_int(batch_size, "tiles/batch_size", 1)
    return {"size": size, "overlap": overlap, "weight": weight, "batch_size": batch_size}


def _check_scenes(scenes) -> Optional[Dict[str, Any]]:
    """The `scenes:` block (whole-raster prediction, podium.inference.scenes), or None."""
    if scenes is None:
        return None
    scenes = _check_mapping(scenes, "scenes")
    check_keys(list(scenes), SCENE_KEYS, "scenes")
    images = scenes.get("images")
    if isinstance(images, (str, Path)):
        images = [images]
    if not isinstance(images, list) or not images:
        raise PodiumError(f"scenes/images must be a list of raster paths, got {images!r}")
    resolved = {key: scenes.get(key) for key in SCENE_KEYS}
    resolved["images"] = [_check_path(p, "scenes/images") for p in images]
    window = resolved["window"]
    if window is not None:
        if isinstance(window, list) and len(window) == 2:
            resolved["window"] = [check_int(v, "scenes/window", 1) for v in window]
        else:
            resolved["window"] = check_int(window, "scenes/window", 1)
    if resolved["overlap"] is not None:
        resolved["overlap"] = check_int(resolved["overlap"], "scenes/overlap", 0)
    resolved["weight"] = check_choice(
        resolved["weight"] or "gaussian", TILE_WEIGHTS, "scenes/weight"
    )
    if resolved["polygons"] is not None:
        from podium.inference.polygons import check_vector_path

        resolved["polygons"] = str(
            check_vector_path(_check_path(resolved["polygons"], "scenes/polygons"))
        )
    if resolved["simplify"] is not None:
        resolved["simplify"] = check_number(
            resolved["simplify"], "scenes/simplify", ">= 0", finite=True
        )
    instances = resolved["instances"]
    resolved["instances"] = (
        False if instances is None else check_bool(instances, "scenes/instances")
    )
    return resolved


def _check_outputs(outputs) -> Dict[str, Any]:
    outputs = _check_mapping(outputs, "outputs", allow_none=True) or {}
    check_keys(list(outputs), OUTPUT_KEYS, "outputs")
    resolved = dict(DEFAULTS["outputs"])
    resolved.update(outputs)
    for key in ("masks", "probabilities", "overlays"):
        resolved[key] = check_bool(resolved[key], f"outputs/{key}")
    submission = resolved["submission"]
    if isinstance(submission, str):
        submission = {"path": submission}
    if submission is not None:
        submission = _check_mapping(submission, "outputs/submission")
        check_keys(list(submission), SUBMISSION_KEYS, "outputs/submission")
        if "path" not in submission:
            raise PodiumError("outputs/submission needs a path: {path: submission.csv}")
        submission = dict(submission)
        submission["path"] = _check_path(submission["path"], "outputs/submission/path")
        _check_submission(submission)
    resolved["submission"] = submission
    return resolved


def _check_submission(submission: Dict[str, Any]) -> None:
    """Columns, templates and options checked by the writer itself (nothing is written)."""
    from podium.inference.submission import SubmissionWriter

    options = {
        k: (tuple(v) if k == "columns" and isinstance(v, list) else v)
        for k, v in submission.items()
        if k != "path"
    }
    SubmissionWriter(submission["path"], **options)


# ---------------------------------------------------------------------------- values
def _check_mapping(value, key: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not isinstance(value, Mapping):
        raise PodiumError(f"{key} must be a mapping, got {value!r}")
    return dict(value)


def _check_path(value, key: str) -> str:
    if not isinstance(value, (str, Path)) or not str(value):
        raise PodiumError(f"{key} must be a path, got {value!r}")
    return str(value)
