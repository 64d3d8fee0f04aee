"""Training from georeferenced scenes: windowed reads, labels in any CRS, windows, split guard,
`podium tile`, the trees-geo sample and a real run, and one line per bad input."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import shapely.ops
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import podium_in_process
from podium.datasets.image_folder import ImageFolderDataset
from podium.datasets.scenes.rasters import read_window
from podium.datasets.scenes.dataset import build_scene_datasets
from podium.datasets.scenes.tiles import write_tiles
from podium.datasets.scenes.windows import grid_windows
from podium.datasets.scenes.table import windows_overlap
from podium.errors import PodiumError

UTM = "EPSG:32617"
ORIGIN = (404000.0, 3285000.0)  # top-left corner, metres (UTM zone 17N)


def write_raster(path, array, crs=UTM, nodata=None, res=1.0):
    """A GeoTIFF of a C×H×W array: north-up, `res` metre pixels from ORIGIN."""
    count, height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype,
        crs=crs,
        transform=from_origin(*ORIGIN, res, res),
        nodata=nodata,
    ) as dst:
        dst.write(array)
    return path


def write_geojson(path, polygons, properties=None, crs=UTM):
    """GeoJSON of shapely polygons (written by hand, not by geopandas)."""
    features = [
        {
            "type": "Feature",
            "properties": (properties or [{}] * len(polygons))[i],
            "geometry": shapely.geometry.mapping(p),
        }
        for i, p in enumerate(polygons)
    ]
    collection = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        epsg = crs.split(":")[1]
        collection["crs"] = {
            "type": "name",
            "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"},
        }
    path.write_text(json.dumps(collection))
    return path


def pixel_box(col0, row0, col1, row1):
    """A map-coordinate rectangle over pixel columns col0..col1 and rows row0..row1 (1 m pixels)."""
    x0, y0 = ORIGIN
    return shapely.box(x0 + col0, y0 - row1, x0 + col1, y0 - row0)


def write_scenes(folder, rows, columns="name,image,labels,split"):
    path = folder / "scenes.csv"
    path.write_text(columns + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def scene(tmp_path):
    """A 3-band uint16 60×80 scene with a nodata corner and two labelled rectangles."""
    rng = np.random.default_rng(0)
    array = rng.integers(1, 4000, size=(3, 60, 80), dtype=np.uint16)
    array[:, :10, :10] = 0  # nodata corner
    write_raster(tmp_path / "scene.tif", array, nodata=0)
    write_geojson(
        tmp_path / "labels.geojson",
        [pixel_box(20, 10, 40, 30), pixel_box(50.5, 35.5, 70.5, 55.5)],
        [{"kind": "a"}, {"kind": "b"}],
    )
    return tmp_path, array


# ---------------------------------------------------------------- reading
def test_windowed_read_equals_the_numpy_slice(scene):
    folder, array = scene
    with rasterio.open(folder / "scene.tif") as src:
        image, valid = read_window(src, Window(5, 4, 30, 20), [1, 2, 3])
        assert image.dtype == np.uint16
        np.testing.assert_array_equal(image, array[:, 4:24, 5:35].transpose(1, 2, 0))
        np.testing.assert_array_equal(valid, (array[:, 4:24, 5:35] != 0).any(axis=0))
        picked, _ = read_window(src, Window(5, 4, 30, 20), [3, 1])
        np.testing.assert_array_equal(picked, array[[2, 0], 4:24, 5:35].transpose(1, 2, 0))
        padded, valid = read_window(src, Window(70, 50, 20, 20), [1, 2, 3])
    assert padded.shape == (20, 20, 3)
    np.testing.assert_array_equal(padded[:10, :10], array[:, 50:, 70:].transpose(1, 2, 0))
    assert not valid[10:].any() and not valid[:, 10:].any() and (padded[10:] == 0).all()


@pytest.mark.parametrize(
    "window", [(-7, -5, 30, 20), (70, -3, 20, 90), (-4, 50, 120, 20), (100, 100, 8, 8)]
)
def test_windows_leaving_the_raster_read_as_rasterio_boundless_reads(scene, window):
    """Reading the inside part and padding equals GDAL's (slower) boundless read."""
    folder, array = scene
    with rasterio.open(folder / "scene.tif") as src:
        image, valid = read_window(src, Window(*window), [3, 1])
        reference = src.read([3, 1], window=Window(*window), boundless=True, fill_value=0)
    np.testing.assert_array_equal(image, reference.transpose(1, 2, 0))
    col, row, width, height = window
    rows, cols = np.arange(height)[:, None] + row, np.arange(width)[None] + col
    inside = (rows >= 0) & (rows < array.shape[1]) & (cols >= 0) & (cols < array.shape[2])
    np.testing.assert_array_equal(valid, inside & (reference != 0).any(axis=0))


