"""Moved to `podium.tasks.boxes.predict`; kept for the configs and code naming this path."""

from podium.tasks.boxes.predict import BoxesPredictor as BoxPredictor  # noqa: F401
from podium.tasks.boxes.predict import load_boxes_predictor as load_box_predictor  # noqa: F401
from podium.tasks.boxes.predict import *  # noqa: F403
