"""Moved to `podium.tasks.geopose.predict`; kept for the configs and code naming this path."""

from podium.tasks.geopose.predict import *  # noqa: F403
