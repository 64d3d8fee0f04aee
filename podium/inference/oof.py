"""Out-of-fold prediction of one `podium cv` fold.

The fold's best checkpoint predicts its validation images into the shared
RUN_DIR/oof/probabilities (podium predict's uint8 layout), which `podium submit` tunes
post-processing on; the fold's OOF Dice / IoU go into its cv_done.json. It runs inside the
`podium cv` process, not in a subprocess: that saves ~15 s of imports per fold.
"""

import gc
import os
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, List

from podium.datasets import build_segmentation_datasets
from podium.inference import cv_runs
from podium.inference.config import resolve_inference_config

__all__ = ["OOF_OUTPUTS", "validation_names", "predict_out_of_fold"]

OOF_OUTPUTS = {"masks": False, "probabilities": True, "overlays": False, "submission": None}


def validation_names(data: Dict[str, Any]) -> List[str]:
    """The validation images of a run's data block, selected by the builder the run trained with."""
    params = {
        key: value
        for key, value in data.items()
        if key not in ("train_transforms", "valid_transforms")
    }
    return list(build_segmentation_datasets(**params)["valid"].names)


def predict_out_of_fold(
    run_dir: Path, fold_path: Path, data: Dict[str, Any], settings: Dict[str, Any]
) -> Dict[str, float]:
    """The fold's best checkpoint over its validation images → RUN_DIR/oof/probabilities; OOF
    Dice/IoU."""
    from podium.inference.pipeline import predict

    out = run_dir / "oof"
    config = deepcopy(settings)
    config.update(
        models=[{"run": str(fold_path), "checkpoint": "best"}],
        data={"root": str(data["root"]), "names": str((fold_path / cv_runs.NAMES).resolve())},
        outputs=dict(OOF_OUTPUTS),
        out=str(out),
    )
    summary = predict(resolve_inference_config(config))
    # predict's per-run files belong to the fold, not to the shared oof/ folder
    for name, target in (
        ("metrics.json", cv_runs.OOF_METRICS),
        ("timings.json", "oof_timings.json"),
        ("predict_config.yml", "oof_predict.yml"),
    ):
        if (out / name).is_file():
            os.replace(out / name, fold_path / target)
    _release_memory()
    if "dice" not in summary:
        return {}
    metrics = {"oof_dice": summary["dice_macro"], "oof_iou": summary["iou_macro"]}
    if len(summary["dice"]) > 1:
        for name, dice, iou in zip(summary["classes"], summary["dice"], summary["iou"]):
            metrics[f"oof_dice/{name}"], metrics[f"oof_iou/{name}"] = dice, iou
    return metrics


def _release_memory() -> None:
    """Give the prediction's cached GPU memory back before the next fold's process starts."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
