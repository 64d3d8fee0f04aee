"""Reproducible augmentation: albumentations keeps its own random generators and ignores the
global seeds Catalyst sets, so every pipeline is seeded per epoch — worker processes through
`worker_init_fn` (from torch's per-worker seed, which Catalyst's epoch seeding fixes),
in-process loaders at loader start from (args/seed, rank, global epoch, loader index). The
same `args/seed` gives the same augmented batches; every epoch and loader gets new ones.
"""

import numpy as np

from podium.datasets import seed_transforms, worker_init_fn

__all__ = ["AugmentationSeeds", "seed_dataset"]


def seed_dataset(dataset, seed: int) -> None:
    """Seed the pipelines of `dataset` and of the datasets it wraps (Subset etc.: `.dataset`)."""
    seen = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        seed_transforms(getattr(dataset, "transforms", None), seed)
        dataset = getattr(dataset, "dataset", None)


class AugmentationSeeds:
    """The augmentation seeds of one run (`args/seed`)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def seed_for(self, rank: int, epoch: int, loader_index: int) -> int:
        """The seed of one loader's pipelines in one epoch on one rank (rank -1: no DDP)."""
        entropy = [self.seed, max(0, rank), epoch, loader_index]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    @staticmethod
    def prepare(loader) -> None:
        """A loader with workers seeds their pipelines itself (Catalyst's own worker_init_fn
        seeds numpy/random with seed + worker id, the same every epoch, and never
        albumentations)."""
        if loader.num_workers > 0:
            loader.worker_init_fn = worker_init_fn

    def on_loader_start(self, loader, rank: int, epoch: int, loader_index: int) -> None:
        """Seeds an in-process loader's pipelines (workers seed themselves)."""
        if loader.num_workers == 0:
            seed_dataset(loader.dataset, self.seed_for(rank, epoch, loader_index))
