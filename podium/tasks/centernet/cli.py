"""CenterNet heatmaps: boxes and scores per image (CSV), mAP on the run's deepforest tiles.

`podium predict` of a CenterNet run (= `podium predict-centernet`), one CSV row per detection:
    podium predict --run logs/centernet_trees --deepforest valid --out valid.csv --tta flip
    podium predict --run logs/centernet_trees --images scenes/ --out boxes.csv
    podium predict-centernet --model centernet.onnx --images scenes/ --out boxes.csv --tta flip

--deepforest: the run's own deepforest tiles of that split; boxes in scene pixels, and the
mAP@0.5 of the tiles printed (from every top-k detection, whatever --min-score). --images:
whole image files (resized by the run's data/scale first); boxes in each image's pixels.
--model: the run's `podium export` file run by onnxruntime, its scale, normalisation and class
names from the file's metadata (--images only: the file holds no data).
"""

from podium.errors import PodiumError
from podium.tasks.centernet import predict
from podium.tasks.command import RGB_SUFFIXES, image_paths, run_options, task_parser

__all__ = ["register", "run"]


def register(subparsers) -> None:
    split = ("deepforest", "the run's deepforest tiles of this split")
    parser = task_parser(subparsers, "centernet", __doc__, split, "CSV to write", predict.TTA_MODES)
    parser.add_argument(
        "--min-score", type=float, default=0.1, help="lowest score written to the CSV (default 0.1)"
    )
    parser.add_argument("--top-k", type=int, default=100, help="peaks kept per image (default 100)")
    parser.add_argument(
        "--iou", type=float, default=0.5, help="IoU threshold of the printed mAP (default 0.5)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize factor before the model (default: the run's data/scale)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="tiles per forward pass (default 8)"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.batch_size < 1 or args.top_k < 1:
        raise PodiumError(
            f"--batch-size and --top-k must be >= 1, got {args.batch_size} and {args.top_k}"
        )
    if not 0 < args.iou <= 1:
        raise PodiumError(f"--iou must be in (0, 1], got {args.iou}")
    predictor, config = predict.load_centernet_predictor(*run_options(args), args.top_k, args.scale)
    if args.deepforest:
        rows, summary = predict.predict_deepforest(
            predictor, config, args.deepforest, args.min_score, args.iou
        )
    else:
        rows = predict.predict_images(
            predictor, image_paths(args.images, RGB_SUFFIXES), args.min_score
        )
    path = predict.write_csv(rows, args.out)
    text = f"{args.command}: {len(rows)} boxes with score >= {args.min_score} → {path}"
    if args.deepforest:
        key = f"map{round(args.iou * 100)}"
        text += (
            f"; {args.deepforest} {key} {summary['map']:.4f} over {summary['tiles']} tiles, "
            f"{int(summary['num_gt'].sum())} boxes (tta {args.tta})"
        )
    print(text)
    return 0
