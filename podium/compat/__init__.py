"""Fixes for Catalyst 21.12 / neptune / tensorboardX on today's stack (placeholder)."""
