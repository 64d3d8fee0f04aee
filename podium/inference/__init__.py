"""Prediction: checkpoints → probabilities (TTA, tiles, ensembles) → masks, maps, overlays,
submission, metrics.

`predict(resolve_inference_config(...))` is what `podium predict` runs; the pieces are usable alone.
"""

from podium.lazy import lazy_exports


# each imported when first read (podium/lazy.py): no torch or toolbelt for one module
lazy_exports(
    __name__,
    {
        "write_json": "podium.files",
        "load_model": "podium.inference.checkpoint",
        "load_run_config": "podium.inference.checkpoint",
        "load_state_dict": "podium.inference.checkpoint",
        "apply_flags": "podium.inference.config",
        "load_inference_config": "podium.inference.config",
        "resolve_inference_config": "podium.inference.config",
        "GeometryInverse": "podium.inference.geometry",
        "ImagePipeline": "podium.inference.geometry",
        "READING_KEYS": "podium.inference.pipeline",
        "predict": "podium.inference.pipeline",
        "Predictor": "podium.inference.predictor",
        "default_device": "podium.inference.predictor",
        "TiledPrediction": "podium.inference.tiles",
        "to_mask": "podium.inference.writers",
        "write_mask": "podium.inference.writers",
        "write_overlay": "podium.overlays",
    },
)
