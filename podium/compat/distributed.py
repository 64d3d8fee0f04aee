"""DDP metric sync on the process group's device.

`catalyst.utils.distributed.all_gather` moves its byte buffers to "cuda" unconditionally, so
IoU/Dice/AUC/confusion-matrix/classification metrics crash under CPU (gloo) DDP with
"Found no NVIDIA driver" / "Torch not compiled with CUDA enabled". The replacement picks the
device from the backend (nccl → current CUDA device, anything else → CPU) and avoids the
deprecated `torch.ByteStorage` API.
"""

import pickle
from typing import Any, List

import torch
import torch.distributed as dist

import catalyst.utils.distributed

from podium.compat._patching import rebind

__all__ = ["all_gather", "original_all_gather", "apply"]

original_all_gather = catalyst.utils.distributed.all_gather


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(data: Any) -> List[Any]:
    """Gather any picklable object from every rank (a one-element list outside DDP)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return [data]
    device = _device()
    buffer = torch.frombuffer(bytearray(pickle.dumps(data)), dtype=torch.uint8).to(device)
    local_size = torch.tensor([buffer.numel()], device=device)
    sizes = [torch.zeros_like(local_size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local_size)
    sizes = [int(size.item()) for size in sizes]
    # torch all_gather needs equal shapes: pad every buffer to the longest one
    padded = torch.zeros(max(sizes), dtype=torch.uint8, device=device)
    padded[: buffer.numel()] = buffer
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [pickle.loads(t.cpu().numpy().tobytes()[:size]) for t, size in zip(gathered, sizes)]


def apply() -> None:
    # catalyst.metrics binds all_gather by name in _segmentation, _classification, ...
    import catalyst.metrics  # noqa: F401

    rebind(original_all_gather, all_gather)
