"""K-fold assignment for `podium folds DATA --k 5 --out folds.csv`.

Which images: the rows of DATA/split.csv if it exists (its other columns are kept; with a `split`
column only the rows of `--split` (default train) are folded, the others get fold -1, so a
held-out test split never enters cross-validation), else every image in DATA/images.

Stratification (`stratify`):
    coverage  (default) bins of the mask's foreground fraction: empty masks are their own bin,
              the rest quantile bins (`bins`, fewer if there are too few images); a bin smaller
              than k is merged into its neighbour. Every fold then gets the same mix of empty,
              sparse and dense images.
    classes   the combination of classes present in the mask (label values > 0, or channels
              with any pixel > 0 for multi-channel masks) — multi-label presence combinations;
              combinations rarer than k are pooled into one "rare" stratum.
    none      plain shuffled K-fold.

Groups (`group`): a column of split.csv, or of a separate `groups_file` CSV with `name` and that
column (e.g. patient, slide, video). All images of a group land in one fold
(sklearn StratifiedGroupKFold, or GroupKFold without stratification), so near-duplicates never
straddle train and validation.

Deterministic: the same data, options and `seed` give the same file. It is read by
`podium.datasets.split.read_split` and a config's `data: {fold: k}`.
"""

import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from podium.datasets.image_folder import index_images, index_masks, resolve_layout
from podium.datasets.readers import read_image, read_mask
from podium.errors import PodiumError, did_you_mean
from podium.validation import check_choice, check_int

__all__ = [
    "STRATIFY",
    "make_folds",
    "write_folds",
    "coverage_strata",
    "class_strata",
    "fold_summary",
    "assign_folds",
]

STRATIFY = ("coverage", "classes", "none")


def make_folds(
    root,
    k: int = 5,
    stratify: Optional[str] = "coverage",
    group: Optional[str] = None,
    groups_file=None,
    seed: int = 42,
    bins: int = 5,
    split_file: str = "split.csv",
    split: str = "train",
    image_dir: str = "images",
    mask_dir: str = "masks",
    layout: str = "auto",
    mask_suffix: str = "_mask",
    progress: bool = False,
) -> pd.DataFrame:
    """The split table with a `fold` column (0..k-1; -1 for rows of other splits).
    With coverage stratification, `df.attrs["coverage"]` holds {name: foreground fraction}."""
    stratify = "none" if stratify in (None, "") else stratify
    check_choice(stratify, STRATIFY, "--stratify")
    check_int(k, "--k", 2)
    folder_layout = resolve_layout(root, layout, image_dir, mask_dir, mask_suffix)
    df = _table(root, split_file, folder_layout)
    pool = _pool(df, split, os.path.join(str(root), split_file))
    names = df.loc[pool, "name"].tolist()
    if len(names) < k:
        raise PodiumError(
            f"cannot make {k} folds of {len(names)} image(s); expected at least k images"
        )
    groups = _groups(df, pool, group, groups_file, root, split_file)
    if groups is not None and len(set(groups)) < k:
        raise PodiumError(
            f"--group {group} has {len(set(groups))} distinct value(s); "
            f"expected at least k={k} groups"
        )

    coverage = None
    if stratify == "coverage":
        coverage = _coverages(names, folder_layout, progress)
        y = coverage_strata(coverage, k, bins)
    elif stratify == "classes":
        y = class_strata(_presence(names, folder_layout, progress), k)
    else:
        y = np.zeros(len(names), dtype=int)

    folds = assign_folds(y, groups, k, seed, stratify != "none")
    df["fold"] = -1
    df.loc[pool, "fold"] = folds
    ordered = ["name"] + (["split"] if "split" in df else []) + ["fold"]
    df = df[ordered + [c for c in df.columns if c not in ordered]]
    if coverage is not None:
        df.attrs["coverage"] = dict(zip(names, coverage.tolist()))
    return df


def write_folds(df: pd.DataFrame, out) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    df.to_csv(out, index=False)


def fold_summary(df: pd.DataFrame) -> List[Dict]:
    """Per fold: number of images, and (coverage stratification) mean coverage and empty masks."""
    coverage = df.attrs.get("coverage")
    rows = []
    for fold, part in df[df["fold"] >= 0].groupby("fold"):
        row = {"fold": int(fold), "images": int(len(part))}
        if coverage:
            values = np.array([coverage[n] for n in part["name"]])
            row.update(mean_coverage=float(values.mean()), empty=int((values == 0).sum()))
        rows.append(row)
    return rows


