"""ShardSampler: every sample exactly once over the DDP ranks, for validation and inference.

torch's DistributedSampler pads the dataset with repeated samples until its length divides by
the world size, so every rank gets as many batches as the others (training needs that: each
step all-reduces gradients). Evaluation does not, and the repeats would be counted twice in
every loss and metric. Rank r of W takes samples r, r + W, r + 2W, ... in order: W shards of
sizes differing by at most one, no repeats, no shuffling.

It subclasses DistributedSampler so that Catalyst uses it as given (any other sampler is
wrapped in a padding `DistributedSamplerWrapper`) and may call `set_epoch`.
"""

from typing import Iterator, Optional

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ShardSampler"]


class ShardSampler(DistributedSampler):
    """Indices rank, rank + W, rank + 2W, ... of the dataset (no padding, no shuffle)."""

    def __init__(
        self, dataset: Dataset, num_replicas: Optional[int] = None, rank: Optional[int] = None
    ):
        if num_replicas is None:
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.indices = list(range(self.rank, len(dataset), self.num_replicas))
        self.num_samples = len(self.indices)
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples
