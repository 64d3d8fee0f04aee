"""Geopose: height and flow maps, flow direction and scale per image (+ R2 on synthetic scenes).

`podium predict` of a Geopose run (= `podium predict-geopose`):
    podium predict --run logs/geopose_synthetic --synthetic valid --out preds/ --tta d4
    podium predict --run logs/geopose_synthetic --images tiles/ --scalar gsd=1.2 --out preds/
    podium predict-geopose --model geopose.onnx --images tiles/ --scalar gsd=1.2 --out preds/

--synthetic: the run's own synthetic scenes of that split, scored (R2 of height and magnitude
per city, averaged over cities; direction angle error; scale error) and printed. --images:
whole image files; the model's scalar inputs are given once for all (--scalar NAME=VALUE).
--model: the run's `podium export` file run by onnxruntime (--images only).
Writes, per image, NAME_AGL.tif, NAME_MAG.tif, NAME_VFLOW.json, and predictions.csv
(+ metrics.json when scored) into --out.
"""

from podium.errors import PodiumError
from podium.tasks.command import image_paths, run_options, task_parser
from podium.tasks.geopose import predict

__all__ = ["register", "run"]


def register(subparsers) -> None:
    split = ("synthetic", "the run's synthetic scenes of this split")
    out = "folder for the maps, predictions.csv and metrics.json"
    parser = task_parser(subparsers, "geopose", __doc__, split, out, predict.TTA_MODES)
    parser.add_argument(
        "--scalar",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scalar input of the model for every --images file, e.g. gsd=1.2 (repeatable)",
    )
    parser.add_argument(
        "--no-maps", action="store_true", help="write only predictions.csv / metrics.json"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default 16)"
    )
    parser.set_defaults(func=run)


def parse_scalars(items) -> dict:
    """{name: float} from NAME=VALUE strings."""
    scalars = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            scalars[name] = float(value)
        except ValueError:
            raise PodiumError(f"--scalar {item!r}: expected NAME=NUMBER, e.g. gsd=1.2") from None
    return scalars


def run(args) -> int:
    if args.batch_size < 1:
        raise PodiumError(f"--batch-size must be >= 1, got {args.batch_size}")
    scalars = parse_scalars(args.scalar)
    if args.synthetic and scalars:
        raise PodiumError(
            "--scalar is for --images; synthetic scenes carry their own scalar inputs"
        )
    predictor, config = predict.load_geopose_predictor(*run_options(args))
    maps_dir = None if args.no_maps else args.out
    summary = None
    if args.synthetic:
        rows, summary = predict.predict_synthetic(predictor, config, args.synthetic, maps_dir)
    else:
        rows = predict.predict_images(predictor, image_paths(args.images), scalars, maps_dir)
    path = predict.write_table(rows, summary, args.out)
    text = f"{args.command}: {len(rows)} images → {path.parent}"
    if summary is not None:
        text += (
            f"; {args.synthetic} geopose_r2 {summary['geopose_r2']:.4f} "
            f"(height_r2 {summary['height_r2']:.4f}, "
            f"magnitude_r2 {summary['magnitude_r2']:.4f}), "
            f"direction error {summary['direction_error_deg']:.2f}°, "
            f"scale error {100 * summary['scale_error']:.1f}% "
            f"over {summary['scenes']} scenes (tta {args.tta})"
        )
    print(text)
    return 0
