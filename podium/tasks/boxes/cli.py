"""Classifier + box regression: score and box per image (CSV, image pixels).

`podium predict` of a boxes run (= `podium predict-boxes`, its old name `predict-detector`):
    podium predict --run logs/detector_b0 --images crops/ --out preds.csv
    podium predict --run logs/detector_b0 --deepforest valid --out valid.csv --tta d4
    podium predict-boxes --model detector_b0.onnx --images crops/ --out preds.csv --tta d4

--images: every file is one crop; boxes are in its pixels. --deepforest: the run's own
deepforest windows; boxes in scene pixels beside the true ones, and accuracy + mean box IoU
printed. Boxes come back through the exact inverse of the letterbox the model saw.
--model: the run's `podium export` file run by onnxruntime, its letterbox size and
normalisation from the file's metadata (--images only).
"""

from podium.errors import PodiumError
from podium.tasks.boxes import predict
from podium.tasks.command import RGB_SUFFIXES, image_paths, run_options, task_parser

__all__ = ["register", "run"]


def register(subparsers) -> None:
    split = ("deepforest", "the run's deepforest windows of this split")
    tta = predict.TTA_MODES
    parser = task_parser(subparsers, "boxes", __doc__, split, "CSV to write", tta)
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
    predictor, config = predict.load_boxes_predictor(*run_options(args), clip=not args.no_clip)
    if args.deepforest:
        rows = predict.predict_deepforest(predictor, config, args.deepforest, args.threshold)
    else:
        rows = predict.predict_images(
            predictor, image_paths(args.images, RGB_SUFFIXES), args.threshold
        )
    path = predict.write_csv(rows, args.out)
    summary = predict.summarize(rows)
    text = f"{args.command}: {summary['count']} predictions → {path}"
    if args.deepforest:
        text += (
            f"; accuracy {summary['accuracy']:.4f}, "
            f"mean box IoU {summary['box_iou']:.4f} (tta {args.tta})"
        )
    print(text)
    return 0
