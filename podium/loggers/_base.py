"""TrackingLogger: what podium's neptune and MLflow loggers share, on top of Catalyst's ILogger.

- Rank 0 only: in a DDP run every other process logs nothing.
- Lazy: `__init__` only stores options (so a config check can build one to validate it); the
  connection opens at the first call on rank 0. The connection is never pickled — Catalyst's
  spawn-DDP pickles the runner with its loggers — and a copy reopens it where it is used.
- The resolved config (scrubbed of secrets) is logged as parameters and as `config.yml`.
- Epoch metrics per loader, step = the global epoch (continuous across stages); batch metrics
  only with `log_batch_metrics: true`.
- The run directory is mirrored: after each epoch the new overlay PNGs and `progress.png`,
  at the end `progress.png` again and, with `log_checkpoint`, the best checkpoint.
- Tracking never ends a training: when the server fails, the user is told once (a
  `podium: warning:` line naming the server) and the run goes on without that logger.
"""

import atexit
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union
from urllib.parse import urlparse

import numpy as np
import yaml
from catalyst.core.logger import ILogger

from podium.errors import PodiumError
from podium.loggers._params import scrubbed
from podium.loggers._run_files import RunFiles

__all__ = [
    "TrackingLogger",
    "is_rank_zero",
    "unreachable",
    "display_url",
    "summary",
    "warn",
    "LOGGER",
    "DEFAULT_CHECKPOINT",
]

LOGGER = logging.getLogger("podium.loggers")
DEFAULT_CHECKPOINT = "checkpoints/best.pth"
# Catalyst's pseudo-loader for per-epoch values such as lr / momentum
_EPOCH_LOADER = "_epoch_"


