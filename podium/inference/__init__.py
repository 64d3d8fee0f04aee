"""Prediction: checkpoints → probabilities (TTA, tiles, ensembles) → masks, maps, overlays,
submission, metrics.

`predict(resolve_inference_config(...))` is what `podium predict` runs; the pieces are usable alone.
"""

from podium.files import write_json
from podium.inference.checkpoint import load_model, load_run_config, load_state_dict
from podium.inference.config import apply_flags, load_inference_config, resolve_inference_config
from podium.inference.geometry import GeometryInverse, ImagePipeline
from podium.inference.pipeline import READING_KEYS, predict
from podium.inference.predictor import Predictor, default_device
from podium.inference.tiles import TiledPrediction
from podium.inference.writers import to_mask, write_mask
from podium.overlays import write_overlay

__all__ = [
    "GeometryInverse",
    "ImagePipeline",
    "Predictor",
    "READING_KEYS",
    "TiledPrediction",
    "apply_flags",
    "default_device",
    "load_inference_config",
    "load_model",
    "load_run_config",
    "load_state_dict",
    "predict",
    "resolve_inference_config",
    "to_mask",
    "write_json",
    "write_mask",
    "write_overlay",
]
