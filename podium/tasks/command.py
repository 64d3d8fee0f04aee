"""The command of a task, `podium predict-<task>` (= `podium predict --run <the task's run>`):
the arguments every task shares — which run and checkpoint, which images or which split of the
run's own data, where to write, which TTA — and `--images` expanded."""

import argparse
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError

__all__ = ["RGB_SUFFIXES", "image_paths", "run_options", "task_parser"]

# what cv2 reads as an RGB photo (the box tasks); geopose keeps the readers' own list
RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def task_parser(
    subparsers,
    task: str,
    doc: str,
    split: Tuple[str, str],
    out_help: str,
    tta_modes: Sequence[str],
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """`predict-<task>` (and its `aliases`), described by `doc` (its first line: the help), with
    --run, --checkpoint, --images | --<split flag> {train,valid} (`split`: flag and help of the
    run's own data), --out, --tta, --device."""
    parser = subparsers.add_parser(
        f"predict-{task}",
        aliases=list(aliases),
        help=doc.split("\n", 1)[0].rstrip("."),
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run",
        "--run-dir",
        required=True,
        help="run directory written by catalyst-dl run (configs/, checkpoints/)",
    )
    parser.add_argument(
        "--checkpoint", default="best", help="best, last or a .pth path (default best)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", nargs="+", metavar="PATH", help="image files and/or folders of images"
    )
    source.add_argument(f"--{split[0]}", choices=("train", "valid"), help=split[1])
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument(
        "--tta", default="none", choices=tta_modes, help="test-time augmentation (default none)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    return parser


def run_options(args) -> tuple:
    """(run, checkpoint, tta, batch size, device): how every `load_<task>_predictor` starts."""
    return args.run, args.checkpoint, args.tta, args.batch_size, args.device


def image_paths(items: Iterable, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """Files as given, folders expanded to their image files (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in extensions)
        elif item.is_file():
            paths.append(item)
        else:
            raise PodiumError(f"--images {item} does not exist")
    return paths
