"""Instance label map → one GeoJSON feature per object (rasterio.features.shapes).

Coordinates are pixels (x right, y down, corners of pixels: a 1-pixel object at row 0, column 0
is the square (0,0)-(1,1)) unless an affine `transform` maps them to a CRS. An object whose
pixels form several 8-connected pieces becomes one MultiPolygon; holes stay holes.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from rasterio.features import shapes
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from podium.files import write_atomically

__all__ = ["instance_polygons", "write_geojson"]


def instance_polygons(labels: np.ndarray, transform=None) -> List[Dict]:
    """GeoJSON features `{id, area}` (area in pixels), one per object id, in id order."""
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    pieces: Dict[int, list] = {}
    options = {"transform": transform} if transform is not None else {}
    for geometry, value in shapes(labels, mask=labels > 0, connectivity=8, **options):
        pieces.setdefault(int(value), []).append(shape(geometry))
    areas = np.bincount(labels.ravel())
    features = []
    for object_id in sorted(pieces):
        parts = pieces[object_id]
        geometry = parts[0] if len(parts) == 1 else unary_union(parts)
        features.append(
            {
                "type": "Feature",
                "properties": {"id": object_id, "area": int(areas[object_id])},
                "geometry": mapping(geometry),
            }
        )
    return features


def write_geojson(path, features: List[Dict], crs: Optional[str] = None) -> Path:
    """A FeatureCollection file (atomic write); without `crs` the coordinates are pixels."""
    collection = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": crs}}
    text = json.dumps(collection, separators=(",", ":"))
    return write_atomically(Path(path), lambda tmp: tmp.write_text(text))
