"""`podium folds DATA --k 5 --out folds.csv`: stratified (and grouped) k-fold assignment.

Writes split.csv-format `name,[split,]fold,...` (other columns of DATA/split.csv are kept); train
on fold k with `data: {root: DATA, split_file: folds.csv, fold: k}`. See podium/datasets/folds.py.
"""

import argparse

from podium.datasets.folds import STRATIFY, fold_summary, make_folds, write_folds
from podium.datasets.scenes.stats import is_scenes_table, make_scene_folds

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "folds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="image folder (images/, masks/, optional split.csv), or a scenes.csv table",
    )
    parser.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument(
        "--stratify",
        default="coverage",
        choices=STRATIFY,
        help="coverage: bins of mask foreground fraction (empty masks apart); classes: "
        "class-presence combination; none (default coverage)",
    )
    parser.add_argument(
        "--bins", type=int, default=5, help="quantile bins of non-empty coverage (default 5)"
    )
    parser.add_argument(
        "--group",
        metavar="COLUMN",
        help="column of split.csv (or --groups-file) whose groups never span folds",
    )
    parser.add_argument(
        "--groups-file",
        metavar="CSV",
        help="CSV with name and the --group column (instead of split.csv)",
    )
    parser.add_argument(
        "--split",
        default="train",
        help="with a split column, only these rows are folded; "
        "the others get fold -1 (default train)",
    )
    parser.add_argument(
        "--split-file", default="split.csv", help="split file inside DATA (default split.csv)"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="random seed; same seed, same folds (default 42)"
    )
    parser.add_argument("--out", required=True, help="CSV to write (e.g. DATA/folds.csv)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if is_scenes_table(args.data):  # a scenes table: folds of scenes, written as a scenes table
        df = make_scene_folds(
            args.data,
            args.out,
            k=args.k,
            stratify=args.stratify,
            group=args.group,
            seed=args.seed,
            bins=args.bins,
            split=args.split,
        )
        write_folds(df, args.out)
        counts = df[df["fold"] >= 0]["fold"].value_counts().sort_index()
        print(f"wrote {args.out}: scenes per fold {dict(counts.astype(int))}")
        return 0
    df = make_folds(
        args.data,
        k=args.k,
        stratify=args.stratify,
        group=args.group,
        groups_file=args.groups_file,
        seed=args.seed,
        bins=args.bins,
        split_file=args.split_file,
        split=args.split,
        progress=True,
    )
    write_folds(df, args.out)
    parts = []
    for row in fold_summary(df):
        extra = (
            f", coverage {row['mean_coverage']:.1%}, {row['empty']} empty"
            if "mean_coverage" in row
            else ""
        )
        parts.append(f"fold {row['fold']}: {row['images']}{extra}")
    outside = int((df["fold"] < 0).sum())
    print(
        f"wrote {args.out}: {len(df) - outside} images in {args.k} folds ({'; '.join(parts)})"
        + (f"; {outside} rows of other splits have fold -1" if outside else "")
    )
    return 0
