"""podium.runners."""
