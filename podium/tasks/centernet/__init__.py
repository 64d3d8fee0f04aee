"""CenterNet ("Objects as Points"): objects as heatmap peaks, with their box sizes and offsets.

    data.py       Gaussian targets; the deepforest tree-crown tiles (`build_deepforest_tiles`)
    model.py      the model on a timm encoder (`create_model("centernet")`), its peak decoding
    loss.py       the penalty-reduced focal loss of the heatmap (`CenterNetFocalLoss`)
    metrics.py    mAP of detections (`DetectionMAP`)
    callbacks.py  that mAP per epoch in training (`DetectionMAPCallback`)
    predict.py    run → boxes per image (TTA), mAP on the run's tiles (`CenterNetPredictor`)
    cli.py        `podium predict` of a CenterNet run (= `podium predict-centernet`)

Config: configs/centernet/resnet18_trees.yml.
"""

from podium.tasks.centernet.callbacks import DetectionMAPCallback
from podium.tasks.centernet.data import CrownTiles, build_deepforest_tiles, render_targets
from podium.tasks.centernet.loss import CenterNetFocalLoss
from podium.tasks.centernet.metrics import DetectionMAP
from podium.tasks.centernet.model import CenterNet, build_centernet, decode_centernet
from podium.tasks.centernet.predict import CenterNetPredictor, load_centernet_predictor

__all__ = [
    "CenterNet",
    "CenterNetFocalLoss",
    "CenterNetPredictor",
    "CrownTiles",
    "DetectionMAP",
    "DetectionMAPCallback",
    "MODELS",
    "build_centernet",
    "build_deepforest_tiles",
    "decode_centernet",
    "load_centernet_predictor",
    "render_targets",
]

MODELS = (build_centernet,)  # runs of models these build are CenterNet runs
