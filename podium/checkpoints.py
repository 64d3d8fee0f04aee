"""Reading checkpoints, for every part of podium (training, resume, inference, `podium cv`).

A checkpoint is data, never code: every read is `torch.load(..., weights_only=True)` on CPU,
and a missing, truncated or foreign file is one `PodiumError` line naming it (torch's own
message is a page that suggests turning weights_only off). A checkpoint of a run with an
`EMACallback` holds two sets of weights: `model_state_dict` (the trained ones) and
`ema_state_dict` (their moving average); `model_weights` picks one. Also here: the model inside
DataParallel / DDP wrappers, and a short summary of how a model and a checkpoint differ.
Nothing here imports Catalyst, so the bottom layer and everything above may use it.
"""

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from torch import nn

from podium.errors import PodiumError

__all__ = [
    "load",
    "describe_load_error",
    "read",
    "read_checkpoint",
    "model_weights",
    "EMA_KEY",
    "pick_weights",
    "unwrap",
    "shapes",
    "mismatch",
    "load_model_weights",
]

EMA_KEY = "ema_state_dict"
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch's zip format; legacy (pickle protocol 2+)
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError)


def load(path, mmap: bool = False) -> Any:
    """torch.load on CPU that refuses pickles carrying code (torch's errors pass through)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def describe_load_error(path, error: Exception, what: str = "checkpoint") -> str:
    """One line for a failed `load(path)`. `what` names the file (checkpoint, --resume
    checkpoint, init_from ...)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if not head.startswith(_TORCH_MAGIC):
        return (
            f"{what} {path} is not a torch file (it starts with {head!r}); expected a "
            f".pth written by catalyst-dl run or torch.save"
        )
    text = str(error)
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        named = f" (it names {found.group(1)})" if found else ""
        return (
            f"{what} {path} was refused: it holds more than tensors and plain data"
            f"{named}, and a pickle can carry code; loading uses weights_only=True, nothing "
            f"in it was run. Expected a checkpoint of catalyst-dl run or a torch.save'd state dict"
        )
    first = (text.splitlines() or [type(error).__name__])[0].split(". ")[0]
    return (
        f"{what} {path} cannot be read (truncated or not a torch file): {first}; "
        f"expected a complete .pth file"
    )


def read(path, what: str = "checkpoint", mmap: bool = False) -> Any:
    """Whatever the file holds; PodiumError if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"{what} {path} does not exist")
    try:
        return load(path, mmap=mmap)
    except _LOAD_ERRORS as error:
        raise PodiumError(describe_load_error(path, error, what)) from None


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


def read_checkpoint(path, what: str = "checkpoint", bare_ok: bool = False) -> Dict[str, Any]:
    """A Catalyst checkpoint dict (with `model_state_dict`). `bare_ok`: a plain state dict
    (`torch.save(model.state_dict())`) counts as its weights."""
    checkpoint = read(path, what)
    if (
        bare_ok
        and isinstance(checkpoint, dict)
        and "model_state_dict" not in checkpoint
        and checkpoint
        and _is_state_dict(checkpoint)
    ):
        checkpoint = {"model_state_dict": checkpoint}
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise PodiumError(f"{what} {Path(path)} is not a Catalyst checkpoint (no model_state_dict)")
    return checkpoint


def pick_weights(checkpoint: Mapping[str, Any], path, ema=None) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint dict: `ema=None` (auto) the EMA weights when it has them,
    else the trained ones; `True` the EMA weights (PodiumError without them); `False` the
    trained ones."""
    if ema is None:
        ema = EMA_KEY in checkpoint
    if ema and EMA_KEY not in checkpoint:
        raise PodiumError(
            f"checkpoint {path} holds no EMA weights (no {EMA_KEY}: the run had no "
            f"EMACallback); use its trained weights (--no-ema, or ema: auto)"
        )
    return checkpoint[EMA_KEY if ema else "model_state_dict"]


def model_weights(path, what: str = "checkpoint", ema=None) -> Dict[str, torch.Tensor]:
    """Model weights from a Catalyst checkpoint (`model_state_dict`, or with `ema` its
    `ema_state_dict`: see `pick_weights`) or a bare state dict."""
    checkpoint = read(path, what)
    if isinstance(checkpoint, dict) and "model_state_dict" in checkpoint:
        checkpoint = pick_weights(checkpoint, path, ema)
    elif ema:
        raise PodiumError(
            f"{what} {path} holds no EMA weights (a bare state dict); use its weights "
            f"(--no-ema, or ema: auto)"
        )
    if not _is_state_dict(checkpoint):
        raise PodiumError(
            f"{what} {path} holds no model weights; expected a state dict of tensors "
            f"or a Catalyst checkpoint with model_state_dict"
        )
    return checkpoint


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def shapes(state_dict: Mapping[str, Any]) -> Dict[str, tuple]:
    """{name: shape} of a state dict (() for a value without one)."""
    return {str(k): tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}


def mismatch(own: Mapping[str, tuple], saved: Mapping[str, tuple]) -> str:
    """A brief summary of how two {name: shape} differ ("" when they match)."""
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    differ = [
        f"{k}: checkpoint {saved[k]} vs model {own[k]}"
        for k in sorted(set(own) & set(saved))
        if saved[k] != own[k]
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if differ:
        parts.append(f"{len(differ)} shape mismatches (e.g. {'; '.join(differ[:2])})")
    return ", ".join(parts)


def load_model_weights(model, weights: Mapping[str, Any], path, strict: bool = True) -> str:
    """Load `weights` into the (possibly DDP-wrapped) model; PodiumError naming the mismatch.

    `strict=False` loads the keys whose names and shapes match and returns a summary of the
    others (e.g. a head for another number of classes)."""
    if isinstance(model, Mapping):
        raise PodiumError(f"{path}: loading weights needs one model, not a dict of models")
    model = unwrap(model)
    own = model.state_dict()
    problem = mismatch(shapes(own), shapes(weights))
    if problem and strict:
        raise PodiumError(
            f"checkpoint {path} does not fit the model {type(model).__name__}: {problem}"
        )
    if problem:
        weights = {
            k: v
            for k, v in weights.items()
            if k in own and tuple(getattr(v, "shape", ())) == tuple(own[k].shape)
        }
    model.load_state_dict(weights, strict=strict)
    return problem
