"""Georeferenced scenes (GeoTIFF + vector labels) as training data, read by window.

table.py reads scenes.csv; rasters.py and vectors.py read pixels and labels of one window;
windows.py lays out the validation grid, random training windows and the split guard;
dataset.py is the Dataset (`data: {layout: scenes}`); tiles.py writes `podium tile`'s folders;
stats.py serves `podium stats` / `podium folds` on a scenes table.
"""
