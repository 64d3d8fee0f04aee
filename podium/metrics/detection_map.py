"""Moved to `podium.tasks.centernet.metrics`; kept for the configs and code naming this path."""

from podium.tasks.centernet.metrics import *  # noqa: F403
