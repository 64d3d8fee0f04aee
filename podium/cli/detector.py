"""`podium predict-detector`: score + one box per image from a box-classifier run, as CSV.

    podium predict-detector --run logs/detector_b0 --images crops/ --out preds.csv
    podium predict-detector --run logs/detector_b0 --deepforest valid --out valid.csv --tta d4

--images: every file is one crop; boxes are in its pixels. --deepforest: the run's own
deepforest windows; boxes in scene pixels beside the true ones, and accuracy + mean box IoU
printed. Boxes come back through the exact inverse of the letterbox the model saw.
"""

import argparse

from podium.cli._inputs import RGB_SUFFIXES, add_run_source_arguments, image_paths
from podium.errors import PodiumError

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    from podium.inference.detector import TTA_MODES

    parser = subparsers.add_parser(
        "predict-detector",
        help="classifier + box regression: score and box per image (CSV, image pixels)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_source_arguments(
        parser,
        split_flag="deepforest",
        split_help="the run's deepforest windows of this split",
        out_help="CSV to write",
        tta_modes=TTA_MODES,
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="score above which label = 1 (default 0.5)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default 16)"
    )
    parser.add_argument(
        "--no-clip", action="store_true", help="keep boxes that reach beyond the image"
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from podium.inference.detector import (
        load_box_predictor,
        predict_deepforest,
        predict_images,
        summarize,
        write_csv,
    )

    if args.batch_size < 1:
        raise PodiumError(f"--batch-size must be >= 1, got {args.batch_size}")
    predictor, config = load_box_predictor(
        args.run,
        args.checkpoint,
        tta=args.tta,
        batch_size=args.batch_size,
        device=args.device,
        clip=not args.no_clip,
    )
    if args.deepforest:
        rows = predict_deepforest(predictor, config, args.deepforest, args.threshold)
    else:
        rows = predict_images(predictor, image_paths(args.images, RGB_SUFFIXES), args.threshold)
    path = write_csv(rows, args.out)
    summary = summarize(rows)
    text = f"predict-detector: {summary['count']} predictions → {path}"
    if args.deepforest:
        text += f"; accuracy {summary['accuracy']:.4f}, mean box IoU {summary['box_iou']:.4f} (tta {args.tta})"
    print(text)
    return 0
