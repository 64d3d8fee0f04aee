"""Moved to `podium.tasks.geopose.model`; kept for the configs and code naming this path."""

from podium.tasks.geopose.model import *  # noqa: F403
