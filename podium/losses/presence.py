"""Presence targets of a presence head: per image and class, "does the mask hold any pixel".

    callbacks:
      presence_target:               # batch["presence_target"] from the augmented batch["mask"]
        _target_: catalyst.callbacks.BatchTransformCallback
        transform: podium.losses.presence_targets
        scope: on_batch_start
        input_key: mask
        output_key: presence_target

Derived from the batch's mask, after augmentation, so a random crop that misses every object
is a negative: what the head sees is what it is taught. The target's key must differ from the
head's name: the model's outputs join the batch after this callback and would overwrite it.
"""

from typing import Optional, Union

import torch
from torch import Tensor

from podium.errors import PodiumError
from podium.losses._base import ignore_mask

__all__ = ["presence_targets"]


def presence_targets(
    mask: Tensor,
    num_classes: Optional[int] = None,
    ignore_value: Optional[Union[int, float]] = None,
) -> Tensor:
    """float N×C in {0, 1}: 1 where image n has a pixel of class c (ignored pixels never count).

    mask: binary / multilabel N×C×H×W with values in [0, 1] (a pixel is on above 0.5), or
    multiclass N×H×W class indices (then `num_classes` is required; class 0 included).
    """
    keep = ignore_mask(mask, ignore_value)
    if mask.is_floating_point():
        if mask.dim() != 4:
            raise PodiumError(
                f"presence_targets needs a binary / multilabel mask N×C×H×W, got shape "
                f"{tuple(mask.shape)}"
            )
        on = mask > 0.5
        if keep is not None:
            on &= keep
        return on.flatten(2).any(dim=2).float()
    if num_classes is None or mask.dim() != 3:
        raise PodiumError(
            f"presence_targets of a multiclass mask (shape {tuple(mask.shape)}) needs the mask "
            "N×H×W and num_classes; expected transform_kwargs: {num_classes: K}"
        )
    classes = torch.arange(int(num_classes), device=mask.device).view(1, -1, 1)
    on = mask.flatten(1).unsqueeze(1) == classes  # N×C×HW
    if keep is not None:
        on &= keep.flatten(1).unsqueeze(1)
    return on.any(dim=2).float()
