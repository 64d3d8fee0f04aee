"""MLflowLogger: a thin Catalyst logger for an MLflow tracking server (`MlflowClient`).

Catalyst 21.12's MLflowLogger drives MLflow's global "active run" (fluent API): it opens a
run in `__init__` (in every DDP process, and it cannot be pickled), logs parameters per stage
into nested runs and uploads no files. This one talks to the server through `MlflowClient`
with an explicit run id (see `TrackingLogger` for what all podium loggers share):

- the server: `tracking_uri:` or `$MLFLOW_TRACKING_URI` (e.g. `http://127.0.0.1:5000`; a
  `sqlite:///...` or `file:...` store works too). Credentials only from the environment
  (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` / `MLFLOW_TRACKING_TOKEN`), which
  MLflow reads itself; a URI with `user:password@` in the config is refused.
- the run is created on rank 0 at the experiment's start; its id travels with the pickled
  logger, so spawn-DDP workers log into the same run.
- parameters: the resolved config, flat (`model/encoder`, `stages/train/optimizer/lr`, ...);
  tags: `tags`, `fold`, `podium.logdir`.
- metrics `<loader>/<key>` per epoch (step = global epoch), e.g. `valid/dice`,
  `train/loss`, `epoch/lr`; with `log_batch_metrics`, `<loader>/batch/<key>` (step = global
  batch), sent in batches at each epoch's end.
- artifacts: `config.yml`, `progress.png`, `overlays/<stage>/epoch_<k>/*.png` and
  `checkpoints/best.pth` (on by default: `log_checkpoint: false` to skip it).
- an unreachable server is found by a short probe (`connect_timeout`) instead of MLflow's
  minutes of retries: one warning naming the server, and the training goes on without it.
"""

import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union
from urllib.parse import urlparse

import numpy as np

from podium.errors import PodiumError
from podium.loggers._base import TrackingLogger, display_url, unreachable
from podium.loggers._params import flatten

__all__ = ["MLflowLogger", "metric_name"]

_UNSAFE = re.compile(r"[^\w\-. /:]")  # MLflow: alphanumerics, _ - . space : /
MAX_METRICS_PER_REQUEST = 1000  # MLflow REST API limits of log_batch
MAX_PARAMS_PER_REQUEST = 100
MAX_KEY_LENGTH = 250


def metric_name(name: str) -> str:
    """`name` with characters MLflow rejects in metric / parameter names replaced by `_`."""
    return _UNSAFE.sub("_", str(name))[:MAX_KEY_LENGTH]


