"""Moved to `podium.tasks.boxes.model`; kept for the configs and code naming this path."""

from podium.tasks.boxes.model import BoxesModel as BoxClassifier  # noqa: F401
from podium.tasks.boxes.model import build_boxes_model as build_box_classifier  # noqa: F401
from podium.tasks.boxes.model import *  # noqa: F403
