"""Train/valid assignment from a CSV next to the data (`split.csv`).

The file has a `name` column (image file name without extension) and a `split` column
(train / valid / test …) and/or an integer `fold` column for k-fold cross-validation. Keeping
the assignment in a file, not in code, makes every run reproducible and reviewable.
"""

import os
from typing import List, Optional

import pandas as pd

from podium.errors import PodiumError, did_you_mean

__all__ = ["read_split", "select_names"]

EXPECTED = "name + split, or name + fold (or all three)"


def read_split(root, split_file: str = "split.csv") -> pd.DataFrame:
    """The validated split table: unique string names, split as str, fold as int."""
    path = os.path.join(root, split_file)
    if not os.path.isfile(path):
        raise PodiumError(
            f"split file {path} does not exist; expected a CSV with columns {EXPECTED}"
        )
    try:
        df = pd.read_csv(path, dtype={"name": str, "split": str})
    except Exception as error:  # pandas raises EmptyDataError, ParserError, UnicodeDecodeError …
        raise PodiumError(f"cannot read split file {path}: {error}") from error
    _check_columns(df, path)
    df = _clean(df, path)
    df.attrs["path"] = path  # so selection errors can name the file
    return df


def select_names(
    df: pd.DataFrame,
    split: Optional[str] = None,
    fold: Optional[int] = None,
    exclude_fold: Optional[int] = None,
) -> List[str]:
    """Names with split == `split`, fold == `fold` and fold != `exclude_fold` (filters combine)."""
    mask = pd.Series(True, index=df.index)
    if split is not None:
        _check_value(df, "split", str(split))
        mask &= df["split"] == str(split)
    if fold is not None:
        _check_value(df, "fold", int(fold))
        mask &= df["fold"] == int(fold)
    if exclude_fold is not None:
        _check_value(df, "fold", int(exclude_fold))
        mask &= df["fold"] != int(exclude_fold)
    return df.loc[mask, "name"].tolist()


def _check_columns(df: pd.DataFrame, path) -> None:
    columns = [str(c) for c in df.columns]
    if "name" not in columns or not ({"split", "fold"} & set(columns)):
        hint = "".join(
            did_you_mean(c, ["name", "split", "fold"])
            for c in columns
            if c not in ("name", "split", "fold")
        )
        raise PodiumError(f"split file {path} has columns {columns}; expected {EXPECTED}{hint}")


def _clean(df: pd.DataFrame, path) -> pd.DataFrame:
    """Reject empty names, duplicates and non-integer folds, which would corrupt a split
    silently."""
    if df["name"].isna().any():
        raise PodiumError(f"split file {path} has empty names in rows {_rows(df['name'].isna())}")
    duplicated = df["name"].duplicated()
    if duplicated.any():
        raise PodiumError(
            f"split file {path} lists names more than once: {_first(df.loc[duplicated, 'name'])}"
        )
    if "split" in df and df["split"].isna().any():
        raise PodiumError(
            f"split file {path} has empty split values in rows {_rows(df['split'].isna())}"
        )
    if "fold" in df:
        folds = pd.to_numeric(df["fold"], errors="coerce")
        if folds.isna().any() or (folds != folds.round()).any():
            raise PodiumError(
                f"split file {path} has non-integer fold values in "
                f"rows {_rows(folds.isna() | (folds != folds.round()))}"
            )
        df = df.assign(fold=folds.astype(int))
    return df.reset_index(drop=True)


def _check_value(df: pd.DataFrame, column: str, value) -> None:
    """A requested split/fold that is not in the file is a typo, not an empty selection."""
    path = df.attrs.get("path", "<table>")
    if column not in df:
        raise PodiumError(
            f'split file {path} has no "{column}" column, so {column}={value!r} cannot be selected'
        )
    present = sorted(df[column].unique().tolist())
    if value not in present:
        raise PodiumError(
            f"{column}={value!r} is not in split file {path}{did_you_mean(value, present)}; "
            f"present values: {present}"
        )


def _rows(mask: pd.Series) -> str:
    """1-based CSV line numbers (header is line 1) of the first few offending rows."""
    return _first(pd.Series(mask[mask].index + 2))


def _first(values: pd.Series, limit: int = 5) -> str:
    values = [str(v) for v in values]
    more = f" … ({len(values)} in total)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more
