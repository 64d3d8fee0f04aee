"""`--images PATH...` of the task predictors: files as given, folders expanded."""
from pathlib import Path
from typing import Iterable, List, Sequence

from podium.datasets.readers import IMAGE_EXTENSIONS
from podium.errors import PodiumError

__all__ = ["image_paths"]


def image_paths(items: Iterable, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """Files as given, folders expanded to their image files (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in extensions)
        elif item.is_file():
            paths.append(item)
        else:
            raise PodiumError(f"--images {item} does not exist")
    return paths
