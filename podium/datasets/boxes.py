"""Moved to `podium.tasks.boxes.data`; kept for the configs and code naming this path."""

from podium.datasets.deepforest import SPLITS, split_region, window_to_scene  # noqa: F401
from podium.datasets.normalize import IMAGENET_NORMALIZE  # noqa: F401
from podium.tasks.boxes.data import *  # noqa: F403
