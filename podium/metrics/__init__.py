"""podium.metrics."""
