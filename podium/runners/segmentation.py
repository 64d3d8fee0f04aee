"""The runner's first module: `SegmentationRunner` is `podium.runners.runner.PodiumRunner`."""

from podium.runners.data import check_ddp_batch_sizes
from podium.runners.runner import PodiumRunner, SegmentationRunner

__all__ = ["PodiumRunner", "SegmentationRunner", "check_ddp_batch_sizes"]
