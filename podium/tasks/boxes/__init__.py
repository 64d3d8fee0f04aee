"""Boxes: one class score and one box per image (a classifier with a box-regression head).

    data.py       deepforest crops with one box each, letterboxed (`build_deepforest_datasets`)
    model.py      the classifier + box head on a timm backbone (`create_model("boxes")`)
    predict.py    run → score and box per image in its pixels (TTA) (`BoxesPredictor`)
    cli.py        `podium predict` of a boxes run (= `podium predict-boxes`, `predict-detector`)

Losses and metrics are the core's (BCE, smooth-L1, accuracy, `BoxIoUCallback`).
Config: configs/detector/efficientnet_b0_boxes.yml.
"""

from podium.tasks.boxes.data import CrownCrops, build_deepforest_datasets
from podium.tasks.boxes.model import BoxesModel, build_boxes_model
from podium.tasks.boxes.predict import BoxesPredictor, load_boxes_predictor

__all__ = [
    "BoxesModel",
    "BoxesPredictor",
    "CrownCrops",
    "MODELS",
    "build_boxes_model",
    "build_deepforest_datasets",
    "load_boxes_predictor",
]

MODELS = (build_boxes_model,)  # runs of models these build are boxes runs
