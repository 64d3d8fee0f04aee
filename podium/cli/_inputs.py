"""The arguments the task predictors share (`predict-centernet`, `-detector`, `-geopose`):
which run and checkpoint, which images, where to write, which TTA; `--images` expanded."""

import argparse
from pathlib import Path
from typing import Iterable, List, Sequence

from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError

__all__ = ["add_run_source_arguments", "image_paths", "RGB_SUFFIXES"]

# what cv2 reads as an RGB photo (the box tasks); geopose keeps the readers' own list
RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def add_run_source_arguments(
    parser: argparse.ArgumentParser,
    split_flag: str,
    split_help: str,
    out_help: str,
    tta_modes: Sequence[str],
) -> None:
    """--run, --checkpoint, --images | --SPLIT_FLAG {train,valid}, --out, --tta, --device."""
    parser.add_argument(
        "--run",
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
    source.add_argument(f"--{split_flag}", choices=("train", "valid"), help=split_help)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument(
        "--tta", default="none", choices=tta_modes, help="test-time augmentation (default none)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )


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
