"""Moved to `podium.tasks.centernet.callbacks`; kept for the configs and code naming this path."""

from podium.tasks.centernet.callbacks import *  # noqa: F403
