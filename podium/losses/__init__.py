"""podium.losses."""
