"""Instance labels → the three channels that let a segmentation model separate touching objects.

The recipe of the DSB2018 winners (nuclei) and the SpaceNet-6 winners (buildings): instead of
one foreground channel, a multilabel head predicts, per pixel,

    body     the pixel belongs to an object (labels > 0);
    border   the pixel belongs to an object and lies within `border_width` px (Euclidean) of a
             pixel with another label — background or another object. The image edge is no
             border: an object cut by a tile edge is not shrunk there;
    contact  at least two different objects lie within `contact_width` px of the pixel (an
             object's own pixels are at distance 0): the touching rims of two objects and the
             narrow background gaps between them.

Seeds where body is high and border and contact are low are far apart even for touching
objects, so watershed (watershed.py) can grow one object per seed within the body.
"""

import numpy as np
from scipy import ndimage

from podium.errors import PodiumError
from podium.validation import check_number

__all__ = ["CHANNELS", "instance_targets", "check_instance_labels"]

CHANNELS = ("body", "border", "contact")


def check_instance_labels(labels, where: str) -> np.ndarray:
    """H×W integer labels ≥ 0 (0 = background) as int64; else a PodiumError naming `where`."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise PodiumError(
            f"instance labels {where} have shape {labels.shape}; expected one H×W label channel"
        )
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))
        if not whole:
            raise PodiumError(
                f"instance labels {where} hold non-integer values ({labels.dtype}); "
                "expected integer ids (0 = background, 1..N = objects)"
            )
    elif labels.dtype.kind not in "iub":
        raise PodiumError(
            f"instance labels {where} are {labels.dtype}; expected an integer label image"
        )
    if labels.size and labels.min() < 0:
        raise PodiumError(
            f"instance labels {where} hold negative ids ({labels.min()}); expected 0 = background, "
            "1..N = objects"
        )
    return labels.astype(np.int64)


def instance_targets(labels, border_width: float = 2, contact_width: float = 2) -> np.ndarray:
    """H×W instance labels → H×W×3 uint8 {0, 1}: body, border, contact (module docstring)."""
    labels = check_instance_labels(labels, "given to instance_targets")
    border_width = check_number(border_width, "border_width", ">= 0", finite=True)
    contact_width = check_number(contact_width, "contact_width", ">= 0", finite=True)
    body = labels > 0
    border = np.zeros(labels.shape, dtype=bool)
    near = np.zeros(labels.shape, dtype=np.int32)  # objects within contact_width of each pixel
    pad = int(np.ceil(max(border_width, contact_width))) + 1
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        box = tuple(
            slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(found, labels.shape)
        )
        crop = labels[box]
        inside = crop == index
        others = ~inside
        if others.any():  # distance of each object pixel to the nearest pixel of another label
            depth = ndimage.distance_transform_edt(inside)
            border[box] |= inside & (depth <= border_width)
        # distance of each pixel to the object (0 on it); beyond the box it exceeds contact_width
        near[box] += ndimage.distance_transform_edt(others) <= contact_width
    return np.stack([body, border, near >= 2], axis=-1).astype(np.uint8)
