"""`podium pseudo-label`: soft labels for unlabeled images from a trained fold ensemble
(self-training).

    podium pseudo-label --cv logs/nuclei_cv --data data/unlabeled --out data/nuclei_pseudo
    podium pseudo-label --cv logs/nuclei_cv --data data/test --out data/test_pseudo --tta d4 \\
        --checkpoint both --negatives 200 --negative-threshold 0.5

--cv is the run directory of `podium cv` (every finished fold's model) or of one `catalyst-dl
run`. The ensemble predicts every image of --data (images/ or a plain folder of images) the way
`podium predict` does, and OUT receives:

    probabilities/NAME.png   the ensemble's p as uint8 round(p × 255) (CLASS/NAME.png per class),
                             byte for byte what `podium predict --probabilities` writes
    manifest.csv             name, kind (soft | negative), max_prob, positive_fraction
    pseudo_label.json        the images folder, models, TTA, settings, counts

--negatives N mines negatives: an image with no pixel at p ≥ --negative-threshold is kept as a
negative (trained as an empty mask), at most N of them, those with the lowest max_prob first;
the other images without positives are dropped. Without --negatives every image is a soft label.
Train on labeled + soft-labeled images with `data: {soft_labels: OUT}`
(configs/nuclei/self_training.yml).
"""

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudo-label",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--cv",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="run directory of podium cv (its finished folds) or of one catalyst-dl run",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="UNLABELED_DIR",
        help="images to label: images/ or a plain folder of images",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="SOFT_DIR", help="output folder")
    parser.add_argument(
        "--tta",
        help="none | flip | d2 | d4 | multiscale (default: the TTA of podium cv, else none)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last", "both"],
        default="best",
        help="checkpoints of each fold in the ensemble (default best)",
    )
    parser.add_argument(
        "--negatives",
        type=int,
        metavar="N",
        help="keep at most N images without a positive "
        "pixel as negatives (empty masks); drop the rest",
    )
    parser.add_argument(
        "--negative-threshold",
        type=float,
        default=0.5,
        metavar="P",
        help="a pixel is positive when its foreground p >= P (default 0.5)",
    )
    parser.add_argument(
        "--predict-config",
        type=Path,
        metavar="YAML",
        help="inference YAML for tiles, tta, ensemble, batch_size, device (its models/data/out are "
        "ignored; default: the settings podium cv predicted with)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="images (or tiles) per forward pass (default 8)"
    )
    parser.add_argument("--device", help="cpu | cuda | cuda:1 (default: auto)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the pseudo-labels already in --out"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from podium.inference.config import load_inference_config
    from podium.inference.pseudo_label import pseudo_label

    predict_config = (
        load_inference_config(args.predict_config) if args.predict_config is not None else None
    )
    settings = pseudo_label(
        args.cv,
        args.data,
        args.out,
        tta=args.tta,
        checkpoint=args.checkpoint,
        negatives=args.negatives,
        negative_threshold=args.negative_threshold,
        predict_config=predict_config,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    counts = settings["counts"]
    print(
        f"pseudo-labeled {sum(counts.values())} images of {args.data} "
        f"with {len(settings['models'])} model(s), TTA {settings['tta']}: {counts['soft']} "
        f"soft, {counts['negative']} negative, {counts['dropped']} dropped"
    )
    print(f"soft labels: {args.out}  (train with data: {{soft_labels: {args.out}}})")
    return 0
