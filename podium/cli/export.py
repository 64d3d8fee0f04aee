"""`podium export`: a trained run as one ONNX file that onnxruntime runs without podium or torch.

    podium export --run logs/nuclei --out nuclei.onnx
    podium export --run logs/nuclei --checkpoint last --tta d4 --verify --out nuclei_d4.onnx
    podium export --run logs/fold0 --ensemble logs/fold1 logs/fold2 --out folds.onnx
    podium export --run logs/centernet_trees --out centernet.onnx --verify
    podium predict --model nuclei.onnx --data data/test --out preds/
    podium predict-centernet --model centernet.onnx --images scenes/ --out boxes.csv

The graph takes normalised images N×C×H×W of any batch, height and width, pads them inside,
and returns probabilities N×K×H×W (sigmoid / softmax inside, and the TTA views and the ensemble
mean when asked). A task's run (CenterNet, geopose, boxes) keeps its named raw outputs, and its
metadata holds what the task's predictor reads from the run (`podium predict-<task> --model`).
The file's metadata says how to read images and post-process them: see docs/export.md.
"""

import argparse
from pathlib import Path

from podium import tasks
from podium.errors import PodiumError

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    parser.add_argument(
        "--checkpoint",
        default="best",
        help="best | last | NAME of checkpoints/NAME.pth (e.g. averaged) | path (default best)",
    )
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--ema: the EMA weights (an error if the checkpoint has none); --no-ema: the "
        "trained weights (default: the EMA weights where the checkpoint has them)",
    )
    parser.add_argument("--tta", default="none", help="none | flip | d2 | d4, inside the graph")
    parser.add_argument(
        "--ensemble",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN",
        help="more runs averaged inside the graph (same checkpoint name, equal weights)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="inference YAML whose postprocess: block goes into the metadata",
    )
    parser.add_argument("--threshold", type=float, help="probability threshold (metadata)")
    parser.add_argument("--min-size", type=int, help="smallest blob kept, pixels (metadata)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        default="onnx",
        help="onnx (default) or torchscript: the same traced graph for torch.jit.load, its "
        "metadata in the extra file podium.json",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the torch model and the ONNX file on the same images, print the largest "
        "difference (an error above 1e-4)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.set_defaults(func=run)


TOLERANCE = 1e-4


def run(args) -> int:
    _check_out(args.out)
    ema = "auto" if args.ema is None else args.ema
    task = tasks.task_of_run(args.run)
    if task is not None:
        return _export_task(args, task, ema)
    return _export_segmentation(args, ema)


def _check_out(out: Path) -> None:
    """The output path can be a file: not a folder, not below a file (checked before any work)."""
    if out.is_dir():
        raise PodiumError(f"--out {out} is a folder; expected the path of a .onnx file")
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PodiumError(f"--out {out} cannot be written: {existing} is a file, not a folder")


def _postprocess(args) -> dict:
    block = {}
    if args.config is not None:
        from podium.inference.config import load_inference_config

        block = dict(load_inference_config(args.config).get("postprocess") or {})
    if args.threshold is not None:
        block["threshold"] = args.threshold
    if args.min_size is not None:
        block["min_size"] = args.min_size
    return block


def _export_segmentation(args, ema) -> int:
    from podium.inference.export import export_segmentation
    from podium.inference.export_verify import verification_images, verify_segmentation
    from podium.inference.pipeline import load_models

    for other in args.ensemble:
        if tasks.task_of_run(other) is not None:
            raise PodiumError(
                f"--ensemble {other} is a task run; ensembles are of segmentation runs"
            )
    entries = [
        {"run": str(run), "checkpoint": args.checkpoint, "weight": 1.0}
        for run in [args.run, *args.ensemble]
    ]
    models = load_models(entries, ema)
    path = export_segmentation(
        models, args.out, args.tta, _postprocess(args), args.opset, args.format
    )
    print(f"exported {len(models)} model(s), tta {args.tta} → {path}")
    if args.verify:
        images = verification_images(models)
        difference = verify_segmentation(path, models, images, args.tta)
        _report(difference, f"{len(images)} batches, probabilities")
    return 0


def _export_task(args, task: str, ema) -> int:
    from podium.inference.checkpoint import load_run_config
    from podium.inference.export import export_task
    from podium.inference.export_verify import verify_task

    if args.tta != "none" or args.ensemble:
        raise PodiumError(
            f"{args.run} is a {task} run: its export holds the model's raw outputs only; "
            f"--tta and --ensemble are for segmentation runs (predict-{task} has its own --tta)"
        )
    reading = tasks.predictor_settings(task, load_run_config(args.run))
    path = export_task(
        args.run, args.out, task, reading, args.checkpoint, ema, args.opset, args.format
    )
    print(f"exported the {task} model → {path}")
    if args.verify:
        differences = verify_task(path, args.run, args.checkpoint, ema)
        for name, difference in differences.items():
            print(f"  {name}: max |torch − onnx| {difference:.2e}")
        _report(max(differences.values()), "random images, every output")
    return 0


def _report(difference: float, what: str) -> None:
    print(f"verify: max |torch − onnx| = {difference:.2e} ({what})")
    if difference == float("inf"):
        raise PodiumError(
            "the ONNX file's outputs have other shapes than the torch model's on the same "
            "images; expected equal shapes (a size was frozen when the graph was traced)"
        )
    if not difference <= TOLERANCE:
        raise PodiumError(
            f"the ONNX file differs from the torch model by {difference:.2e}, more than "
            f"{TOLERANCE:g}; expected the same outputs (report it with the run's model)"
        )
