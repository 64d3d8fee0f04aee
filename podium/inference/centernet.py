"""Moved to `podium.tasks.centernet.predict`; kept for the configs and code naming this path."""

from podium.tasks.centernet.predict import *  # noqa: F403
