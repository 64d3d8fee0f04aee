"""Prediction: checkpoints → probabilities → masks, overlays, metrics."""
from podium.inference.checkpoint import load_model, load_run_config, load_state_dict
from podium.inference.predictor import Predictor, default_device
from podium.inference.writers import to_mask, write_json, write_mask, write_overlay

__all__ = [
    "Predictor", "default_device", "load_model", "load_run_config", "load_state_dict",
    "to_mask", "write_json", "write_mask", "write_overlay",
]
