"""podium.inference."""
