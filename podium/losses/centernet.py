"""Moved to `podium.tasks.centernet.loss`; kept for the configs and code naming this path."""

from podium.tasks.centernet.loss import *  # noqa: F403