def summary(error: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, without the colours and banners neptune adds."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("--")]
    return type(error).__name__ + (f": {lines[0][:limit]}" if lines else "")


def warn(message: str) -> None:
    """One `podium: warning: ...` line on stderr (logging's last-resort handler)."""
    LOGGER.warning(f"podium: warning: {message}")


def unreachable(url: str, timeout: float) -> Optional[str]:
    """Why a TCP connection to the URL's host and port fails within `timeout` s (None: it works).

    Tracking clients retry a dead server for minutes before they give up; one short probe
    before connecting tells at once."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return f"no host in {display_url(url)!r}"
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except (OSError, ValueError) as error:
        return getattr(error, "strerror", None) or str(error) or type(error).__name__


def display_url(url: Optional[str]) -> Optional[str]:
    """The URL without any `user:password@` part, for messages."""
    if not url:
        return url
    parsed = urlparse(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
    return parsed._replace(netloc=host).geturl()


def is_rank_zero() -> bool:
    """True outside DDP and in the process of rank 0 (torch.distributed, else $RANK)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    try:
        return int(os.environ.get("RANK") or 0) == 0
    except ValueError:
        return True


class TrackingLogger(ILogger):
    """Base of `NeptuneLogger` and `MLflowLogger` (see the module docstring).

    Args:
        logdir: the run directory whose overlays / progress.png / checkpoint are uploaded
            (podium's runner fills in `args/logdir`).
        use_logdir_postfix: accepted because podium's runner passes it; unused.
        name: the run's name (default: the logdir's folder name).
        tags: labels of the run.
        fold: the cross-validation fold (default: `data/fold` of the config, if set).
        log_batch_metrics: also log every batch's metrics (more traffic).
        log_epoch_metrics: log each loader's epoch metrics.
        log_images: upload the overlays, `progress.png` and images logged by callbacks.
        log_checkpoint: upload the best checkpoint at the end: true for
            `checkpoints/best.pth`, or a path relative to the logdir.
    """

    #: attributes holding the live connection: dropped when pickled
    _connection_attributes: tuple = ()
    #: config keys refused with a reason (checked by `check_logger_config`)
    refused_keys: Dict[str, str] = {}

    def __init__(
        self,
        logdir: Optional[str] = None,
        use_logdir_postfix: bool = False,
        name: Optional[str] = None,
        tags: Optional[Union[Iterable[str], Mapping[str, Any]]] = None,
        fold: Optional[int] = None,
        log_batch_metrics: bool = False,
        log_epoch_metrics: bool = True,
        log_images: bool = True,
        log_checkpoint: Union[bool, str] = False,
    ):
        super().__init__(
            log_batch_metrics=bool(log_batch_metrics), log_epoch_metrics=bool(log_epoch_metrics)
        )
        where = self._where_in_config()
        if isinstance(tags, str):
            tags = [tags]
        if tags is not None and not isinstance(tags, (list, tuple, Mapping)):
            raise PodiumError(f"{where}: tags must be a list of strings, got {tags!r}")
        if not isinstance(log_checkpoint, (bool, str)) or (
            isinstance(log_checkpoint, str) and os.path.isabs(log_checkpoint)
        ):
            raise PodiumError(
                f"{where}: log_checkpoint must be true/false or a path inside the run directory, "
                f"got {log_checkpoint!r}"
            )
        self.logdir = str(logdir) if logdir else None
        self.name = name
        self.tags = tags
        self.fold = fold
        self.log_images = bool(log_images)
        self.log_checkpoint = DEFAULT_CHECKPOINT if log_checkpoint is True else log_checkpoint
        self._files = RunFiles(self.logdir)
        self._config: Optional[Dict[str, Any]] = None
        self._run_key: Optional[str] = None
        self._config_sent = False
        self._opened = False
        self._closed = False
        self._disabled = False

    # -- what a subclass provides ---------------------------------------------------------
    def _open(self) -> None:
        """Connect / create the run (rank 0, first use)."""
        raise NotImplementedError

    def _log_config(self, config: Dict[str, Any], text: str) -> None:
        """The scrubbed config as parameters, and `text` (its YAML) as `config.yml`."""
        raise NotImplementedError

    def _log_scalars(self, kind: str, loader: str, metrics: Dict[str, float], step: int) -> None:
        """`kind` is "epoch" or "batch"; `loader` is train / valid / ... or "epoch" (lr...)."""
        raise NotImplementedError

    def _log_file(self, path: Path, name: str) -> None:
        """Upload the file at `path` as `name` (a relative path: "overlays/s/epoch_1/x.png")."""
        raise NotImplementedError

    def _log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        pass

    def _close(self, failed: bool, end_of_run: bool) -> None:
        """Disconnect. `end_of_run` is False in a DDP worker whose stage ended."""

    def _server(self) -> str:
        """Where the data goes, for warnings (a URL, a folder)."""
        return type(self).__name__

    @classmethod
    def _errors(cls) -> tuple:
        """Errors that mean "the tracking server / client failed" (not a podium bug): they
        are reported once and the logger stops; anything else propagates."""
        return (OSError,)

    # -- plumbing -------------------------------------------------------------------------
    @classmethod
    def _where_in_config(cls) -> str:
        return f"{cls.__name__} (loggers:)"

    @property
    def run_name(self) -> Optional[str]:
        if self.name:
            return str(self.name)
        if self.logdir:
            return Path(self.logdir).resolve().name
        return self._run_key

    @property
    def fold_value(self) -> Optional[Any]:
        if self.fold is not None:
            return self.fold
        data = (self._config or {}).get("data")
        return data.get("fold") if isinstance(data, Mapping) else None

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        for attribute in self._connection_attributes:
            state[attribute] = None
        state.update(_opened=False, _config_sent=False)
        return state

    def _give_up(self, error: BaseException) -> None:
        self._disabled = True
        warn(
            f"{type(self).__name__}: logging to {self._server()} failed ({summary(error)}); "
            "the training goes on without it"
        )

    def _ready(self) -> bool:
        """Open on first use on rank 0; send the config once. False: log nothing."""
        if self._disabled or self._closed:
            return False
        if not self._opened:
            if not is_rank_zero():
                return False
            self._opened = True  # a failed open is not retried
            try:
                self._open()
            except self._errors() as error:
                self._give_up(error)
                return False
            atexit.register(self._close_at_exit)
        if self._config is not None and not self._config_sent:
            self._config_sent = True
            text = yaml.safe_dump(self._config, sort_keys=False, default_flow_style=None)
            self._call(self._log_config, self._config, text)
        return not self._disabled

    def _call(self, method, *args) -> None:
        if self._disabled:
            return
        try:
            method(*args)
        except self._errors() as error:
            self._give_up(error)

    def _mirror(self, end_of_run: bool) -> None:
        """Upload new overlays, a changed progress.png and, at the end, the best checkpoint."""
        uploads: List[Path] = []
        if self.log_images:
            uploads += self._files.changed("overlays/**/*.png")
            uploads += self._files.changed("progress.png")
        if end_of_run and self.log_checkpoint:
            uploads += self._files.changed(self.log_checkpoint)
        for path in uploads:
            if self._disabled:
                self._files.forget(path)
                continue
            self._call(self._log_file, path, self._files.relative(path))

    def _close_at_exit(self) -> None:
        """An interrupted run (exception, Ctrl-C) still ends its tracking run, as failed."""
        if self._opened and not self._closed and not self._disabled:
            self._closed = True
            try:
                self._close(failed=True, end_of_run=True)
            except Exception:  # noqa: BLE001 - the interpreter is exiting
                pass

    # -- Catalyst's ILogger ---------------------------------------------------------------
    def log_hparams(
        self, hparams: Dict, scope: str = None, run_key: str = None, stage_key: str = None
    ) -> None:
        """The experiment's config (the stage calls carry the same config again: ignored)."""
        if scope not in (None, "experiment"):
            return
        self._config = scrubbed(hparams or {})
        self._run_key = run_key
        self._config_sent = False
        self._ready()

    def log_metrics(
        self,
        metrics: Dict[str, Any],
        scope: str = None,
        run_key: str = None,
        global_epoch_step: int = 0,
        global_batch_step: int = 0,
        global_sample_step: int = 0,
        stage_key: str = None,
        stage_epoch_len: int = 0,
        stage_epoch_step: int = 0,
        stage_batch_step: int = 0,
        stage_sample_step: int = 0,
        loader_key: str = None,
        loader_batch_len: int = 0,
        loader_sample_len: int = 0,
        loader_batch_step: int = 0,
        loader_sample_step: int = 0,
    ) -> None:
        """Epoch metrics of every loader (and lr & co.), or one batch's metrics."""
        if scope == "batch" and self.log_batch_metrics:
            if self._ready():
                values = {k: float(v) for k, v in metrics.items()}
                self._call(self._log_scalars, "batch", loader_key, values, global_batch_step)
        elif scope == "epoch" and self.log_epoch_metrics:
            if not self._ready():
                return
            for loader, values in metrics.items():
                if not values:
                    continue
                name = "epoch" if loader == _EPOCH_LOADER else str(loader)
                values = {k: float(v) for k, v in values.items()}
                self._call(self._log_scalars, "epoch", name, values, global_epoch_step)
            self._mirror(end_of_run=False)

    def log_image(
        self, tag: str, image: np.ndarray, scope: str = None, global_epoch_step: int = 0, **kwargs
    ) -> None:
        """An image a callback logs with `runner.log_image`."""
        if self.log_images and self._ready():
            self._call(self._log_image, tag, np.asarray(image), global_epoch_step)

    def log_artifact(
        self,
        tag: str,
        artifact: object = None,
        path_to_artifact: str = None,
        scope: str = None,
        **kwargs,
    ) -> None:
        """A file a callback hands over with `runner.log_artifact(tag, path_to_artifact=...)`,
        uploaded as `artifacts/<tag>/<file name>`."""
        if path_to_artifact is None:
            raise PodiumError(
                f"{type(self).__name__}.log_artifact({tag!r}) needs path_to_artifact= (a file); "
                "objects are not uploaded"
            )
        path = Path(path_to_artifact)
        if self._ready():
            self._call(self._log_file, path, f"artifacts/{tag}/{path.name}")

    def flush_log(self) -> None:
        if self._opened and not self._disabled and not self._closed:
            self._call(self._flush)

    def close_log(self, scope: str = None) -> None:
        """End of the experiment (or of a DDP worker's stage, scope None): final uploads, close."""
        if scope not in (None, "experiment") or self._closed:
            return
        end_of_run = scope == "experiment"
        if self._ready():
            self._mirror(end_of_run=end_of_run)
            self._call(self._flush)
            if not self._disabled:
                self._call(self._close, False, end_of_run)
        self._closed = True