def _chunks(items: List[Any], size: int) -> Iterable[List[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MLflowLogger(TrackingLogger):
    """Logs a Catalyst run to an MLflow tracking server (see the module docstring).

        loggers:
          mlflow:
            _target_: podium.loggers.MLflowLogger
            experiment: nuclei

    Args:
        experiment: the MLflow experiment (created if missing; default
            `$MLFLOW_EXPERIMENT_NAME`, else "podium").
        tracking_uri: the tracking server (default `$MLFLOW_TRACKING_URI`).
        connect_timeout: seconds to wait for an http(s) server when the run starts.
        log_checkpoint: upload `checkpoints/best.pth` at the end (true by default), or the
            path of another file inside the run directory.
        logdir, use_logdir_postfix, name, tags, fold, log_batch_metrics, log_epoch_metrics,
            log_images: see `podium.loggers.TrackingLogger`.
    """

    _connection_attributes = ("_client",)

    def __init__(
        self,
        experiment: Optional[str] = None,
        tracking_uri: Optional[str] = None,
        logdir: Optional[str] = None,
        use_logdir_postfix: bool = False,
        name: Optional[str] = None,
        tags: Optional[Union[Iterable[str], Mapping[str, Any]]] = None,
        fold: Optional[int] = None,
        log_batch_metrics: bool = False,
        log_epoch_metrics: bool = True,
        log_images: bool = True,
        log_checkpoint: Union[bool, str] = True,
        connect_timeout: float = 5.0,
    ):
        super().__init__(
            logdir=logdir,
            use_logdir_postfix=use_logdir_postfix,
            name=name,
            tags=tags,
            fold=fold,
            log_batch_metrics=log_batch_metrics,
            log_epoch_metrics=log_epoch_metrics,
            log_images=log_images,
            log_checkpoint=log_checkpoint,
        )
        where = self._where_in_config()
        if tracking_uri is not None:
            parsed = urlparse(str(tracking_uri))
            if parsed.password is not None or parsed.username is not None:
                raise PodiumError(
                    f"{where}: remove the credentials from tracking_uri (configs are saved into "
                    "the run directory and uploaded); set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment"
                )
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise PodiumError(
                f"{where}: no tracking server: set MLFLOW_TRACKING_URI (e.g. "
                "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000) or tracking_uri: in the config"
            )
        self.tracking_uri = str(uri)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "podium"
        self.connect_timeout = float(connect_timeout)
        self.run_id: Optional[str] = None
        self._client = None
        self._pending: List[Any] = []  # batch metrics waiting for the end of the epoch

    def _server(self) -> str:
        return f"MLflow server {display_url(self.tracking_uri)}"

    @classmethod
    def _errors(cls) -> tuple:
        from mlflow.exceptions import MlflowException

        return (OSError, MlflowException)  # requests' errors are OSErrors

    # -- TrackingLogger -------------------------------------------------------------------
    def _open(self) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            problem = unreachable(self.tracking_uri, self.connect_timeout)
            if problem is not None:
                raise ConnectionError(f"the server is unreachable ({problem})")
        client = MlflowClient(tracking_uri=self.tracking_uri)
        if self.run_id is None:  # a pickled copy (DDP worker) logs into the same run
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(self.experiment)
                except MlflowException:  # created meanwhile by another run
                    experiment_id = client.get_experiment_by_name(self.experiment).experiment_id
            else:
                experiment_id = experiment.experiment_id
            run = client.create_run(experiment_id, run_name=self.run_name, tags=self._tags())
            self.run_id = run.info.run_id
        self._client = client

    def _tags(self) -> Dict[str, str]:
        tags = self.tags or {}
        if not isinstance(tags, Mapping):
            tags = {str(tag): "" for tag in tags}
        tags = {str(k): str(v) for k, v in tags.items()}
        if self.fold_value is not None:
            tags["fold"] = str(self.fold_value)
        if self.logdir:
            tags["podium.logdir"] = str(Path(self.logdir).resolve())
        return tags

    def _log_config(self, config: Dict[str, Any], text: str) -> None:
        from mlflow.entities import Param

        params = [Param(metric_name(k), v) for k, v in flatten(config).items()]
        for chunk in _chunks(params, MAX_PARAMS_PER_REQUEST):
            self._client.log_batch(self.run_id, params=chunk)
        self._client.log_text(self.run_id, text, "config.yml")

    def _log_scalars(self, kind: str, loader: str, metrics: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        prefix = loader if kind == "epoch" else f"{loader}/batch"
        now = int(time.time() * 1000)
        entries = [Metric(metric_name(f"{prefix}/{k}"), v, now, step) for k, v in metrics.items()]
        if kind == "batch":
            self._pending += entries
            if len(self._pending) >= MAX_METRICS_PER_REQUEST:
                self._flush()
            return
        for chunk in _chunks(entries, MAX_METRICS_PER_REQUEST):
            self._client.log_batch(self.run_id, metrics=chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for chunk in _chunks(pending, MAX_METRICS_PER_REQUEST):
            self._client.log_batch(self.run_id, metrics=chunk)

    def _log_file(self, path: Path, name: str) -> None:
        folder = os.path.dirname(name)
        self._client.log_artifact(self.run_id, str(path), artifact_path=folder or None)

    def _log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._client.log_image(self.run_id, image, key=metric_name(tag), step=step)

    def _close(self, failed: bool, end_of_run: bool) -> None:
        client = self._client
        if client is None:
            return
        self._flush()
        if end_of_run:
            client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
        self._client = None

    @property
    def logger(self):
        """The MlflowClient (None before the first use and after the end)."""
        return self._client
