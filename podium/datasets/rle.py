"""Run-length encoding of binary masks, as Kaggle segmentation competitions write it.

A mask is flattened column-major by default (Fortran order: top to bottom, then left to right)
and written as `start length start length …` with 1-based starts; an empty mask is the empty
string. `rle_encode` always writes canonical runs (sorted, non-touching), so
`rle_encode(rle_decode(s, shape)) == s` for every canonical `s` and
`rle_decode(rle_encode(m), m.shape) == (m > 0)` for every mask.
"""

from typing import Optional, Sequence

import numpy as np

from podium.errors import PodiumError

__all__ = ["rle_decode", "rle_encode"]

_ORDERS = ("F", "C")


def rle_encode(mask: np.ndarray, order: str = "F") -> str:
    """`start length …` (1-based starts) of the pixels > 0 of a 2-D mask; '' if there are none."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise PodiumError(f"rle_encode needs a 2-D H×W mask, got shape {mask.shape}")
    pixels = np.concatenate([[False], mask.ravel(order=_check_order(order)) > 0, [False]])
    edges = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1  # 1-based starts and ends+1, alternating
    edges[1::2] -= edges[::2]
    return " ".join(map(str, edges.tolist()))


def rle_decode(
    rle, shape: Sequence[int], name: Optional[str] = None, order: str = "F"
) -> np.ndarray:
    """uint8 H×W mask (0/1) from an RLE string; '' / None / NaN is an empty mask.

    A run that starts before pixel 1 or ends past the last pixel is a PodiumError naming `name`
    (the image id) and by how many pixels the run overruns the image.
    """
    height, width = (int(s) for s in shape)
    size = height * width
    flat = np.zeros(size, dtype=np.uint8)
    values = _parse(rle, name)
    if values.size:
        starts, lengths = values[0::2], values[1::2]
        where = f" of {name}" if name is not None else ""
        bad = np.flatnonzero((starts < 1) | (lengths < 0))
        if bad.size:
            i = bad[0]
            raise PodiumError(
                f"RLE{where} has run {i + 1} = ({starts[i]}, {lengths[i]}); "
                "expected 1-based starts >= 1 and lengths >= 0"
            )
        ends = starts - 1 + lengths  # exclusive, 0-based
        over = np.flatnonzero(ends > size)
        if over.size:
            i = over[0]
            raise PodiumError(
                f"RLE{where} overruns the image by {ends[i] - size} pixel(s): "
                f"run {i + 1} starts at pixel {starts[i]} with length {lengths[i]} but "
                f"the {height}×{width} image has {size} pixels; expected runs within 1..{size}"
            )
        for start, end in zip((starts - 1).tolist(), ends.tolist()):
            flat[start:end] = 1
    return flat.reshape((height, width), order=_check_order(order))


def _parse(rle, name) -> np.ndarray:
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return np.zeros(0, dtype=np.int64)
    text = str(rle).strip()
    if not text:
        return np.zeros(0, dtype=np.int64)
    tokens = text.split()
    where = f" of {name}" if name is not None else ""
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise PodiumError(
            f'RLE{where} has the non-integer value "{bad}"; expected "start length start length …"'
        ) from None
    if values.size % 2:
        raise PodiumError(
            f"RLE{where} has {values.size} numbers; expected pairs of start and length"
        )
    return values


def _check_order(order: str) -> str:
    if order not in _ORDERS:
        raise PodiumError(
            f'RLE order must be "F" (column-major, Kaggle) or "C" (row-major), got {order!r}'
        )
    return order
