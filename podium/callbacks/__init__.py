"""podium.callbacks: Catalyst callbacks for YAML configs, e.g.
`_target_: podium.callbacks.LossStackCallback`.

Loss stacks, metrics (DDP-exact accumulation), freezing, accumulation/clipping, LR schedules
sized from the loader, an EMA of the weights, a NaN guard, throughput, overlays and progress
plots."""

from podium.callbacks.checkpoint import CheckpointCallback
from podium.callbacks.ema import EMACallback
from podium.callbacks.detection_map import DetectionMAPCallback
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
from podium.callbacks.timer import ThroughputCallback
from podium.callbacks.visuals import OverlayCallback

__all__ = [
    "BoxIoUCallback",
    "CheckpointCallback",
    "ClassificationMetricsCallback",
    "DetectionMAPCallback",
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
    "ThroughputCallback",
    "UnfreezeCallback",
    "WarmupCosineCallback",
]
