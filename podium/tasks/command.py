"""The command of a task, `podium predict-<task>` (= `podium predict --run <the task's run>`):
the arguments every task shares — which run and checkpoint, or which export of it (`--model`,
onnxruntime), which images or which split of the run's own data, where to write, which TTA —
and `--images` expanded."""

import argparse
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError
from podium.inference.config import check_providers
from podium.inference.onnx_predictor import OnnxModule
from podium.validation import check_int

__all__ = ["RGB_SUFFIXES", "image_paths", "model_source", "run_options", "task_parser"]

# what cv2 reads as an RGB photo (the box tasks); geopose keeps the readers' own list
RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def task_parser(
    subparsers,
    task: str,
    doc: str,
    split: Tuple[str, str],
    out_help: str,
    tta_modes: Sequence[str],
) -> argparse.ArgumentParser:
    """`predict-<task>` (its help and older names: `tasks.COMMANDS`), described by `doc`, with
    --run (+ --checkpoint) | --model (+ --providers, --threads), --images | --<split flag>
    {train,valid} (`split`: flag and help of the run's own data), --out, --tta, --device."""
    parser = subparsers.add_parser(
        f"predict-{task}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run",
        "--run-dir",
        help="run directory written by catalyst-dl run (configs/, checkpoints/); or --model",
    )
    parser.add_argument(
        "--model",
        metavar="FILE.onnx",
        help="the run's ONNX file of podium export, run by onnxruntime (no run directory needed)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="best, last or a .pth path (--run; default best)"
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
    parser.add_argument(
        "--providers",
        help="onnxruntime execution providers for --model, in order: cpu (default), cuda, "
        "tensorrt or onnxruntime's names, comma-separated",
    )
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads for --model")
    parser.set_defaults(run_data_flag=split[0])
    return parser


def run_options(args) -> tuple:
    """(run or export, checkpoint, tta, batch size, device): how every `load_<task>_predictor`
    starts (`model_source`)."""
    return model_source(args), args.checkpoint, args.tta, args.batch_size, args.device


def model_source(args):
    """--run's directory, or --model's file opened by onnxruntime (an `OnnxModule`, with
    --providers and --threads); exactly one of them, and no flag of the other → PodiumError,
    before anything is read or written."""
    if (args.run is None) == (args.model is None):
        given = "both" if args.run is not None else "neither"
        raise PodiumError(
            f"give one of --run RUN (a run directory) or --model FILE.onnx (its podium export), "
            f"got {given}"
        )
    if args.run is not None:
        given = (("--providers", args.providers), ("--threads", args.threads))
        onnx = [flag for flag, value in given if value is not None]
        if onnx:
            raise PodiumError(
                f"{onnx[0]} is onnxruntime's, for --model FILE.onnx; --run {args.run} predicts "
                "with torch (its device: --device)"
            )
        return args.run
    flag = args.run_data_flag
    if getattr(args, flag) is not None:
        raise PodiumError(
            f"--{flag} reads the run's own data, which --model {args.model} does not hold; "
            f"expected --images with --model, or --run RUN --{flag} {getattr(args, flag)}"
        )
    if args.checkpoint is not None:
        raise PodiumError(
            f"--checkpoint is for --run; --model {args.model} holds the weights it was exported "
            "with (podium export --checkpoint)"
        )
    threads = None if args.threads is None else check_int(args.threads, "--threads", 1)
    return OnnxModule.open(args.model, check_providers(args.providers), threads)


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
