"""Moved to `podium.tasks.geopose.cli`; kept for the configs and code naming this path."""

from podium.tasks.geopose.cli import *  # noqa: F403
