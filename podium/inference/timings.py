"""Wall-clock and memory of a prediction run (timings.json), per rank and merged.

Separate from the run (pipeline.py): plain bookkeeping, no model or image in it.
"""

import resource
import time
from typing import Any, Dict, List

import torch

__all__ = ["Timings", "merge_timings"]


class Timings:
    """Wall-clock and memory of this rank's prediction loop."""

    def __init__(self, device: torch.device):
        self.device = device
        self.started = time.perf_counter()
        self.images = 0
        self.load_seconds = 0.0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def summary(self, tiles: int) -> Dict[str, Any]:
        seconds = time.perf_counter() - self.started
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
        peak_cuda = (
            torch.cuda.max_memory_allocated(self.device) / 2**20
            if self.device.type == "cuda"
            else None
        )
        return {
            "images": self.images,
            "seconds": round(seconds, 4),
            "load_seconds": round(self.load_seconds, 4),
            "images_per_second": round(self.images / seconds, 4) if seconds > 0 else None,
            "seconds_per_image": round(seconds / self.images, 4) if self.images else None,
            "peak_rss_mb": round(peak_rss, 1),
            "peak_cuda_mb": None if peak_cuda is None else round(peak_cuda, 1),
            "tiles": tiles,
            "device": str(self.device),
        }


def merge_timings(ranks: List[Dict[str, Any]]) -> Dict[str, Any]:
    images = sum(r["images"] for r in ranks)
    seconds = max(
        r["seconds"] for r in ranks
    )  # ranks run side by side: the slowest one is the wall time
    cuda = [r["peak_cuda_mb"] for r in ranks if r["peak_cuda_mb"] is not None]
    return {
        "images": images,
        "seconds": seconds,
        "images_per_second": round(images / seconds, 4) if seconds > 0 else None,
        "seconds_per_image": round(seconds / images, 4) if images else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
        "peak_cuda_mb": max(cuda) if cuda else None,
        "tiles": sum(r["tiles"] for r in ranks),
        "world_size": len(ranks),
        "ranks": ranks,
    }
