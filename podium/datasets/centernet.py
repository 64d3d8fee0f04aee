"""Moved to `podium.tasks.centernet.data`; kept for the configs and code naming this path."""

from podium.tasks.centernet.data import *  # noqa: F403
