"""podium.callbacks."""
