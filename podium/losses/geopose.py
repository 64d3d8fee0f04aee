"""Moved to `podium.tasks.geopose.loss`; kept for the configs and code naming this path."""

from podium.tasks.geopose.loss import *  # noqa: F403