def test_float_raster_nan_nodata(tmp_path):
    array = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    array[:, 2, 3] = np.nan
    write_raster(tmp_path / "f.tif", array, nodata=np.nan)
    with rasterio.open(tmp_path / "f.tif") as src:
        image, valid = read_window(src, Window(0, 0, 8, 8), [1, 2])
    assert not valid[2, 3] and valid.sum() == 63 and np.isfinite(image).all()
    np.testing.assert_array_equal(image[valid], array.transpose(1, 2, 0)[valid])


def _mask(folder, labels, **options):
    """The valid grid mask of one whole-scene window (the scene is both train and valid)."""
    raster = options.pop("raster", "scene.tif")
    write_scenes(folder, [["t", raster, labels, "train"], ["v", raster, labels, "valid"]])
    with pytest.raises(PodiumError, match="overlap"):  # same raster, same (whole) region
        build_scene_datasets(str(folder / "scenes.csv"), window=[60, 80], **options)
    import shutil

    shutil.copyfile(folder / raster, folder / "copy.tif")  # another file: no guard
    write_scenes(folder, [["t", "copy.tif", labels, "train"], ["v", raster, labels, "valid"]])
    datasets = build_scene_datasets(str(folder / "scenes.csv"), window=[60, 80], **options)
    return datasets["valid"][0]["mask"].numpy()


def test_labels_in_another_crs_rasterise_to_the_same_pixels(scene):
    from pyproj import Transformer

    folder, array = scene
    polygons = [pixel_box(20.3, 10.3, 40.3, 30.3), pixel_box(50.6, 35.2, 70.1, 55.9)]
    write_geojson(folder / "utm.geojson", polygons)
    to_wgs84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform
    write_geojson(
        folder / "wgs84.geojson",
        [shapely.ops.transform(to_wgs84, p) for p in polygons],
        crs="EPSG:4326",
    )
    utm = _mask(folder, "utm.geojson")
    wgs84 = _mask(folder, "wgs84.geojson")
    # reference: pixel centres inside the UTM polygons (shapely), nodata corner ignored
    rows, cols = np.mgrid[0:60, 0:80]
    xs, ys = ORIGIN[0] + cols + 0.5, ORIGIN[1] - rows - 0.5
    inside = np.zeros((60, 80), bool)
    for p in polygons:
        inside |= shapely.contains_xy(p, xs, ys)
    expected = np.where((array != 0).any(axis=0), inside.astype(np.float32), 255)
    np.testing.assert_array_equal(utm[0], expected)
    np.testing.assert_array_equal(wgs84[0], expected)


def test_class_column_gives_class_indices(scene):
    folder, _ = scene
    mask = _mask(
        folder,
        "labels.geojson",
        num_classes=3,
        class_column="kind",
        class_names=["background", "a", "b"],
    )
    assert mask.dtype == np.int64
    assert (mask[10:30, 20:40] == 1).all() and (mask[36:55, 51:70] == 2).all()
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 255}
    write_geojson(folder / "ints.geojson", [pixel_box(20, 10, 40, 30)], [{"kind": 2}])
    mask = _mask(folder, "ints.geojson", num_classes=3, class_column="kind")
    assert (mask[10:30, 20:40] == 2).all() and set(np.unique(mask).tolist()) == {0, 2, 255}


