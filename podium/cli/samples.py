"""`podium samples NAME --out DIR`: write a small real annotated dataset to try podium on."""
import argparse

from podium.datasets.samples import SAMPLES, TILE_SIZES, sample_names, write_sample

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `samples` sub-command; available samples are listed in its --help."""
    listing = "\n".join(f"  {name:10s} {SAMPLES[name].description}" for name in sample_names())
    parser = subparsers.add_parser(
        "samples",
        help="write a small real annotated sample dataset (images/, masks/, split.csv)",
        description=__doc__,
        epilog=f"available samples:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sample_names(), metavar="NAME", help=f"sample to write: {', '.join(sample_names())}")
    parser.add_argument("--out", required=True, help="output folder (created; re-running rewrites the same files)")
    parser.add_argument("--tile", type=int, default=128, choices=TILE_SIZES, help="tile size in pixels (default 128)")
    parser.add_argument("--train-stride", type=int, default=32, help="stride between training tiles, 8..tile (default 32)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    summary = write_sample(args.name, args.out, tile=args.tile, train_stride=args.train_stride)
    counts, fg = summary["counts"], summary["foreground"]
    print(
        f"{args.name}: wrote {counts['train']} train + {counts['valid']} valid tiles (tile {summary['tile']}) to "
        f"{summary['out']}; foreground {fg['image']:.1%} of the image (train tiles {fg['train']:.1%}, valid {fg['valid']:.1%})"
    )
    return 0
