"""podium.callbacks: Catalyst callbacks for YAML configs, e.g.
`_target_: podium.callbacks.LossStackCallback`.

Loss stacks, metrics (DDP-exact accumulation), freezing, accumulation/clipping, LR schedules
sized from the loader, an EMA of the weights, a NaN guard, throughput, overlays and progress
plots, stochastic weight averaging."""

from podium.callbacks.checkpoint import CheckpointCallback
from podium.callbacks.ema import EMACallback
from podium.callbacks.freeze import FreezeCallback, UnfreezeCallback
from podium.callbacks.loss_stack import LossStackCallback
from podium.callbacks.metrics import (
    BoxIoUCallback,
    ClassificationMetricsCallback,
    R2Callback,
    SegmentationMetricsCallback,
)
from podium.callbacks.nan_guard import NanGuardCallback
from podium.callbacks.optimizer import OptimizerCallback
from podium.callbacks.progress import ProgressPlotCallback
from podium.callbacks.schedulers import OneCycleCallback, WarmupCosineCallback
from podium.callbacks.swa import SWACallback
from podium.callbacks.timer import ThroughputCallback
from podium.callbacks.visuals import OverlayCallback
from podium.targets import moved_attribute

__all__ = [
    "BoxIoUCallback",
    "CheckpointCallback",
    "ClassificationMetricsCallback",
    "EMACallback",
    "FreezeCallback",
    "LossStackCallback",
    "NanGuardCallback",
    "OneCycleCallback",
    "OptimizerCallback",
    "OverlayCallback",
    "ProgressPlotCallback",
    "R2Callback",
    "SegmentationMetricsCallback",
    "SWACallback",
    "ThroughputCallback",
    "UnfreezeCallback",
    "WarmupCosineCallback",
]

# CenterNet's (podium/tasks), still named here by older configs
MOVED = {"DetectionMAPCallback": "podium.callbacks.detection_map"}


def __getattr__(name: str):
    return moved_attribute(__name__, name, MOVED)
