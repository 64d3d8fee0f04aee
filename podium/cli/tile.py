"""`podium tile --scenes scenes.csv --window 512 --out DIR`: cut scenes into image-folder tiles.

Writes images/, masks/, split.csv (so every podium command works on DIR) and tiles.csv (scene,
window and affine transform of every tile). See podium/datasets/scenes/tiles.py and docs/scenes.md.
"""

import argparse

from podium.datasets.scenes.tiles import write_tiles

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenes", required=True, help="scenes table (image,labels,split)")
    parser.add_argument("--window", type=int, required=True, help="tile size in pixels")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument(
        "--bands", type=_int_list, help="1-based band numbers, e.g. 1,2,3 (default all)"
    )
    parser.add_argument(
        "--num-classes", type=int, default=1, help="1 = binary masks (default), else classes"
    )
    parser.add_argument("--class-column", help="column of the label files holding the class")
    parser.add_argument(
        "--class-names", type=_name_list, help="class names, background first: background,tree"
    )
    parser.add_argument(
        "--ignore-index", type=int, default=255, help="mask value of nodata pixels (default 255)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    summary = write_tiles(
        args.scenes,
        args.window,
        args.out,
        bands=args.bands,
        num_classes=args.num_classes,
        class_column=args.class_column,
        class_names=args.class_names,
        ignore_index=args.ignore_index,
    )
    counts = ", ".join(f"{n} {key}" for key, n in summary["counts"].items())
    print(
        f"wrote {summary['tiles']} tiles of {summary['scenes']} scene(s) to {summary['out']} "
        f"({counts}): images/, masks/, split.csv, tiles.csv"
    )
    return 0


def _int_list(text: str):
    return [int(v) for v in text.split(",") if v.strip()]


def _name_list(text: str):
    return [v.strip() for v in text.split(",") if v.strip()]
