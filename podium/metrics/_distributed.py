"""Cross-process reduction of metric state with plain `torch.distributed` (no Catalyst).

Every helper is a no-op outside an initialised process group (or with one process), so the same
accumulator code runs in a single process, under Catalyst's DDP engine and under torchrun.
Collectives run on the process group's device: the current CUDA device for nccl, else the CPU.
"""

from typing import Any, Dict, List

import torch
import torch.distributed as dist

__all__ = ["world_size", "all_reduce_sum", "all_gather_object"]


def world_size() -> int:
    """Processes in the default group (1 when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Element-wise sum of same-shaped float64 tensors over all ranks, in one collective.

    Returns new CPU tensors (the inputs are not modified); every rank gets the same values.
    """
    if world_size() == 1:
        return {name: tensor.clone() for name, tensor in tensors.items()}
    names = sorted(tensors)
    flat = torch.cat([tensors[name].reshape(-1).to(torch.float64) for name in names])
    flat = flat.to(_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.cpu()
    out, start = {}, 0
    for name in names:
        size = tensors[name].numel()
        out[name] = flat[start : start + size].reshape(tensors[name].shape)
        start += size
    return out


def all_gather_object(obj: Any) -> List[Any]:
    """`obj` of every rank, in rank order (`[obj]` outside DDP)."""
    if world_size() == 1:
        return [obj]
    gathered: List[Any] = [None] * world_size()
    if dist.get_backend() == "nccl":  # all_gather_object uses the current CUDA device for nccl
        torch.cuda.set_device(torch.cuda.current_device())
    dist.all_gather_object(gathered, obj)
    return gathered
