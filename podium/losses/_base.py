"""Shared pieces of podium's losses: argument checks, modes, masked means.

Every podium loss derives from `PodiumLoss`: a misspelled constructor argument (from Python
or from YAML, where hydra-slayer builds nested `_target_` blocks itself) raises
`PodiumError` naming the argument, with a "did you mean", instead of a bare TypeError.
"""

import functools
import inspect
import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from podium.errors import PodiumError, did_you_mean

BINARY, MULTILABEL, MULTICLASS = "binary", "multilabel", "multiclass"
MODES = (BINARY, MULTILABEL, MULTICLASS)
REDUCTIONS = ("mean", "sum", "none")


def _checked(cls, init):
    signature = inspect.signature(init)
    accepted = [name for name in signature.parameters if name != "self"]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as error:
            unknown = [key for key in kwargs if key not in signature.parameters]
            if unknown:
                raise PodiumError(
                    f'unknown argument "{unknown[0]}" for {cls.__module__}.{cls.__qualname__}'
                    f"{did_you_mean(unknown[0], accepted)}; it accepts: {', '.join(accepted)}"
                ) from None
            raise PodiumError(f"{cls.__module__}.{cls.__qualname__}: {error}") from None
        init(self, *args, **kwargs)

    __init__._podium_checked = True
    return __init__


class PodiumLoss(nn.Module):
    """nn.Module whose constructor arguments are checked (PodiumError with a did-you-mean)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_podium_checked", False):
            cls.__init__ = _checked(cls, init)


def check_choice(value, choices, what: str) -> None:
    if value not in choices:
        raise PodiumError(
            f'{what} must be one of {", ".join(choices)} (got "{value}")'
            f"{did_you_mean(value, choices)}"
        )


def ignore_mask(target: Tensor, ignore_value: Optional[Union[int, float]]) -> Optional[Tensor]:
    """Boolean mask of the elements to keep (None: keep all). A NaN ignore value matches NaN."""
    if ignore_value is None:
        return None
    if isinstance(ignore_value, float) and math.isnan(ignore_value):
        return ~torch.isnan(target)
    return target != ignore_value


def reduce_masked(loss: Tensor, keep: Optional[Tensor], reduction: str) -> Tensor:
    """Mean over the kept elements only (0 with a zero gradient when none is kept), or sum.

    `loss` must already be finite at the dropped elements (callers replace ignored targets
    first), so `0 * loss` there stays 0 in the forward and backward pass.
    """
    if keep is not None:
        loss = loss * keep.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    count = loss.numel() if keep is None else keep.sum()
    if keep is None:
        return loss.mean()
    return loss.sum() / count.clamp_min(1).to(loss.dtype)