def coverage_strata(coverage: np.ndarray, k: int, bins: int = 5) -> np.ndarray:
    """Stratum per image: 0 for empty masks, 1..q for quantile bins of the foreground fraction;
    strata smaller than k are merged into a neighbour."""
    coverage = np.asarray(coverage, dtype=float)
    strata = np.zeros(len(coverage), dtype=int)
    nonempty = coverage > 0
    n = int(nonempty.sum())
    q = max(1, min(int(bins), n // k))
    if n:
        codes = (
            pd.qcut(coverage[nonempty], q, labels=False, duplicates="drop")
            if q > 1
            else np.zeros(n, dtype=int)
        )
        strata[nonempty] = np.asarray(codes, dtype=int) + 1
    return _merge_small(strata, k)


def class_strata(presence: List[tuple], k: int) -> np.ndarray:
    """Stratum per image from its class-presence combination; combinations rarer than k pooled."""
    keys = ["+".join(map(str, p)) if p else "-" for p in presence]
    counts = pd.Series(keys).value_counts()
    keys = [key if counts[key] >= k else "rare" for key in keys]
    codes, _ = pd.factorize(pd.Series(keys), sort=True)
    return _merge_small(np.asarray(codes, dtype=int), k)


def _merge_small(strata: np.ndarray, k: int) -> np.ndarray:
    """Merge strata with fewer than k members into the neighbouring stratum (ordered codes)."""
    strata = strata.copy()
    while True:
        values, counts = np.unique(strata, return_counts=True)
        if len(values) <= 1 or counts.min() >= k:
            return strata
        i = int(np.argmin(counts))
        j = i + 1 if i + 1 < len(values) else i - 1
        if 0 < i < len(values) - 1 and counts[i - 1] < counts[i + 1]:
            j = i - 1
        strata[strata == values[i]] = values[j]


def assign_folds(y: np.ndarray, groups, k: int, seed: int, stratified: bool) -> np.ndarray:
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n = len(y)
    index = np.arange(n)
    if groups is not None:
        codes, _ = pd.factorize(pd.Series(groups), sort=True)
        if stratified and len(np.unique(y)) > 1:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(index, y, groups=codes)
    elif stratified and len(np.unique(y)) > 1:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y)
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(index)
    folds = np.full(n, -1, dtype=int)
    for fold, (_, valid) in enumerate(splits):
        folds[valid] = fold
    return folds


def _table(root, split_file: str, folder_layout) -> pd.DataFrame:
    path = os.path.join(str(root), split_file)
    if not os.path.isfile(path):
        return pd.DataFrame({"name": sorted(index_images(folder_layout))})
    try:
        df = pd.read_csv(path, dtype={"name": str, "split": str})
    except Exception as error:
        raise PodiumError(f"cannot read split file {path}: {error}") from error
    if "name" not in df:
        raise PodiumError(
            f"split file {path} has columns {list(df.columns)}; expected a name column"
        )
    if df["name"].isna().any() or df["name"].duplicated().any():
        raise PodiumError(
            f"split file {path} has empty or repeated names; expected one row per image"
        )
    return df.reset_index(drop=True)


def _pool(df: pd.DataFrame, split: Optional[str], path: str) -> np.ndarray:
    if "split" not in df or split is None:
        return np.ones(len(df), dtype=bool)
    present = sorted(df["split"].dropna().unique().tolist())
    if str(split) not in present:
        raise PodiumError(
            f"--split {split!r} is not in split file {path}{did_you_mean(split, present)}; "
            f"present values: {present}"
        )
    return (df["split"] == str(split)).to_numpy()


def _groups(
    df: pd.DataFrame, pool: np.ndarray, group, groups_file, root, split_file
) -> Optional[List]:
    if group is None:
        if groups_file is not None:
            raise PodiumError(
                "--groups-file needs --group COLUMN (the column of that file holding the group)"
            )
        return None
    if groups_file is not None:
        if not os.path.isfile(groups_file):
            raise PodiumError(
                f"groups file {groups_file} does not exist; "
                f"expected a CSV with columns name,{group}"
            )
        table = pd.read_csv(groups_file, dtype={"name": str})
        where = f"groups file {groups_file}"
        if "name" not in table or group not in table:
            raise PodiumError(
                f"{where} has columns {list(table.columns)}; expected name "
                f"and {group}{did_you_mean(group, table.columns)}"
            )
        mapping = dict(zip(table["name"], table[group]))
        names = df.loc[pool, "name"].tolist()
        missing = [n for n in names if n not in mapping or pd.isna(mapping[n])]
        if missing:
            raise PodiumError(
                f"{where} has no {group} for {len(missing)} image(s): {', '.join(missing[:5])}"
            )
        return [mapping[n] for n in names]
    where = f"split file {os.path.join(str(root), split_file)}"
    if group not in df:
        raise PodiumError(
            f'--group "{group}" is not a column of {where}{did_you_mean(group, df.columns)}; '
            f"columns: {list(df.columns)}"
        )
    values = df.loc[pool, group]
    if values.isna().any():
        raise PodiumError(
            f"{where} has empty {group} values "
            f"for: {', '.join(df.loc[pool][values.isna()]['name'][:5])}"
        )
    return values.tolist()


def _mask_paths(names: List[str], folder_layout) -> List[str]:
    masks = index_masks(folder_layout) if os.path.isdir(folder_layout.mask_folder) else {}
    missing = [n for n in names if n not in masks]
    if missing:
        raise PodiumError(
            f"{len(missing)} image(s) have no mask "
            f"in {folder_layout.mask_folder}: {', '.join(missing[:5])}; "
            "stratifying needs masks (use --stratify none)"
        )
    return [os.path.join(folder_layout.mask_folder, masks[n]) for n in names]


def _iterate(paths, progress: bool, what: str):
    from tqdm import tqdm
    import sys

    return tqdm(
        paths,
        desc=f"podium folds: {what}",
        unit="mask",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )


def _read_any_mask(path: str) -> np.ndarray:
    try:
        return read_mask(path)
    except PodiumError:
        return read_image(path)  # multi-channel mask: H×W×C


def _coverages(names: List[str], folder_layout, progress: bool) -> np.ndarray:
    values = []
    for path in _iterate(_mask_paths(names, folder_layout), progress, "coverage"):
        mask = _read_any_mask(path) > 0
        values.append(float((mask.any(axis=-1) if mask.ndim == 3 else mask).mean()))
    return np.asarray(values)


def _presence(names: List[str], folder_layout, progress: bool) -> List[tuple]:
    presence = []
    for path in _iterate(_mask_paths(names, folder_layout), progress, "classes"):
        mask = _read_any_mask(path)
        if mask.ndim == 3:
            present = tuple(
                int(c) for c in np.flatnonzero((mask > 0).reshape(-1, mask.shape[-1]).any(axis=0))
            )
        else:
            present = tuple(int(v) for v in np.unique(mask) if v > 0)
        presence.append(present)
    return presence
