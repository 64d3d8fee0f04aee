"""Moved to `podium.tasks.centernet.cli`; kept for the configs and code naming this path."""

from podium.tasks.centernet.cli import *  # noqa: F403
