"""`podium samples NAME --out DIR`: write a small real annotated dataset to try podium on."""

import argparse

from podium.datasets.samples import SAMPLES, TILE_SIZES, sample_names, write_sample
from podium.errors import PodiumError

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `samples` sub-command; available samples are listed in its --help."""
    listing = "\n".join(f"  {name:10s} {SAMPLES[name].description}" for name in sample_names())
    parser = subparsers.add_parser(
        "samples",
        description=__doc__,
        epilog=f"available samples:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name",
        choices=sample_names(),
        metavar="NAME",
        help=f"sample to write: {', '.join(sample_names())}",
    )
    parser.add_argument(
        "--out", required=True, help="output folder (created; re-running rewrites the same files)"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        choices=TILE_SIZES,
        help="tile size in pixels for nuclei, voc, arc2017 (default 128; ndev writes whole frames)",
    )
    parser.add_argument(
        "--train-stride",
        type=int,
        default=None,
        help="stride between training tiles, "
        "8..tile (default 32 for nuclei, 64 for voc and arc2017)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    options = {"tile": args.tile, "train_stride": args.train_stride}
    if args.name == "ndev" and any(v is not None for v in options.values()):
        raise PodiumError(
            "--tile and --train-stride do not apply to ndev, which is written as whole frames"
        )
    if args.name == "trees-geo" and any(v is not None for v in options.values()):
        raise PodiumError(
            "--tile and --train-stride do not apply to trees-geo, which is written as a scene "
            "(tile it with podium tile)"
        )
    summary = write_sample(args.name, args.out, **options)
    if "message" in summary:
        print(summary["message"])
        return 0
    counts = summary["counts"]
    if "foreground" in summary:
        fg = summary["foreground"]
        print(
            f"{args.name}: wrote {counts['train']} train + {counts['valid']} valid tiles "
            f"(tile {summary['tile']}) to {summary['out']}; foreground {fg['image']:.1%} of the "
            f"image (train tiles {fg['train']:.1%}, valid {fg['valid']:.1%})"
        )
    else:
        classes = ", ".join(f"{name} {share:.1%}" for name, share in summary["classes"].items())
        print(
            f"{args.name}: wrote {counts['train']} train + {counts['valid']} valid samples "
            f"(tile {summary['tile']}) to {summary['out']}; "
            f"num_classes {summary['num_classes']}; pixels per class present: {classes}"
        )
    return 0
