"""Prediction over several processes: each rank predicts every N-th image, rank 0 merges.

    torchrun --nproc_per_node=2 -m podium predict --config infer.yml
    podium predict --config infer.yml --nproc 2          # the same, launched for you

Under `torchrun` (RANK / WORLD_SIZE in the environment) `Shards` joins the process group
torchrun set up. Collectives go through a gloo group (CPU tensors, tiny: confusion counts,
timings, an ok flag), so sharding works the same whether the models run on CPUs or GPUs.
Image i goes to rank i mod N, which balances ranks when image sizes drift along the list.
Every rank writes the files of its own images; the few things that must be merged (the
submission CSV, metrics, timings) are reduced here and written by rank 0.
"""

import os
import subprocess
import sys
from typing import Any, List, Sequence

import numpy as np
import torch
import torch.distributed as dist

from podium.validation import check_int

__all__ = ["Shards", "launch"]


class Shards:
    """This process's rank and the world size; collectives are no-ops in a single process."""

    def __init__(self):
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self._owned = False
        self.group = None
        if self.world_size > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
                self._owned = True
            self.group = (
                dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
            )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def indices(self, count: int) -> List[int]:
        """Indices of this rank's images among `count`."""
        return list(range(self.rank, count, self.world_size))

    def sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks (int64 / float64 arrays)."""
        if self.world_size == 1:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor.numpy()

    def gather(self, value: Any) -> List[Any]:
        """Every rank's `value` (picklable), in rank order."""
        if self.world_size == 1:
            return [value]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.group)
        return out

    def all_ok(self, ok: bool) -> bool:
        """True when every rank reports ok; every rank must call it (so none waits forever)."""
        if self.world_size == 1:
            return ok
        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self.group)
        return bool(flag.item())

    def close(self) -> None:
        if self._owned and dist.is_initialized():
            dist.destroy_process_group()
            self._owned = False


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `podium <argv>` in `nproc` processes with torch's launcher (torchrun); exit code."""
    check_int(nproc, "--nproc", 1)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "podium",
        *argv,
    ]
    return subprocess.call(command)
