"""Moved to `podium.tasks.geopose.data`; kept for the configs and code naming this path."""

from podium.tasks.geopose.data import *  # noqa: F403
