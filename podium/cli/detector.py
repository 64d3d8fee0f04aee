"""Moved to `podium.tasks.boxes.cli`; kept for the configs and code naming this path."""

from podium.tasks.boxes.cli import *  # noqa: F403
