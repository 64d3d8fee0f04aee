"""podium.loggers: Catalyst loggers for experiment trackers, e.g.
`_target_: podium.loggers.MLflowLogger` in a config's `loggers:` block.

`NeptuneLogger` (neptune 1.x client: async / sync / offline / debug) and `MLflowLogger`
(an MLflow tracking server), both rank-0-only, lazy and picklable, logging the resolved
config, epoch metrics per loader and the run directory's overlays, progress plot and best
checkpoint. Credentials only ever come from the environment."""

from podium.lazy import lazy_exports

# each imported when first read (podium/lazy.py): `podium report` reads _params, not Catalyst
lazy_exports(
    __name__,
    {
        "TrackingLogger": "podium.loggers._base",
        "check_logger_config": "podium.loggers.checks",
        "MLflowLogger": "podium.loggers.mlflow",
        "NeptuneLogger": "podium.loggers.neptune",
    },
)
