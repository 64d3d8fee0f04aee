"""Scenes cut into tiles on disk (`podium tile`), in podium's image-folder layout.

Every row of scenes.csv is cut along the same fixed grid as validation windows (every pixel
of the region once; the last row and column padded). Each tile is what the scene dataset reads
for that window, before normalisation and augmentation:

    images/NAME.tif   H×W×C in the raster's dtype (8/16-bit, float), nodata and padding = 0
    masks/NAME.png    uint8 class indices (binary: 0/1); nodata / padding = ignore_index
                      (a .tif when the ignore value or the classes do not fit in uint8)
    split.csv         name,split[,fold] from the scene's row, so every existing command works
    tiles.csv         name,scene,split,col_off,row_off,width,height,crs and the tile's affine
                      transform a,b,c,d,e,f (x = a·col + b·row + c, y = d·col + e·row + f)

NAME is SCENE_xCOL_yROW (the window's top-left pixel in the raster). Each file is written
whole or not at all; the two tables last, so an interrupted run leaves no table naming a
missing tile. Tiles of an earlier run that are not rewritten are left in place.
"""

import io
import os
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
import tifffile

from podium.datasets.scenes.dataset import SceneDataset, window_size
from podium.datasets.scenes.windows import grid_windows
from podium.datasets.scenes.table import load_scenes, read_scenes
from podium.files import write_atomically, write_image

__all__ = ["write_tiles"]


def write_tiles(
    scenes,
    window,
    out,
    bands: Optional[Sequence[int]] = None,
    num_classes: int = 1,
    class_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    ignore_index: int = 255,
    all_touched: bool = False,
) -> Dict:
    """Write the tiles of every scene of the table into `out`; returns counts per split."""
    from rasterio.windows import transform as window_transform

    size = window_size(window)
    table = read_scenes(scenes)
    loaded = load_scenes(
        table,
        bands=bands,
        class_column=class_column,
        class_names=class_names,
        num_classes=num_classes,
    )
    windows = [(i, w) for i, s in enumerate(loaded) for w in grid_windows(s.region, size)]
    dataset = SceneDataset(
        loaded,
        size,
        windows=windows,
        num_classes=num_classes,
        ignore_index=ignore_index,
        all_touched=all_touched,
    )
    rows = table.to_dict("records")
    mask_ext = ".png" if 0 <= ignore_index <= 255 and num_classes <= 256 else ".tif"
    split_rows, tile_rows = [], []
    has_split = "split" in table
    for which, win in windows:
        image, mask = dataset.read(which, win)
        scene, row = loaded[which], rows[which]
        name = f"{scene.name}_x{int(win.col_off)}_y{int(win.row_off)}"
        _write_tiff(os.path.join(out, "images", name + ".tif"), image)
        if mask_ext == ".png":
            write_image(os.path.join(out, "masks", name + ".png"), mask)
        else:
            _write_tiff(os.path.join(out, "masks", name + ".tif"), mask)
        split_rows.append({"name": name, **{k: row[k] for k in ("split", "fold") if k in table}})
        t = window_transform(win, scene.info.transform)
        tile_rows.append(
            {
                "name": name,
                "scene": scene.name,
                "split": row.get("split", ""),
                "col_off": int(win.col_off),
                "row_off": int(win.row_off),
                "width": int(win.width),
                "height": int(win.height),
                "crs": scene.info.crs.to_string() if scene.info.crs is not None else "",
                **dict(zip("abcdef", (t.a, t.b, t.c, t.d, t.e, t.f))),
            }
        )
    _write_table(os.path.join(out, "split.csv"), split_rows)
    _write_table(os.path.join(out, "tiles.csv"), tile_rows)
    counts: Dict[str, int] = {}
    for which, _ in windows:
        key = str(rows[which]["split"]) if has_split else f"fold {int(rows[which]['fold'])}"
        counts[key] = counts.get(key, 0) + 1
    return {"out": str(out), "tiles": len(windows), "counts": counts, "scenes": len(loaded)}


def _write_tiff(path: str, array: np.ndarray) -> None:
    """A TIFF keeping the dtype and all bands, written atomically."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array))
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def _write_table(path: str, rows) -> None:
    text = pd.DataFrame(rows).to_csv(index=False)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
