"""podium.cli."""
