"""podium.loggers: Catalyst loggers for experiment trackers, e.g.
`_target_: podium.loggers.MLflowLogger` in a config's `loggers:` block.

`NeptuneLogger` (neptune 1.x client: async / sync / offline / debug) and `MLflowLogger`
(an MLflow tracking server), both rank-0-only, lazy and picklable, logging the resolved
config, epoch metrics per loader and the run directory's overlays, progress plot and best
checkpoint. Credentials only ever come from the environment."""

from podium.loggers._base import TrackingLogger
from podium.loggers.checks import check_logger_config
from podium.loggers.mlflow import MLflowLogger
from podium.loggers.neptune import NeptuneLogger

__all__ = ["MLflowLogger", "NeptuneLogger", "TrackingLogger", "check_logger_config"]
