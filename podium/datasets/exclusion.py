"""Exclusion lists (`exclude: bad_images.txt` in the `data:` block).

One image name per line (with or without its image extension); blank lines and everything
after `#` are ignored. Excluded names are removed from every split before the datasets are
built. A name in the list that the data does not contain is most likely a typo or a stale list,
so it is reported as one warning line (logger `podium.datasets`, shown on stderr), not silently
ignored; it is not an error, so one list can serve several folds or data versions.
"""

import logging
import os
from typing import Iterable, List, Sequence, Tuple

from podium.datasets.csv_rle import image_id_to_name
from podium.errors import PodiumError

__all__ = ["read_exclusion_list", "apply_exclusion", "resolve_data_path"]

LOGGER = logging.getLogger("podium.datasets")


def resolve_data_path(root, path) -> str:
    """A path from the data block: absolute as given, relative to the data root otherwise."""
    path = os.path.expanduser(str(path))
    return path if os.path.isabs(path) else os.path.join(str(root), path)


def read_exclusion_list(path) -> List[str]:
    """Names listed in the file (extensions removed), in file order, without duplicates."""
    if not os.path.isfile(path):
        raise PodiumError(
            f"exclusion list {path} does not exist; "
            "expected a text file with one image name per line"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PodiumError(f"cannot read exclusion list {path}: {error}") from error
    names = []
    for line in lines:
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(image_id_to_name(os.path.basename(name)))
    return list(dict.fromkeys(names))


def apply_exclusion(
    selections: Sequence[List[str]], excluded: Iterable[str], known: Iterable[str], path: str
) -> Tuple[List[List[str]], List[str]]:
    """Remove `excluded` from each name list; warn once about excluded names not in `known`.

    Returns the filtered lists and the unknown names.
    """
    excluded = list(excluded)
    drop = set(excluded)
    known = set(known)
    unknown = [n for n in excluded if n not in known]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" … ({len(unknown)} in total)" if len(unknown) > 5 else ""
        )
        LOGGER.warning(
            f"podium: warning: exclusion list {path} "
            f"names {len(unknown)} image(s) not in the data: {shown}"
        )
    return [[n for n in names if n not in drop] for names in selections], unknown
