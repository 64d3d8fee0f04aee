"""A mask GeoTIFF → one polygon per object in map coordinates (GPKG / GeoJSON), and instance
rasters.

    polygons = mask_polygons("out/scene_mask.tif")                  # GeoDataFrame, raster's CRS
    polygons["geometry"] = polygons.geometry.simplify(0.2)          # map units, if wanted
    write_polygons(polygons, "trees.gpkg")                          # or .geojson
    write_instances(polygons, "out/scene_mask.tif", "out/scene_instances.tif")

The mask is read in strips of rows and vectorised with `rasterio.features.shapes` (8-connected,
like post-processing's blobs; pixel edges, holes kept); pieces cut by a strip edge are joined
with the pieces they touch in the next strip, so memory follows the objects, not the raster.
An object is the pixels of one mask value (binary: 1, multiclass: the class index, multilabel:
one band per class) that are 8-connected; diagonal neighbours make a MultiPolygon.

Columns: `id` (1..n, top to bottom), `class` (mask value, or band number for a multilabel
mask), `area` in map units² (the CRS's units: m² for UTM: the object's pixels exactly, so
computed before any simplification) and the geometry (pixel edges). Instance rasters burn the
unsimplified polygons' ids (uint32, 0 = no object) into a GeoTIFF of the mask's grid.
"""

import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from podium.errors import PodiumError
from podium.files import write_atomically
from podium.inference.geotiff import GeoTiffOutput

__all__ = [
    "DRIVERS",
    "STRIP_ROWS",
    "check_vector_path",
    "mask_polygons",
    "polygons_path",
    "write_instances",
    "write_polygons",
]

DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
STRIP_ROWS = 1024


def check_vector_path(path) -> Path:
    """A .gpkg / .geojson path (its format is chosen by the suffix)."""
    path = Path(path)
    if path.suffix.lower() not in DRIVERS:
        raise PodiumError(
            f"polygons file {path} has suffix {path.suffix!r}; expected one of: "
            f"{', '.join(DRIVERS)}"
        )
    return path


def mask_polygons(mask_path, strip_rows: int = STRIP_ROWS):
    """GeoDataFrame of the objects of a mask GeoTIFF (see the module docstring)."""
    import geopandas as gpd
    import shapely

    from podium.datasets.scenes.rasters import open_raster

    pieces: List[Tuple[int, object]] = []  # (class, geometry in pixel coordinates)
    with open_raster(str(mask_path)) as src:
        crs, transform, nodata = src.crs, src.transform, src.nodata
        for band in range(1, src.count + 1):
            found = _band_objects(src, band, strip_rows, nodata)
            pieces += [(band if src.count > 1 else v, g) for v, g in found]
    pieces.sort(key=lambda p: (p[1].bounds[1], p[1].bounds[0], p[0]))
    geometries = np.array([g for _, g in pieces], dtype=object)
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    geometries = np.array(
        [shapely.affinity.affine_transform(g, [a, b, d, e, c, f]) for g in geometries],
        dtype=object,
    )
    areas = shapely.area(geometries) if len(geometries) else np.zeros(0)
    return gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(pieces) + 1, dtype=np.int64),
            "class": np.array([v for v, _ in pieces], dtype=np.int64),
            "area": np.asarray(areas, dtype=np.float64),
        },
        geometry=list(geometries),
        crs=crs,
    )


def _band_objects(src, band: int, strip_rows: int, nodata) -> List[Tuple[int, object]]:
    """(value, geometry in pixel coordinates) of every object of one band, strip by strip."""
    import shapely
    from rasterio.features import shapes
    from rasterio.windows import Window

    done: List[Tuple[int, object]] = []
    open_pieces: List[Tuple[int, object]] = []  # touching a strip edge inside the raster
    for top in range(0, src.height, strip_rows):
        rows = min(strip_rows, src.height - top)
        data = src.read(band, window=Window(0, top, src.width, rows))
        on = data > 0 if nodata is None else (data > 0) & (data != nodata)
        if not on.any():
            continue
        offset = shapely.affinity.translate
        for geometry, value in shapes(data, mask=on, connectivity=8):
            piece = offset(shapely.geometry.shape(geometry), 0, top)
            _, miny, _, maxy = piece.bounds
            cut = (miny == top and top > 0) or (maxy == top + rows and top + rows < src.height)
            (open_pieces if cut else done).append((int(value), piece))
    return done + _join(open_pieces)


def _join(pieces: List[Tuple[int, object]]) -> List[Tuple[int, object]]:
    """Pieces of one value that touch (across a strip edge) merged into one object each."""
    import shapely
    from shapely.ops import unary_union

    if not pieces:
        return []
    geometries = [g for _, g in pieces]
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist()):
        if i < j and pieces[i][0] == pieces[j][0]:
            parent[root(i)] = root(j)
    groups: Dict[int, List[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return [
        (pieces[members[0]][0], unary_union([geometries[i] for i in members]))
        for members in groups.values()
    ]


def write_polygons(polygons, path) -> Path:
    """Write a GeoDataFrame as GPKG or GeoJSON (by the suffix), atomically."""
    path = check_vector_path(path)
    driver = DRIVERS[path.suffix.lower()]
    layer = {"layer": _layer_name(path)} if driver == "GPKG" else {}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # GDAL: "extension should be gpkg" (the temp file's)
            warnings.filterwarnings("ignore", "The filename extension", RuntimeWarning)
            polygons.to_file(tmp, driver=driver, **layer)

    return write_atomically(path, write)


def write_instances(polygons, like_path, path, strip_rows: int = STRIP_ROWS) -> Path:
    """Burn the polygons' ids into a uint32 GeoTIFF of the grid of `like_path` (0 = none)."""
    import shapely
    from rasterio.features import rasterize
    from rasterio.windows import Window, bounds
    from rasterio.windows import transform as window_transform

    from podium.datasets.scenes.rasters import open_raster

    geometries = np.asarray(polygons.geometry.values, dtype=object)
    ids = polygons["id"].to_numpy()
    tree = shapely.STRtree(geometries) if len(geometries) else None
    with open_raster(str(like_path)) as src:
        output = GeoTiffOutput(path, src, 1, "uint32", nodata=0)
        try:
            for top in range(0, src.height, strip_rows):
                window = Window(0, top, src.width, min(strip_rows, src.height - top))
                labels = np.zeros((int(window.height), src.width), np.uint32)
                if tree is not None:
                    hits = tree.query(shapely.box(*bounds(window, src.transform)))
                    if len(hits):
                        rasterize(
                            zip(geometries[hits], ids[hits].tolist()),
                            out=labels,
                            transform=window_transform(window, src.transform),
                        )
                output.write(labels, top)
            return output.commit()
        except BaseException:
            output.discard()
            raise


def _layer_name(path: Path) -> str:
    """A GPKG layer name from the file stem (letters, digits, underscores)."""
    name = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
    return name or "polygons"


def polygons_path(template, scene, count: int) -> Path:
    """`template` for one scene; with several, <stem>_<scene stem><suffix> beside it."""
    template = check_vector_path(template)
    if count == 1:
        return template
    return template.with_name(f"{template.stem}_{Path(scene).stem}{template.suffix}")
