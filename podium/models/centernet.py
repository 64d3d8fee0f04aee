"""Moved to `podium.tasks.centernet.model`; kept for the configs and code naming this path."""

from podium.tasks.centernet.model import *  # noqa: F403
