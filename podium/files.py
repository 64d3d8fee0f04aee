"""Writing output files so that a failed write loses nothing and says so in one line.

Every file podium writes outside a checkpoint (predictions, JSON summaries, plots, reports,
edited YAML) goes to a temp file beside its target and is renamed over it (`write_atomically`):
a write that dies half-way (disk full, quota, a read-only or vanished folder) leaves the
earlier file whole, where `cv2.imwrite` or `open(..., "w")` would leave it truncated or gone,
and stops with one OutputWriteError naming the file instead of a traceback. Checkpoints have
their own writer with fsync (`podium.compat.checkpoint`).
"""

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from podium import interrupts
from podium.errors import PodiumError

__all__ = [
    "OutputWriteError",
    "writing",
    "temporary_path",
    "write_atomically",
    "write_json",
    "write_image",
]


class OutputWriteError(PodiumError, OSError):
    """An output file could not be written; the files written before it are kept."""


@contextlib.contextmanager
def writing(path):
    """Turn an OSError raised while writing `path` into one clear OutputWriteError."""
    try:
        yield
    except OSError as error:
        if isinstance(error, PodiumError):
            raise
        reason = error.strerror or str(error) or type(error).__name__
        raise OutputWriteError(
            f"cannot write {path}: {reason}; expected a writable output folder with free space "
            f"(the files written before it are kept)"
        ) from error


def temporary_path(path: Path) -> Path:
    """Where a write of `path` goes before its rename: hidden, one per process and thread."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomically(path, write: Callable[[Path], None]) -> Path:
    """`write(temp)` next to `path`, then rename it over `path` (the folder is created).

    A failed write is one OutputWriteError naming `path`; the old file stays, no temp is left.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with interrupts.deferred(str(path)), writing(path):  # Ctrl-C waits for the file
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    return path


def write_json(path, data) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


def write_image(path, image: np.ndarray) -> Path:
    """Encode `image` in memory by the suffix of `path` (.png, .jpg, .tif), then write it
    atomically."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise PodiumError(
            f"cannot encode {path} as a {path.suffix} image; expected .png, .jpg or .tif"
        )
    return write_atomically(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))
