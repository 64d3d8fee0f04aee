"""podium.losses: criteria as plain torch modules (no Catalyst), usable from YAML by their
full dotted names, e.g. `_target_: podium.losses.FocalLoss`.

Every loss takes LOGITS (raw model outputs) and targets; `mode` = "binary" | "multilabel" |
"multiclass" where it applies (as in toolbelt / smp). Where pytorch-toolbelt 0.8.0 is right
it is the test reference; where it is not, the module docstring names the defect fixed.
A misspelled constructor argument raises PodiumError with a "did you mean".
"""

from podium.losses._base import PodiumLoss
from podium.losses.bce import BCEWithLogitsLoss, CrossEntropyLoss, SoftBCEWithLogitsLoss
from podium.losses.dice import DiceLoss
from podium.losses.focal import BinaryFocalLoss, FocalLoss, SoftmaxFocalLoss
from podium.losses.jaccard import JaccardLoss
from podium.losses.lovasz import LovaszLoss
from podium.losses.presence import presence_targets
from podium.losses.regression import CosineSimilarityLoss, HuberLoss, L1Loss, SmoothL1Loss
from podium.losses.soft_labels import KLDivLoss, SoftTargetBCEWithLogitsLoss
from podium.targets import moved_attribute

__all__ = [
    "PodiumLoss",
    "BCEWithLogitsLoss",
    "SoftBCEWithLogitsLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "BinaryFocalLoss",
    "SoftmaxFocalLoss",
    "DiceLoss",
    "JaccardLoss",
    "LovaszLoss",
    "HuberLoss",
    "SmoothL1Loss",
    "L1Loss",
    "CosineSimilarityLoss",
    "KLDivLoss",
    "SoftTargetBCEWithLogitsLoss",
    "presence_targets",
]

# the tasks' own losses (podium/tasks), still named here by older configs
MOVED = {"CenterNetFocalLoss": "podium.losses.centernet", "HuberCosLoss": "podium.losses.geopose"}


def __getattr__(name: str):
    return moved_attribute(__name__, name, MOVED)
