"""`podium stats DATA --out stats.json`: per-channel mean/std, sizes, class frequencies.

The JSON's `normalize` block is what `normalize: {mode: stats, path: stats.json}` reads.
See podium/datasets/stats.py.
"""

import argparse

from podium.datasets.scenes.stats import compute_scene_stats, is_scenes_table
from podium.datasets.split import read_split, select_names
from podium.datasets.stats import compute_stats, write_stats

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="image folder (images/, optional masks/ and split.csv), or a scenes.csv table",
    )
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument(
        "--split", help="only images of this split of split.csv (e.g. train); default: all images"
    )
    parser.add_argument(
        "--split-file", default="split.csv", help="split file inside DATA (default split.csv)"
    )
    parser.add_argument(
        "--max-value",
        type=float,
        help="divide by this for the scaled mean/std (default: the dtype maximum, 255 / 65535)",
    )
    parser.add_argument(
        "--image-dir", default="images", help="image folder inside DATA (default images)"
    )
    parser.add_argument(
        "--mask-dir", default="masks", help="mask folder inside DATA (default masks)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if is_scenes_table(args.data):  # a scenes table: rasters + vector labels
        stats = compute_scene_stats(args.data, split=args.split, max_value=args.max_value)
        write_stats(stats, args.out)
        return _report(args, stats)
    names = (
        select_names(read_split(args.data, args.split_file), split=args.split)
        if args.split
        else None
    )
    stats = compute_stats(
        args.data,
        names=names,
        max_value=args.max_value,
        image_dir=args.image_dir,
        mask_dir=args.mask_dir,
        progress=not args.quiet,
    )
    write_stats(stats, args.out)
    return _report(args, stats)


def _report(args, stats) -> int:
    norm = stats["normalize"]
    masks = stats["masks"]
    mask_text = (
        f", {masks['empty']} of {masks['count']} masks empty, "
        f"foreground {masks['foreground_fraction']:.1%}"
        if masks.get("count")
        else ""
    )
    print(
        f"wrote {args.out}: {stats['images']} images, {stats['channels']} "
        f"channel(s) {'/'.join(stats['dtypes'])}, raw mean {_fmt(stats['raw']['mean'])} "
        f"std {_fmt(stats['raw']['std'])}; normalize {{mode: fixed, "
        f"max_value: {norm['max_value']:g}, mean: {_fmt(norm['mean'])}, "
        f"std: {_fmt(norm['std'])}}}{mask_text}"
    )
    return 0


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
