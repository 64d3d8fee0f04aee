"""`podium predict`: a checkpoint over a folder or a split → PNG masks, overlays, Dice/IoU.

    podium predict --run logs/nuclei --data data/nuclei --split valid --out predictions/

The model, normalisation, channels and number of classes come from the run directory's
resolved config, so prediction sees images exactly as validation did.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from podium.datasets import build_segmentation_dataset
from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError
from podium.inference import Predictor, load_model, to_mask, write_json, write_mask, write_overlay
from podium.metrics import ConfusionCounts

# Keys of the run's `data:` block that describe how images are read (not which ones).
READING_KEYS = ("normalize", "channels", "num_classes", "image_dir", "mask_dir", "split_file")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict masks with a trained checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, required=True, help="run directory of catalyst-dl run")
    parser.add_argument(
        "--checkpoint", default="best", help="best | last | path to a .pth (default: best)"
    )
    parser.add_argument(
        "--data", type=Path,
        help="data folder: images/ (+ masks/, split.csv) or a plain folder of images "
        "(default: the run's data root)",
    )
    parser.add_argument("--split", help="a split of split.csv (default: every image)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=0.5, help="binary threshold")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: auto)")
    parser.add_argument("--no-overlays", action="store_true", help="skip overlay PNGs")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    model, config = load_model(args.run, args.checkpoint)
    data_config = config.get("data") or {}
    root = args.data or data_config.get("root")
    if root is None:
        raise PodiumError("no data folder: pass --data DIR")
    reading = {key: data_config[key] for key in READING_KEYS if key in data_config}
    if _is_flat_image_folder(Path(root), reading.get("image_dir", "images")):
        reading["image_dir"] = "."  # a plain folder of images, no images/ inside
    dataset = build_segmentation_dataset(root, split=args.split, **reading)
    if len(dataset) == 0:
        raise PodiumError(f"no images to predict in {root} (split: {args.split})")

    device = torch.device(args.device) if args.device else None
    predictor = Predictor(model, device=device)
    num_classes = int(reading.get("num_classes", 1))
    counts = ConfusionCounts(num_classes=num_classes) if dataset.with_masks else None

    started = time.perf_counter()
    for sample, probability in predictor.predict_dataset(dataset, batch_size=args.batch_size):
        name = sample["name"]
        mask = to_mask(probability, args.threshold)
        write_mask(args.out / "masks" / f"{name}.png", mask)
        target = sample["mask"].numpy() if counts is not None else None
        if counts is not None:
            counts.add(*_one_hot_pair(mask, target, num_classes))
        if not args.no_overlays:
            truth = None if target is None else np.asarray(target).reshape(target.shape[-2:])
            write_overlay(
                args.out / "overlays" / f"{name}.png", sample["image"].numpy(), mask, truth
            )
    seconds = time.perf_counter() - started

    summary = {"images": len(dataset), "seconds": round(seconds, 3), "checkpoint": args.checkpoint}
    line = f"predicted {len(dataset)} images in {seconds:.1f} s → {args.out}/masks"
    if counts is not None:
        summary.update(dice=counts.dice().tolist(), iou=counts.iou().tolist())
        line += f"\n{args.split or 'all'} Dice {counts.dice().mean():.4f}  IoU {counts.iou().mean():.4f}"
    write_json(args.out / "metrics.json", summary)
    print(line)
    return 0


def _is_flat_image_folder(root: Path, image_dir: str) -> bool:
    if (root / image_dir).is_dir() or not root.is_dir():
        return False
    return any(path.suffix.lower() in IMAGE_EXTENSIONS for path in root.iterdir())


def _one_hot_pair(mask: np.ndarray, target: np.ndarray, num_classes: int):
    """Predicted and true masks as (num_classes, H, W) booleans."""
    if num_classes == 1:
        return (mask > 0)[None], (np.asarray(target).reshape(mask.shape) > 0.5)[None]
    classes = np.arange(num_classes)[:, None, None]
    return mask[None] == classes, np.asarray(target)[None] == classes
