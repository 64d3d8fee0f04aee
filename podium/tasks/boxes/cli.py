"""`podium predict` of a boxes run (= `predict-boxes`, `predict-detector`): score and box per image.

    podium predict --run logs/detector_b0 --images crops/ --out preds.csv
    podium predict --run logs/detector_b0 --deepforest valid --out valid.csv --tta d4

--images: every file is one crop; boxes are in its pixels. --deepforest: the run's own
deepforest windows; boxes in scene pixels beside the true ones, and accuracy + mean box IoU
printed. Boxes come back through the exact inverse of the letterbox the model saw.
"""

from podium.errors import PodiumError
from podium.tasks.boxes.predict import (
    TTA_MODES,
    load_boxes_predictor,
    predict_deepforest,
    predict_images,
    summarize,
    write_csv,
)
from podium.tasks.command import RGB_SUFFIXES, image_paths, task_parser

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = task_parser(
        subparsers,
        "boxes",
        __doc__,
        "classifier + box regression: score and box per image (CSV, image pixels)",
        ("deepforest", "the run's deepforest windows of this split"),
        "CSV to write",
        TTA_MODES,
        aliases=("predict-detector",),
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


def run(args) -> int:
    if args.batch_size < 1:
        raise PodiumError(f"--batch-size must be >= 1, got {args.batch_size}")
    predictor, config = load_boxes_predictor(
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
    text = f"{args.command}: {summary['count']} predictions → {path}"
    if args.deepforest:
        text += f"; accuracy {summary['accuracy']:.4f}, mean box IoU {summary['box_iou']:.4f} (tta {args.tta})"
    print(text)
    return 0
