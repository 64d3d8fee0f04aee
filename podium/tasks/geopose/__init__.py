"""Overhead Geopose: dense regression of height and flow maps, plus a flow direction and scale.

    data.py       synthetic oblique scenes with their targets (`build_geopose_datasets`)
    model.py      the multi-head U-Net on a timm encoder (`create_model("geopose")`)
    loss.py       the huber-cos loss stack as one module (`HuberCosLoss`)
    predict.py    run → maps, direction and scale per image (TTA), R2 on the run's scenes
    cli.py        `podium predict` of a Geopose run (= `podium predict-geopose`)

Metrics are the core's `R2Callback` (per city). Config: configs/geopose/unet_resnet18_hubercos.yml.
"""

from podium.tasks.geopose.data import SyntheticGeoposeScenes, build_geopose_datasets
from podium.tasks.geopose.loss import HuberCosLoss
from podium.tasks.geopose.model import GeoposeModel, build_geopose_model
from podium.tasks.geopose.predict import GeoposePredictor, load_geopose_predictor

__all__ = [
    "GeoposeModel",
    "GeoposePredictor",
    "HuberCosLoss",
    "MODELS",
    "SyntheticGeoposeScenes",
    "build_geopose_datasets",
    "build_geopose_model",
    "load_geopose_predictor",
]

MODELS = (build_geopose_model,)  # runs of models these build are Geopose runs
