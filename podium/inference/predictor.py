"""Probabilities from a trained model over a dataset: batched, no grad, any device.

`Predictor` is the one place where a forward pass becomes probabilities, so test-time
augmentation (a wrapper around `forward`) and ensembles (several predictors averaged) plug in
here without touching the writers or the CLI.
"""
from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["Predictor", "default_device"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """model → probabilities: sigmoid for one output channel, softmax over channels otherwise."""

    def __init__(
        self,
        model: nn.Module,
        device: Optional[torch.device] = None,
        forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
    ):
        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self.forward = forward or (lambda model, images: model(images))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.forward(self.model, images.to(self.device))
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    def predict_dataset(
        self, dataset: Dataset, batch_size: int = 8, num_workers: int = 0
    ) -> Iterator[Tuple[dict, np.ndarray]]:
        """Yields (sample, probabilities C×H×W as float32 numpy) in dataset order."""
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        for batch in loader:
            probabilities = self(batch["image"]).cpu().numpy()
            for index, probability in enumerate(probabilities):
                sample = {key: value[index] for key, value in batch.items()}
                yield sample, probability