# ---------------------------------------------------------------- windows and the split guard
@pytest.mark.parametrize("region", [Window(0, 0, 80, 60), Window(7, 5, 50, 33)])
def test_grid_windows_cover_the_region_exactly_once(region):
    count = np.zeros((200, 200), int)
    for w in grid_windows(region, (16, 24)):
        assert (w.height, w.width) == (16, 24)
        count[w.row_off : w.row_off + 16, w.col_off : w.col_off + 24] += 1
    r, c, h, wd = region.row_off, region.col_off, region.height, region.width
    assert (count[r : r + h, c : c + wd] == 1).all()


def test_random_windows_never_overlap_validation_windows(scene):
    folder, _ = scene
    write_scenes(
        folder,
        [
            ["t", "scene.tif", "labels.geojson", "train", 0, 0, 48, 60],
            ["v", "scene.tif", "labels.geojson", "valid", 48, 0, 32, 60],
        ],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    datasets = build_scene_datasets(
        str(folder / "scenes.csv"), window=16, train_windows=300, positive_p=0.5
    )
    valid = [w for _, w in datasets["valid"].windows]
    assert len(valid) == 8  # 2 columns × 4 rows of 16 over 32×60
    np.random.seed(0)
    for index in range(300):
        _, window = datasets["train"].window(index)
        assert 0 <= window.col_off and window.col_off + 16 <= 48
        assert not any(windows_overlap(window, v) for v in valid)
    # positive-biased: half the windows centred on a label, so more foreground than uniform
    masks = np.stack([datasets["train"][i]["mask"].numpy() for i in range(100)])
    assert (masks == 1).mean() > 0.25  # the labels cover 20 % of the train region


def test_split_guard_refuses_overlapping_regions(scene):
    folder, _ = scene
    write_scenes(
        folder,
        [
            ["t", "scene.tif", "labels.geojson", "train", 0, 0, 50, 60],
            ["v", "scene.tif", "labels.geojson", "valid", 48, 0, 32, 60],
        ],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    with pytest.raises(PodiumError, match=r"train scene t and valid scene v overlap .*0,0,50,60"):
        build_scene_datasets(str(folder / "scenes.csv"), window=16)


def test_folds_select_scenes(scene):
    folder, _ = scene
    write_scenes(
        folder,
        [[f"s{i}", "scene.tif", "labels.geojson", i, i * 20, 0, 20, 60] for i in range(4)],
        columns="name,image,labels,fold,col_off,row_off,width,height",
    )
    datasets = build_scene_datasets(str(folder / "scenes.csv"), window=20, fold=1)
    assert [s.name for s in datasets["train"].scenes] == ["s0", "s2", "s3"]
    assert [s.name for s in datasets["valid"].scenes] == ["s1"]


# ---------------------------------------------------------------- podium tile
def test_tiles_read_back_by_the_image_folder_dataset(scene, tmp_path):
    folder, array = scene
    write_scenes(
        folder,
        [
            ["t", "scene.tif", "labels.geojson", "train", 0, 0, 40, 60],
            ["v", "scene.tif", "labels.geojson", "valid", 40, 0, 40, 60],
        ],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    out = tmp_path / "tiles"
    code, stdout, stderr = podium_in_process(
        "tile", "--scenes", folder / "scenes.csv", "--window", 20, "--out", out
    )
    assert code == 0, stderr
    assert "wrote 12 tiles of 2 scene(s)" in stdout
    tiles = pd.read_csv(out / "tiles.csv")
    assert len(tiles) == 12 and (tiles["a"] == 1.0).all() and (tiles["e"] == -1.0).all()
    first = tiles.iloc[0]
    assert (first["c"], first["f"]) == ORIGIN and first["crs"] == UTM
    normalize = {"mode": "fixed", "max_value": 4000}
    scenes = build_scene_datasets(str(folder / "scenes.csv"), window=20, normalize=normalize)
    names = pd.read_csv(out / "split.csv").query("split == 'valid'")["name"].tolist()
    folder_set = ImageFolderDataset(out, names, normalize=normalize)
    assert len(folder_set) == len(scenes["valid"]) == 6
    for i in range(6):
        a, b = scenes["valid"][i], folder_set[i]
        assert a["name"] == b["name"]
        assert np.array_equal(a["image"].numpy(), b["image"].numpy())
        if not (a["mask"] == 255).any():  # the image folder has no ignore value
            assert np.array_equal(a["mask"].numpy(), b["mask"].numpy())
    # the raw tile is the raster's window
    tile = folder_set._read_image(0)
    np.testing.assert_array_equal(tile, array[:, 0:20, 40:60].transpose(1, 2, 0))


def test_tile_refuses_bad_input_before_writing(scene, tmp_path):
    folder, _ = scene
    write_scenes(folder, [["t", "scene.tif", "labels.geojson", "train"]])
    out = tmp_path / "tiles"
    with pytest.raises(PodiumError, match="band 5 is out of range"):
        write_tiles(folder / "scenes.csv", 20, out, bands=[1, 5])
    assert not out.exists()


# ---------------------------------------------------------------- the trees-geo sample
def test_trees_geo_polygons_match_the_pixel_boxes(trees_geo):
    from podium.datasets.deepforest import deepforest_folder, read_voc_boxes

    forest = read_voc_boxes(f"{deepforest_folder()}/OSBS_029.xml")
    with rasterio.open(trees_geo / "OSBS_029.tif") as src:
        assert (src.width, src.height, src.count, src.crs.to_epsg()) == (400, 400, 3, 32617)
        assert src.res == pytest.approx((0.1, 0.1))
        nodata = (src.read() == 255).all(axis=0)
    expected = np.zeros((400, 400), np.float32)
    for x0, y0, x1, y1 in forest.boxes.astype(int):
        expected[y0:y1, x0:x1] = 1
    expected[nodata] = 255
    datasets = build_scene_datasets(str(trees_geo / "scenes.csv"), window=[400, 272])
    mask = datasets["train"].read(0, Window(0, 0, 400, 400))[1]
    expected[:, 272:] = 255  # outside the train region
    np.testing.assert_array_equal(mask, expected)
    assert len(datasets["valid"]) == 1  # 128 columns × 400 rows: one window of 400×272


# ---------------------------------------------------------------- bad input, one line each
def _build(folder, labels="labels.geojson", raster="scene.tif", **options):
    """The one-line error of building train (left half) and valid (right half), or None."""
    write_scenes(
        folder,
        [
            ["t", raster, labels, "train", 0, 0, 10, 20],
            ["v", raster, labels, "valid", 10, 0, 10, 20],
        ],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    try:
        build_scene_datasets(str(folder / "scenes.csv"), window=16, **options)
    except PodiumError as error:
        message = str(error)
        assert "\n" not in message
        return message
    return None


def test_raster_without_crs_and_labels_with_one(scene):
    folder, array = scene
    write_raster(folder / "nocrs.tif", array, crs=None, nodata=0)
    message = _build(folder, raster="nocrs.tif")
    assert "are in EPSG:32617 but raster" in message and "nocrs.tif has no CRS" in message


def test_labels_that_do_not_overlap_name_both_extents(scene):
    folder, _ = scene
    write_geojson(folder / "far.geojson", [shapely.box(10, 50, 11, 51)], crs="EPSG:4326")
    message = _build(folder, labels="far.geojson")
    assert "do not overlap raster" in message
    assert "(10, 50, 11, 51) in their own CRS" in message and "(404000, 3.28494e+06" in message


def test_invalid_geometries_repaired_with_a_count_or_refused(scene, caplog):
    folder, _ = scene
    x0, y0 = ORIGIN
    bowtie = shapely.Polygon(
        [(x0 + 5, y0 - 5), (x0 + 25, y0 - 25), (x0 + 25, y0 - 5), (x0 + 5, y0 - 25)]
    )
    assert not bowtie.is_valid
    write_geojson(folder / "bad.geojson", [bowtie, pixel_box(40, 40, 50, 50)])
    with caplog.at_level(logging.WARNING, logger="podium.datasets"):
        assert _build(folder, labels="bad.geojson") is None
    assert "repaired 1 invalid and dropped 0 empty geometries" in caplog.text
    message = _build(folder, labels="bad.geojson", invalid_geometries="error")
    assert "have 1 invalid geometries (rows 0: Self-intersection" in message


def test_empty_label_file_is_an_all_background_scene(scene):
    folder, _ = scene
    (folder / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    mask = _mask(folder, "empty.geojson")
    assert set(np.unique(mask).tolist()) == {0, 255}


def test_all_nodata_scene(scene):
    folder, _ = scene
    write_raster(folder / "blank.tif", np.zeros((3, 20, 20), np.uint16), nodata=0)
    message = _build(folder, raster="blank.tif")
    assert "blank.tif (scene t) is all nodata (nodata value 0.0)" in message


def test_band_out_of_range(scene):
    message = _build(scene[0], bands=[1, 4])
    assert (
        "band 4 is out of range for raster" in message and "expected band numbers 1..3" in message
    )


def test_window_larger_than_the_scene_is_padded(scene):
    folder, array = scene
    write_scenes(
        folder,
        [
            ["t", "scene.tif", "labels.geojson", "train", 0, 0, 40, 60],
            ["v", "scene.tif", "labels.geojson", "valid", 40, 0, 40, 60],
        ],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    datasets = build_scene_datasets(str(folder / "scenes.csv"), window=100, train_windows=2)
    item = datasets["valid"][0]
    assert item["image"].shape == (3, 100, 100) and len(datasets["valid"]) == 1
    mask = item["mask"].numpy()[0]
    assert (
        (mask[60:] == 255).all() and (mask[:, 40:] == 255).all() and (mask[:60, :40] != 255).all()
    )
    assert datasets["train"][0]["image"].shape == (3, 100, 100)


def test_class_value_absent_from_the_config(scene):
    message = _build(scene[0], num_classes=2, class_column="kind", class_names=["background", "a"])
    assert "class value \"b\" of column kind is not in class_names ['a']" in message
    message = _build(scene[0], class_column="kinds")
    assert 'class_column "kinds" is not a column of labels' in message and "kind" in message


# ---------------------------------------------------------------- podium stats / folds on scenes
def test_stats_and_folds_on_a_scenes_table(scene, tmp_path):
    folder, array = scene
    write_scenes(
        folder,
        [[f"s{i}", "scene.tif", "labels.geojson", "train", i * 20, 0, 20, 60] for i in range(4)],
        columns="name,image,labels,split,col_off,row_off,width,height",
    )
    out = tmp_path / "stats.json"
    code, _, stderr = podium_in_process("stats", folder / "scenes.csv", "--out", out, "--quiet")
    assert code == 0, stderr
    stats = json.loads(out.read_text())
    valid = (array != 0).any(axis=0)
    pixels = array.transpose(1, 2, 0)[valid].astype(np.float64)
    assert stats["images"] == 4 and stats["pixels"] == valid.sum()
    assert stats["raw"]["mean"] == pytest.approx(pixels.mean(axis=0).tolist())
    assert stats["raw"]["std"] == pytest.approx(pixels.std(axis=0).tolist())
    labelled = np.zeros((60, 80), bool)
    labelled[10:30, 20:40] = labelled[36:56, 51:71] = True
    fraction = (labelled & valid).sum() / valid.sum()
    assert stats["masks"]["foreground_fraction"] == pytest.approx(fraction, abs=0.01)

    folds_csv = tmp_path / "out" / "folds.csv"
    code, _, stderr = podium_in_process(
        "folds", folder / "scenes.csv", "--k", 2, "--out", folds_csv
    )
    assert code == 0, stderr
    table = pd.read_csv(folds_csv)
    assert sorted(table["fold"].tolist()) == [0, 0, 1, 1]
    datasets = build_scene_datasets(str(folds_csv), window=20, fold=0)
    assert len(datasets["valid"].scenes) == 2 and len(datasets["train"].scenes) == 2
